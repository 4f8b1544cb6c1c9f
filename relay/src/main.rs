//! The helper sealer runs on cluster hosts during one `sealer apply`, so that hosts get the image from
//! each other instead of each from the workstation:
//!
//! - `sealer-relay start DIR ADDRESS IDLE_SECS DEADLINE_SECS` (the access on stdin) starts
//!   `DIR/sealer-relay serve …` in the background and prints `relay-port PORT` once it listens, or
//!   `relay-failed WHY`;
//! - `sealer-relay serve DIR ADDRESS IDLE_SECS DEADLINE_SECS` (the access on stdin) serves the files of
//!   `DIR` that are named by the SHA-256 of their content to the cluster's other hosts;
//! - `sealer-relay fetch PEER PORT SECONDS NAME...` (the token on stdin) fetches each NAME from a peer's
//!   relay into the current directory, checking it against its name as it arrives, in the time it takes
//!   to read it (a host without the helper fetches it first with bash's `/dev/tcp` and `sha256sum`).
//!
//! The relay's security model, in order:
//! - it listens on ADDRESS only (the host's cluster address), on a port the kernel picks;
//! - it answers only connections from the addresses listed in its access (the cluster's hosts);
//! - a request is one line, `TOKEN NAME`: TOKEN is the random one-time token of this apply (first line of
//!   the access, which comes on stdin, so it is never on a command line nor in a file), NAME is 64 hex
//!   digits; anything else closes the connection without a byte;
//! - it serves files of DIR only, read-only; the fetcher checks every byte against the digest the
//!   workstation computed, so a relay can make a fetch fail but never make it succeed with other bytes;
//! - it exits when sealer stops it at the end of the apply, after IDLE_SECS without a request, and after
//!   DEADLINE_SECS whatever happens, so a workstation that died leaves nothing listening for long.
//!
//! Once it listens, it writes its process id to `DIR/PID.pid` (one file per relay: an image's and an
//! application's relay may serve from one directory; sealer stops each) and its port on stdout.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Connections served at once: a relay feeds a few peers, never the whole cluster.
const MAX_CONNECTIONS: usize = 16;
/// A request line is a 32-byte hex token, a space, a 64-digit name and a newline.
const MAX_REQUEST: u64 = 256;
/// A peer that connects and says nothing, or stops reading, is dropped after this long.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

struct Relay {
    dir: PathBuf,
    token: String,
    allowed: Vec<IpAddr>,
    start: Instant,
    /// Seconds since `start` of the last request's end (or of the start).
    last_activity: AtomicU64,
    active: AtomicUsize,
}

fn fail(message: &str) -> ExitCode {
    eprintln!("sealer-relay: {message}");
    ExitCode::from(2)
}

/// Exit statuses of `fetch` that sealer tells apart: the peer could not be reached or refused, and a file
/// whose bytes did not match its name.
const UNREACHABLE: u8 = 3;
const MISMATCH: u8 = 4;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, rest)) if command == "start" => start(rest),
        Some((command, rest)) if command == "serve" => serve(rest),
        Some((command, rest)) if command == "fetch" => fetch(rest),
        _ => fail(
            "usage: sealer-relay start|serve DIR ADDRESS IDLE_SECS DEADLINE_SECS | fetch PEER PORT SECONDS NAME...",
        ),
    }
}

/// How long `start` waits for the relay to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `DIR/sealer-relay serve` (this executable, linked there so that it is named so in `ps`) in a
/// process group of its own, so that it outlives the command that started it; hands it the access from
/// stdin and prints `relay-port PORT` once it listens, else `relay-failed WHY`. Either way it exits 0:
/// a host that cannot relay still holds its copy.
fn start(args: &[String]) -> ExitCode {
    let [dir, ..] = args else {
        return fail("usage: sealer-relay start DIR ADDRESS IDLE_SECS DEADLINE_SECS (the access on stdin)");
    };
    let dir = Path::new(dir);
    let mut access = Vec::new();
    if std::io::stdin().take(1 << 20).read_to_end(&mut access).is_err() {
        return fail("cannot read the access on stdin");
    }
    match spawn_relay(dir, args, &access) {
        Ok(port) => println!("relay-port {port}"),
        Err(why) => {
            let log = std::fs::read_to_string(dir.join("relay.log")).unwrap_or_default();
            let tail = &log[log.char_indices().rev().nth(299).map_or(0, |(i, _)| i)..];
            println!("relay-failed {why} {}", tail.replace('\n', " ").trim());
        }
    }
    ExitCode::SUCCESS
}

/// Why `start` could not get a relay listening; said on its `relay-failed` line, before the log's tail.
#[derive(Debug)]
enum StartError {
    NoExecutable(std::io::Error),
    Link(PathBuf, std::io::Error),
    Log(std::io::Error),
    Spawn(std::io::Error),
    Handover(std::io::Error),
    NoOutput,
    EndedEarly,
    TimedOut,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoExecutable(e) => write!(f, "no executable: {e}"),
            StartError::Link(path, e) => write!(f, "cannot link {}: {e}", path.display()),
            StartError::Log(e) => write!(f, "cannot write relay.log: {e}"),
            StartError::Spawn(e) => write!(f, "cannot start: {e}"),
            StartError::Handover(e) => write!(f, "cannot hand the access over: {e}"),
            StartError::NoOutput => write!(f, "no output"),
            StartError::EndedEarly => write!(f, "it ended before it listened:"),
            StartError::TimedOut => write!(f, "it did not listen in time:"),
        }
    }
}

fn spawn_relay(dir: &Path, args: &[String], access: &[u8]) -> Result<u16, StartError> {
    use std::os::unix::process::CommandExt as _;
    let me = std::env::current_exe().map_err(StartError::NoExecutable)?;
    let linked = dir.join("sealer-relay");
    if std::fs::canonicalize(&linked).ok() != Some(me.clone()) {
        let _ = std::fs::remove_file(&linked);
        std::fs::hard_link(&me, &linked)
            .or_else(|_| std::fs::copy(&me, &linked).map(|_| ()))
            .map_err(|e| StartError::Link(linked.clone(), e))?;
    }
    let log = std::fs::File::create(dir.join("relay.log")).map_err(StartError::Log)?;
    let mut child = std::process::Command::new(&linked)
        .arg("serve")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(StartError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(access).map_err(StartError::Handover)?;
    }
    let Some(stdout) = child.stdout.take() else { return Err(StartError::NoOutput) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(line)) => line.trim().parse().map_err(|_| StartError::EndedEarly),
        _ => {
            let _ = child.kill();
            Err(StartError::TimedOut)
        }
    }
}

fn serve(args: &[String]) -> ExitCode {
    let [dir, address, idle, deadline] = args else {
        return fail("usage: sealer-relay serve DIR ADDRESS IDLE_SECS DEADLINE_SECS (the access on stdin)");
    };
    let (Ok(address), Ok(idle), Ok(deadline)) =
        (address.parse::<IpAddr>(), idle.parse::<u64>(), deadline.parse::<u64>())
    else {
        return fail("ADDRESS must be an IP address and IDLE_SECS, DEADLINE_SECS numbers");
    };
    let dir = PathBuf::from(dir);
    let mut access = String::new();
    if std::io::stdin().take(1 << 20).read_to_string(&mut access).is_err() {
        return fail("cannot read the access on stdin");
    }
    let mut lines = access.lines();
    let token = lines.next().unwrap_or_default().trim().to_string();
    let allowed: Vec<IpAddr> = lines.filter_map(|l| l.trim().parse().ok()).collect();
    if token.len() < 32 || allowed.is_empty() {
        return fail("the access must hold a token of 32 characters or more, then the allowed addresses");
    }
    let listener = match TcpListener::bind(SocketAddr::new(address, 0)) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {address}: {e}")),
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => return fail(&format!("no local address: {e}")),
    };
    let pid = std::process::id().to_string();
    if let Err(e) = publish(&dir, &format!("{pid}.pid"), &pid) {
        return fail(&format!("cannot write to {}: {e}", dir.display()));
    }
    // The port is the last thing said on stdout: `start` reads it and goes.
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "{port}").and_then(|()| stdout.flush()).is_err() {
        return fail("nobody read the port");
    }
    let relay = Arc::new(Relay {
        dir,
        token,
        allowed,
        start: Instant::now(),
        last_activity: AtomicU64::new(0),
        active: AtomicUsize::new(0),
    });
    let watchdog = relay.clone();
    std::thread::spawn(move || watchdog.watch(Duration::from_secs(idle), Duration::from_secs(deadline)));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if relay.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            relay.done();
            continue;
        }
        let relay = relay.clone();
        std::thread::spawn(move || {
            relay.serve(stream);
            relay.done();
        });
    }
    ExitCode::SUCCESS
}

fn is_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The SHA-256 of the file at `path`, if it can be read.
fn file_sha256(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(format!("{:x}", hasher.finalize()))
}

fn fetch(args: &[String]) -> ExitCode {
    const USAGE: &str =
        "usage: sealer-relay fetch PEER PORT SECONDS NAME... [--unpack DEST [--keep]] (the token on stdin)";
    let (args, unpack, keep) = match args {
        [rest @ .., flag, dest, keep] if flag == "--unpack" && keep == "--keep" => (rest, Some(dest), true),
        [rest @ .., flag, dest] if flag == "--unpack" => (rest, Some(dest), false),
        _ => (args, None, true),
    };
    let Some((peer, port, seconds, names)) = (match args {
        [peer, port, seconds, names @ ..] if !names.is_empty() => Some((peer, port, seconds, names)),
        _ => None,
    }) else {
        return fail(USAGE);
    };
    let (Ok(peer), Ok(port), Ok(seconds)) = (peer.parse::<IpAddr>(), port.parse::<u16>(), seconds.parse::<u64>())
    else {
        return fail("PEER must be an IP address, PORT a port and SECONDS a number");
    };
    if let Some(bad) = names.iter().find(|n| !is_name(n)) {
        return fail(&format!("`{bad}` is not a SHA-256"));
    }
    let mut token = String::new();
    if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
        return fail("no token on stdin");
    }
    let token = token.trim();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let last = names.len() - 1;
    for (i, name) in names.iter().enumerate() {
        let target = match unpack {
            Some(dest) if i == last => Target { keep, unpack: Some(Path::new(dest)) },
            _ => Target { keep: true, unpack: None },
        };
        if let Err(code) = fetch_one(Path::new("."), SocketAddr::new(peer, port), token, name, deadline, &target) {
            return ExitCode::from(code);
        }
    }
    ExitCode::SUCCESS
}

/// What becomes of a fetched file: kept in the directory under its name (to serve it), unpacked (a tar
/// archive) into a directory, or both.
struct Target<'a> {
    keep: bool,
    unpack: Option<&'a Path>,
}

/// The bytes of a fetch as they arrive: hashed, counted, copied to the kept file, within the deadline.
struct Incoming<R> {
    source: R,
    hasher: Sha256,
    total: u64,
    deadline: Instant,
    /// The kept file being written, and its path (named with the host's error when a write fails).
    copy: Option<(std::fs::File, PathBuf)>,
    /// Why reading stopped, when it failed: the peer (`UNREACHABLE`) or this host's disk (1).
    failed: Option<u8>,
}

impl<R: std::io::Read> std::io::Read for Incoming<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() > self.deadline {
            self.failed = Some(UNREACHABLE);
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the fetch took too long"));
        }
        let n = self.source.read(buffer).inspect_err(|_| self.failed = Some(UNREACHABLE))?;
        self.hasher.update(&buffer[..n]);
        self.total += n as u64;
        if let Some((copy, path)) = &mut self.copy {
            copy.write_all(&buffer[..n]).inspect_err(|e| {
                // This host's own failure (a full disk), said as the system says it.
                eprintln!("sealer-relay: {}: {e}", path.display());
                self.failed = Some(1);
            })?;
        }
        Ok(n)
    }
}

/// Fetches `name` from `peer` (or takes the copy `dir` already holds), hashing as it arrives, into
/// `dir/name.part`, renamed to `dir/name` once it matches, and/or unpacked into a stage beside the
/// destination, merged into it once it matches: nothing of a copy that does not match is left or used.
fn fetch_one(
    dir: &Path,
    peer: SocketAddr,
    token: &str,
    name: &str,
    deadline: Instant,
    target: &Target,
) -> Result<(), u8> {
    let (part, file) = (dir.join(format!("{name}.part")), dir.join(name));
    let held = file_sha256(&file).as_deref() == Some(name);
    if held && target.unpack.is_none() {
        return Ok(());
    }
    let source: Box<dyn std::io::Read> = if held {
        Box::new(std::fs::File::open(&file).map_err(|e| local_error(&file, &e))?)
    } else {
        let unreachable = |e: std::io::Error| {
            eprintln!("sealer-relay: {peer}: {e}");
            UNREACHABLE
        };
        let mut stream = TcpStream::connect_timeout(&peer, Duration::from_secs(5)).map_err(unreachable)?;
        stream.set_read_timeout(Some(PEER_TIMEOUT)).map_err(unreachable)?;
        stream.write_all(format!("{token} {name}\n").as_bytes()).map_err(unreachable)?;
        Box::new(stream)
    };
    let copy = if target.keep && !held {
        Some((std::fs::File::create(&part).map_err(|e| local_error(&part, &e))?, part.clone()))
    } else {
        None
    };
    let mut incoming = Incoming { source, hasher: Sha256::new(), total: 0, deadline, copy, failed: None };
    let stage = target.unpack.map(|dest| PathBuf::from(format!("{}.unpack", dest.display())));
    let result = receive(&mut incoming, stage.as_deref(), name).and_then(|()| {
        if target.keep && !held {
            std::fs::rename(&part, &file).map_err(|e| local_error(&file, &e))?;
        }
        match (&stage, target.unpack) {
            (Some(stage), Some(dest)) => merge(stage, dest).map_err(|e| local_error(dest, &e)),
            _ => Ok(()),
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    if let Some(stage) = stage {
        let _ = std::fs::remove_dir_all(stage);
    }
    result
}

/// Reads the whole copy (unpacking it into `stage` when given) and checks it against `name`.
fn receive<R: std::io::Read>(incoming: &mut Incoming<R>, stage: Option<&Path>, name: &str) -> Result<(), u8> {
    let unpacked = match stage {
        Some(stage) => {
            let _ = std::fs::remove_dir_all(stage);
            std::fs::create_dir_all(stage).map_err(|e| local_error(stage, &e))?;
            let mut archive = tar::Archive::new(&mut *incoming);
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive.set_preserve_mtime(true);
            archive.set_overwrite(true);
            archive.unpack(stage).map_err(|e| (stage.to_path_buf(), e))
        }
        None => Ok(()),
    };
    // What the unpacking did not read (the archive's padding, or all of it after an error) is hashed too.
    let drained = std::io::copy(incoming, &mut std::io::sink());
    if let Some(code) = incoming.failed {
        if code == UNREACHABLE {
            eprintln!("sealer-relay: the copy stopped after {} bytes", incoming.total);
        }
        return Err(code);
    }
    if let Err(e) = drained {
        eprintln!("sealer-relay: {e}");
        return Err(UNREACHABLE);
    }
    match (incoming.total, format!("{:x}", std::mem::take(&mut incoming.hasher).finalize())) {
        // Nothing at all: the relay refused this address (another source address, say).
        (0, _) if name != EMPTY_SHA256 => Err(UNREACHABLE),
        (_, sha) if sha != name => Err(MISMATCH),
        // The right bytes that would not unpack: a problem of this host (its disk), said as it is.
        _ => unpacked.map_err(|(stage, e)| local_error(&stage, &e)),
    }
}

fn local_error(path: &Path, e: &std::io::Error) -> u8 {
    // tar's errors say what failed in their text, and why in their source.
    let why = e.get_ref().and_then(|inner| inner.source()).map(|s| format!(": {s}")).unwrap_or_default();
    eprintln!("sealer-relay: {}: {e}{why}", path.display());
    1
}

/// Moves what `from` holds into `to` as `tar -x` into `to` would have put it: files replace files,
/// directories merge, what `to` has besides stays. Renames only: `from` is on the same file system.
fn merge(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            return std::fs::rename(from, to);
        }
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_dir() => {
            std::fs::remove_file(to)?;
            return std::fs::rename(from, to);
        }
        Ok(_) => {}
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, destination) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            merge(&source, &destination)?;
        } else {
            std::fs::rename(&source, &destination)?;
        }
    }
    std::fs::remove_dir(from)
}

/// The SHA-256 of nothing.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Writes `name` whole (a temporary file renamed), so a reader never sees half of it.
fn publish(dir: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, value)?;
    std::fs::rename(tmp, dir.join(name))
}

impl Relay {
    fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn done(&self) {
        self.last_activity.store(self.now(), Ordering::SeqCst);
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ends the process when it was idle too long or reached its deadline.
    fn watch(&self, idle: Duration, deadline: Duration) {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let quiet = self.now().saturating_sub(self.last_activity.load(Ordering::SeqCst));
            let idle_out = self.active.load(Ordering::SeqCst) == 0 && quiet >= idle.as_secs();
            if idle_out || self.start.elapsed() >= deadline {
                std::process::exit(0);
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else { return };
        if !self.allowed.contains(&peer.ip()) {
            return;
        }
        let _ = stream.set_read_timeout(Some(PEER_TIMEOUT));
        let _ = stream.set_write_timeout(Some(PEER_TIMEOUT));
        let Ok(reader) = stream.try_clone() else { return };
        let mut line = String::new();
        if BufReader::new(reader.take(MAX_REQUEST)).read_line(&mut line).is_err() {
            return;
        }
        let Some((token, name)) = line.trim_end().split_once(' ') else { return };
        if !same(token.as_bytes(), self.token.as_bytes()) || !is_name(name) {
            return;
        }
        let Ok(mut file) = std::fs::File::open(self.dir.join(name)) else { return };
        let mut stream = stream;
        let _ = std::io::copy(&mut file, &mut stream);
        let _ = stream.flush();
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A relay on 127.0.0.1 serving `dir`, answering `allowed`, for `connections` requests.
    fn relay(dir: &Path, allowed: Vec<IpAddr>, connections: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let relay = Relay {
            dir: dir.to_path_buf(),
            token: "t".repeat(32),
            allowed,
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            active: AtomicUsize::new(0),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                relay.serve(stream.unwrap());
            }
        });
        address
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sealer-relay-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_is_fetched_checked_and_only_with_the_token_from_an_allowed_address() {
        let (served, fetched) = (scratch("served"), scratch("fetched"));
        let content = b"the image".repeat(10_000);
        let name = format!("{:x}", Sha256::digest(&content));
        std::fs::write(served.join(&name), &content).unwrap();
        let later = Instant::now() + Duration::from_secs(30);
        let peer = relay(&served, vec!["127.0.0.1".parse().unwrap()], 3);
        assert_eq!(fetch_one(&fetched, peer, &"x".repeat(32), &name, later, &KEEP), Err(UNREACHABLE), "a wrong token");
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), &name, later, &KEEP), Ok(()));
        assert_eq!(std::fs::read(fetched.join(&name)).unwrap(), content);
        // A relay whose copy changed: the bytes arrive, the name does not match, nothing is kept.
        let mut changed = content.clone();
        changed[5] ^= 1;
        std::fs::write(served.join(&name), &changed).unwrap();
        std::fs::remove_file(fetched.join(&name)).unwrap();
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), &name, later, &KEEP), Err(MISMATCH));
        assert_eq!(std::fs::read_dir(&fetched).unwrap().count(), 0, "no part file left");
        // An address the relay does not answer.
        let other = relay(&served, vec!["10.0.0.9".parse().unwrap()], 1);
        assert_eq!(fetch_one(&fetched, other, &"t".repeat(32), &name, later, &KEEP), Err(UNREACHABLE));
        for dir in [served, fetched] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    const KEEP: Target = Target { keep: true, unpack: None };

    /// The header of a file of `size` bytes, mode 0640, root's, as the workstation's tar writes them.
    fn header(size: usize) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_size(size as u64);
        header.set_mode(0o640);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    }

    /// A tar archive of `files` (path, content).
    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            builder.append_data(&mut header(content.len()), path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_copy_is_unpacked_and_merged_into_its_destination_only_once_it_matches() {
        let (served, fetched) = (scratch("unpack-served"), scratch("unpack-fetched"));
        let dest = fetched.join("rootfs");
        std::fs::create_dir_all(dest.join("etc")).unwrap();
        std::fs::write(dest.join("etc/kept"), "kept").unwrap();
        std::fs::write(dest.join("etc/a.yml"), "old").unwrap();
        let tar = archive(&[("etc/a.yml", b"new"), ("bin/tool", b"#!/bin/sh\n")]);
        let name = format!("{:x}", Sha256::digest(&tar));
        std::fs::write(served.join(&name), &tar).unwrap();
        let later = Instant::now() + Duration::from_secs(30);
        let peer = relay(&served, vec!["127.0.0.1".parse().unwrap()], 3);
        let leaf = Target { keep: false, unpack: Some(&dest) };
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), &name, later, &leaf), Ok(()));
        let read = |p: &str| std::fs::read_to_string(dest.join(p)).unwrap();
        assert_eq!(
            (read("etc/a.yml"), read("etc/kept"), read("bin/tool")),
            ("new".into(), "kept".into(), "#!/bin/sh\n".into())
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(dest.join("bin/tool")).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!fetched.join(&name).exists() && !fetched.join("rootfs.unpack").exists(), "a leaf keeps no copy");
        // A relay's changed copy: unpacked into the stage as it arrives, then thrown away whole.
        let mut changed = archive(&[("etc/a.yml", b"bad"), ("etc/evil", b"x")]);
        changed.truncate(tar.len().min(changed.len()));
        std::fs::write(served.join(&name), &changed).unwrap();
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), &name, later, &leaf), Err(MISMATCH));
        assert_eq!(read("etc/a.yml"), "new");
        assert!(!dest.join("etc/evil").exists() && !fetched.join("rootfs.unpack").exists());
        // A relay keeps its copy as well, and a copy it already holds is unpacked without a fetch.
        std::fs::write(served.join(&name), &tar).unwrap();
        let fresh = fetched.join("fresh");
        let relay_target = Target { keep: true, unpack: Some(&fresh) };
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), &name, later, &relay_target), Ok(()));
        assert_eq!(std::fs::read(fetched.join(&name)).unwrap(), tar);
        std::fs::remove_dir_all(&fresh).unwrap();
        let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(fetch_one(&fetched, nowhere, &"t".repeat(32), &name, later, &relay_target), Ok(()));
        assert_eq!(std::fs::read_to_string(fresh.join("etc/a.yml")).unwrap(), "new");
        for dir in [served, fetched] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn an_archive_entry_that_would_escape_its_destination_is_skipped() {
        let (served, fetched) = (scratch("escape-served"), scratch("escape-fetched"));
        let mut tar = archive(&[("etc/x", b"x")]);
        // `../escaped` can only be written by hand: the builder refuses it.
        let mut header = header(1);
        header.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../escaped");
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"e"[..]).unwrap();
        let evil = builder.into_inner().unwrap();
        tar.truncate(tar.len() - 1024);
        tar.extend_from_slice(&evil);
        let name = format!("{:x}", Sha256::digest(&tar));
        std::fs::write(served.join(&name), &tar).unwrap();
        let peer = relay(&served, vec!["127.0.0.1".parse().unwrap()], 1);
        let dest = fetched.join("d");
        let leaf = Target { keep: false, unpack: Some(&dest) };
        let later = Instant::now() + Duration::from_secs(30);
        // As GNU tar does: the entry is left out, the rest is unpacked.
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), &name, later, &leaf), Ok(()));
        assert_eq!(std::fs::read_to_string(dest.join("etc/x")).unwrap(), "x");
        assert!(!fetched.join("escaped").exists() && !fetched.join("d.unpack").exists());
        for dir in [served, fetched] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// A write that fails (a full disk: `/dev/full` answers every write with ENOSPC) stops the copy as
    /// this host's failure (1), not the peer's.
    #[test]
    fn a_full_disk_is_this_hosts_failure() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let source: &[u8] = b"some bytes";
        let mut incoming = Incoming {
            source,
            hasher: Sha256::new(),
            total: 0,
            deadline: Instant::now() + Duration::from_secs(5),
            copy: Some((full, PathBuf::from("/dev/full"))),
            failed: None,
        };
        let error = std::io::Read::read(&mut incoming, &mut [0u8; 64]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(28), "{error}");
        assert_eq!(receive(&mut incoming, None, EMPTY_SHA256), Err(1));
    }

    #[test]
    fn names_are_sha256_hex_and_tokens_compare_whole() {
        assert!(is_name(EMPTY_SHA256));
        assert!(!is_name("../etc/passwd") && !is_name(&"A".repeat(64)) && !is_name(&"a".repeat(63)));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"abcd"));
    }
}

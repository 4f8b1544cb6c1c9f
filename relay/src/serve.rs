//! `start` and `serve`: the relay that answers the cluster's hosts (the security model: `main.rs`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{fail, is_name};

/// Connections served at once: a relay feeds a few peers, never the whole cluster.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// A request line is a 32-byte hex token, a space, a 64-digit name and a newline.
pub(crate) const MAX_REQUEST: u64 = 256;
/// A peer that connects and says nothing, or stops reading, is dropped after this long.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Relay {
    pub(crate) dir: PathBuf,
    pub(crate) token: String,
    pub(crate) allowed: Vec<IpAddr>,
    pub(crate) start: Instant,
    /// Seconds since `start` of the last request's end (or of the start).
    pub(crate) last_activity: AtomicU64,
    pub(crate) active: AtomicUsize,
}

/// How long `start` waits for the relay to listen.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `DIR/sealer-relay serve` (this executable, linked there so that it is named so in `ps`) in a
/// process group of its own, so that it outlives the command that started it; hands it the access from
/// stdin and prints `relay-port PORT` once it listens, else `relay-failed WHY`. Either way it exits 0:
/// a host that cannot relay still holds its copy.
pub(crate) fn start(args: &[String]) -> ExitCode {
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
pub(crate) enum StartError {
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

pub(crate) fn spawn_relay(dir: &Path, args: &[String], access: &[u8]) -> Result<u16, StartError> {
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

pub(crate) fn serve(args: &[String]) -> ExitCode {
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

/// Writes `name` whole (a temporary file renamed), so a reader never sees half of it.
pub(crate) fn publish(dir: &Path, name: &str, value: &str) -> std::io::Result<()> {
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

    pub(crate) fn serve(&self, stream: TcpStream) {
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
        let mut stream = stream;
        match self.open(name) {
            Some((mut file, true)) => {
                let _ = std::io::copy(&mut file, &mut stream);
            }
            Some((file, false)) => {
                let _ = self.send_arriving(file, name, &mut stream);
            }
            None => return,
        }
        let _ = stream.flush();
    }

    /// The copy `name`, whole (`true`), or still arriving: its `.part` (the seed serves while it takes
    /// the workstation's copy in). A request may come before the first byte did: it waits for the
    /// `.part` as long as for a silent peer.
    fn open(&self, name: &str) -> Option<(std::fs::File, bool)> {
        let (whole, part) = (self.dir.join(name), self.dir.join(format!("{name}.part")));
        let until = Instant::now() + PEER_TIMEOUT;
        loop {
            if let Ok(file) = std::fs::File::open(&whole) {
                return Some((file, true));
            }
            if let Ok(file) = std::fs::File::open(&part) {
                return Some((file, false));
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(ARRIVING_POLL);
        }
    }

    /// Sends `file`, the `.part` of `name`, as its bytes arrive, until it is renamed to `name` (the
    /// helper renames it once its SHA-256 matched: every byte is written by then); an error when it was
    /// removed or replaced instead (its copy failed), or grew no more for [`PEER_TIMEOUT`]. The fetcher
    /// checks every byte against the name, as it does for a whole copy.
    fn send_arriving(&self, mut file: std::fs::File, name: &str, stream: &mut TcpStream) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let inode = |m: std::fs::Metadata| (m.dev(), m.ino());
        let this = inode(file.metadata()?);
        let (whole, part) = (self.dir.join(name), self.dir.join(format!("{name}.part")));
        let mut progress = Instant::now();
        loop {
            if std::io::copy(&mut file, stream)? > 0 {
                progress = Instant::now();
                continue;
            }
            let is_this = |path: &Path| std::fs::metadata(path).map(inode).ok() == Some(this);
            // The `.part` looked at after its name: a rename between the two looks is no failure.
            let (renamed, arriving) = (is_this(&whole), is_this(&part));
            if renamed || (!arriving && is_this(&whole)) {
                std::io::copy(&mut file, stream)?;
                return Ok(());
            }
            if !arriving || progress.elapsed() >= PEER_TIMEOUT {
                return Err(std::io::Error::other("the copy being received was not completed"));
            }
            std::thread::sleep(ARRIVING_POLL);
        }
    }
}

/// How often a relay looks again at a copy still arriving.
const ARRIVING_POLL: Duration = Duration::from_millis(2);

/// Compares in time that does not depend on where the first difference is.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

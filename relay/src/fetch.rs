//! `fetch`: a file from a peer's relay, and `receive`: files on stdin, each checked against its name as it
//! arrives.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::merge::merge;
use crate::serve::PEER_TIMEOUT;
use crate::{fail, file_sha256, is_name, MISMATCH, UNREACHABLE};

pub(crate) fn fetch(args: &[String]) -> ExitCode {
    const USAGE: &str = "usage: sealer-relay fetch PEER PORT SECONDS NAME SIZE [NAME SIZE]... \
                         [--unpack DEST [--keep]] (the token on stdin)";
    let (args, unpack, keep) = unpack_flags(args);
    let [peer, port, seconds, pairs @ ..] = args else { return fail(USAGE) };
    let (Ok(peer), Ok(port), Ok(seconds)) = (peer.parse::<IpAddr>(), port.parse::<u16>(), seconds.parse::<u64>())
    else {
        return fail("PEER must be an IP address, PORT a port and SECONDS a number");
    };
    let names = match named_sizes(pairs) {
        Ok(names) => names,
        Err(why) => return fail(why.as_deref().unwrap_or(USAGE)),
    };
    let mut token = String::new();
    if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
        return fail("no token on stdin");
    }
    let token = token.trim();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    for (file, target) in targets(names, unpack, keep) {
        if let Err(code) = fetch_one(Path::new("."), SocketAddr::new(peer, port), token, file, deadline, &target) {
            return ExitCode::from(code);
        }
    }
    ExitCode::SUCCESS
}

/// Each file with what becomes of it: the last unpacked into `unpack` (and kept too when `keep`), the
/// others kept.
fn targets<'a>(
    files: Vec<(&'a str, u64)>,
    unpack: Option<&'a String>,
    keep: bool,
) -> impl Iterator<Item = ((&'a str, u64), Target<'a>)> {
    let last = files.len().saturating_sub(1);
    files.into_iter().enumerate().map(move |(i, file)| match unpack {
        Some(dest) if i == last => (file, Target { keep, unpack: Some(Path::new(dest)) }),
        _ => (file, Target { keep: true, unpack: None }),
    })
}

/// `NAME SIZE [NAME SIZE]...`: each file's SHA-256 and length; `Err(None)` when they are not pairs,
/// `Err(Some(why))` when one is not a name and a size.
fn named_sizes(pairs: &[String]) -> Result<Vec<(&str, u64)>, Option<String>> {
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(None);
    }
    pairs
        .chunks(2)
        .map(|pair| match (is_name(&pair[0]), pair[1].parse::<u64>()) {
            (true, Ok(size)) => Ok((pair[0].as_str(), size)),
            _ => Err(Some(format!("`{} {}` is not a SHA-256 and a size", pair[0], pair[1]))),
        })
        .collect()
}

/// What becomes of a fetched file: kept in the directory under its name (to serve it), unpacked (a tar
/// archive) into a directory, or both.
pub(crate) struct Target<'a> {
    pub(crate) keep: bool,
    pub(crate) unpack: Option<&'a Path>,
}

/// The bytes of a fetch as they arrive: hashed, counted, copied to the kept file, within the deadline.
pub(crate) struct Incoming<R> {
    pub(crate) source: R,
    pub(crate) hasher: Sha256,
    pub(crate) total: u64,
    pub(crate) deadline: Instant,
    /// The kept file being written, and its path (named with the host's error when a write fails).
    pub(crate) copy: Option<(std::fs::File, PathBuf)>,
    /// Why reading stopped, when it failed: the peer (`UNREACHABLE`) or this host's disk (1).
    pub(crate) failed: Option<u8>,
}

impl<R: std::io::Read> std::io::Read for Incoming<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() > self.deadline {
            if self.failed.is_none() {
                eprintln!("sealer-relay: the copy went on past its time limit");
            }
            self.failed = Some(UNREACHABLE);
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the fetch took too long"));
        }
        let n = self.source.read(buffer).inspect_err(|e| {
            // Said once: the unpacking and the drain after it both read on.
            if self.failed.is_none() {
                eprintln!("sealer-relay: {e}");
            }
            self.failed = Some(UNREACHABLE);
        })?;
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

/// Fetches `name`, `size` bytes, from `peer` (or takes the copy `dir` already holds), checked as it
/// arrives: see [`take_in`]. A copy that ends short is the peer's failure (3: it stopped, or its own
/// copy, still arriving, failed), not other bytes (4).
pub(crate) fn fetch_one(
    dir: &Path,
    peer: SocketAddr,
    token: &str,
    (name, size): (&str, u64),
    deadline: Instant,
    target: &Target,
) -> Result<(), u8> {
    let file = dir.join(name);
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
        Box::new(Exactly::new(stream, size))
    };
    let target = Target { keep: target.keep && !held, unpack: target.unpack };
    take_in(dir, source, name, deadline, &target)
}

/// `receive SECONDS NAME SIZE [NAME SIZE]... [--unpack DEST [--keep]]`: the files come one after the
/// other on stdin (the workstation's copy to the seed), each checked against its name as it arrives, the
/// last one unpacked as `fetch` does: one pass over the bytes, where `cat`, `sha256sum` and `tar` took three.
pub(crate) fn receive_stdin(args: &[String]) -> ExitCode {
    const USAGE: &str = "usage: sealer-relay receive SECONDS NAME SIZE [NAME SIZE]... [--unpack DEST [--keep]]";
    let (args, unpack, keep) = unpack_flags(args);
    let Some((seconds, pairs)) = args.split_first() else { return fail(USAGE) };
    let Ok(seconds) = seconds.parse::<u64>() else { return fail("SECONDS must be a number") };
    let files = match named_sizes(pairs) {
        Ok(files) => files,
        Err(why) => return fail(why.as_deref().unwrap_or(USAGE)),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut stdin = std::io::stdin().lock();
    for ((name, size), target) in targets(files, unpack, keep) {
        if let Err(code) = take_in(Path::new("."), Exactly::new(&mut stdin, size), name, deadline, &target) {
            return ExitCode::from(code);
        }
    }
    ExitCode::SUCCESS
}

/// `… [--unpack DEST [--keep]]`: the arguments before, where to unpack the last file, and whether to keep
/// it as well (a file that is not unpacked is always kept).
fn unpack_flags(args: &[String]) -> (&[String], Option<&String>, bool) {
    match args {
        [rest @ .., flag, dest, keep] if flag == "--unpack" && keep == "--keep" => (rest, Some(dest), true),
        [rest @ .., flag, dest] if flag == "--unpack" => (rest, Some(dest), false),
        _ => (args, None, true),
    }
}

/// `left` bytes of `source`, an error when it ends before: a copy cut short says so, rather than failing
/// its SHA-256 check as if its bytes had changed.
pub(crate) struct Exactly<R> {
    source: std::io::Take<R>,
    left: u64,
}

impl<R: std::io::Read> Exactly<R> {
    pub(crate) fn new(source: R, size: u64) -> Exactly<R> {
        Exactly { source: std::io::Read::take(source, size), left: size }
    }
}

impl<R: std::io::Read> std::io::Read for Exactly<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.source.read(buffer)?;
        if n == 0 && self.left > 0 && !buffer.is_empty() {
            let message = format!("the copy ended {} bytes short", self.left);
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads `source`, the copy of `name`, hashing as it arrives, into `dir/name.part`, renamed to `dir/name`
/// once it matches (when `target.keep`), and/or unpacked into a stage beside the destination, merged into
/// it once it matches: nothing of a copy that does not match is left or used.
pub(crate) fn take_in<R: std::io::Read>(
    dir: &Path,
    source: R,
    name: &str,
    deadline: Instant,
    target: &Target,
) -> Result<(), u8> {
    let (part, file) = (dir.join(format!("{name}.part")), dir.join(name));
    let copy = if target.keep {
        // A new file, never one left by an earlier copy: a relay sending that one sees it replaced.
        let _ = std::fs::remove_file(&part);
        Some((std::fs::File::create(&part).map_err(|e| local_error(&part, &e))?, part.clone()))
    } else {
        None
    };
    let mut incoming = Incoming { source, hasher: Sha256::new(), total: 0, deadline, copy, failed: None };
    let stage = target.unpack.map(|dest| PathBuf::from(format!("{}.unpack", dest.display())));
    let result = receive(&mut incoming, stage.as_deref(), name).and_then(|()| {
        if target.keep {
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
pub(crate) fn receive<R: std::io::Read>(
    incoming: &mut Incoming<R>,
    stage: Option<&Path>,
    name: &str,
) -> Result<(), u8> {
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

pub(crate) fn local_error(path: &Path, e: &std::io::Error) -> u8 {
    // tar's errors say what failed in their text, and why in their source.
    let why = e.get_ref().and_then(|inner| inner.source()).map(|s| format!(": {s}")).unwrap_or_default();
    eprintln!("sealer-relay: {}: {e}{why}", path.display());
    1
}

/// The SHA-256 of nothing.
pub(crate) const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

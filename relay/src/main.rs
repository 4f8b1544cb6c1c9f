//! `sealer-relay DIR ADDRESS IDLE_SECS DEADLINE_SECS`: serves the files of `DIR` that are named by the
//! SHA-256 of their content to the cluster's other hosts, for the duration of one `sealer apply`.
//!
//! sealer starts it on a host that holds a verified copy of the image, so that other hosts fetch the copy
//! from it (with nothing but bash's `/dev/tcp`, `cat` and `sha256sum`) instead of from the workstation.
//! Its security model, in order:
//! - it listens on ADDRESS only (the host's cluster address), on a port the kernel picks;
//! - it answers only connections from the addresses listed in `DIR/access` (the cluster's hosts);
//! - a request is one line, `TOKEN NAME`: TOKEN is the random one-time token of this apply (first line of
//!   `DIR/access`, a 0600 file read and deleted at start, so it is never on a command line), NAME is 64
//!   hex digits; anything else closes the connection without a byte;
//! - it serves files of DIR only, read-only; the fetcher checks every byte against the digest the
//!   workstation computed, so a relay can make a fetch fail but never make it succeed with other bytes;
//! - it exits when sealer stops it at the end of the apply, after IDLE_SECS without a request, and after
//!   DEADLINE_SECS whatever happens, so a workstation that died leaves nothing listening for long.
//!
//! It writes its port to `DIR/port` and its process id to `DIR/pid` once it listens.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, address, idle, deadline] = args.as_slice() else {
        return fail("usage: sealer-relay DIR ADDRESS IDLE_SECS DEADLINE_SECS");
    };
    let (Ok(address), Ok(idle), Ok(deadline)) =
        (address.parse::<IpAddr>(), idle.parse::<u64>(), deadline.parse::<u64>())
    else {
        return fail("ADDRESS must be an IP address and IDLE_SECS, DEADLINE_SECS numbers");
    };
    let dir = PathBuf::from(dir);
    let access_path = dir.join("access");
    let access = match std::fs::read_to_string(&access_path) {
        Ok(text) => text,
        Err(e) => return fail(&format!("cannot read {}: {e}", access_path.display())),
    };
    // The token is read once and its file goes: nothing else on the host can learn it afterwards.
    let _ = std::fs::remove_file(&access_path);
    let mut lines = access.lines();
    let token = lines.next().unwrap_or_default().trim().to_string();
    let allowed: Vec<IpAddr> = lines.filter_map(|l| l.trim().parse().ok()).collect();
    if token.len() < 32 || allowed.is_empty() {
        return fail("the access file must hold a token of 32 characters or more, then the allowed addresses");
    }
    let listener = match TcpListener::bind(SocketAddr::new(address, 0)) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {address}: {e}")),
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => return fail(&format!("no local address: {e}")),
    };
    if let Err(e) =
        publish(&dir, "pid", &std::process::id().to_string()).and_then(|_| publish(&dir, "port", &port.to_string()))
    {
        return fail(&format!("cannot write to {}: {e}", dir.display()));
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
        let name_ok = name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !same(token.as_bytes(), self.token.as_bytes()) || !name_ok {
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

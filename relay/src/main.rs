//! The helper sealer runs on cluster hosts during one `sealer apply`, so that hosts get the image from
//! each other instead of each from the workstation:
//!
//! - `sealer-relay start DIR ADDRESS IDLE_SECS DEADLINE_SECS` (the access on stdin) starts
//!   `DIR/sealer-relay serve …` in the background and prints `relay-port PORT` once it listens, or
//!   `relay-failed WHY`;
//! - `sealer-relay serve DIR ADDRESS IDLE_SECS DEADLINE_SECS` (the access on stdin) serves the files of
//!   `DIR` that are named by the SHA-256 of their content to the cluster's other hosts;
//! - `sealer-relay fetch PEER PORT SECONDS NAME SIZE...` (the token on stdin) fetches each NAME from a peer's
//!   relay into the current directory, checking it against its name as it arrives, in the time it takes
//!   to read it (a host without the helper fetches it first with bash's `/dev/tcp` and `sha256sum`);
//! - `sealer-relay receive SECONDS NAME SIZE...` does the same with files that come on stdin one after the
//!   other: the workstation's copy to the seed.
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

mod fetch;
mod merge;
mod serve;

use std::path::Path;
use std::process::ExitCode;

use sha2::{Digest as _, Sha256};

pub(crate) fn fail(message: &str) -> ExitCode {
    eprintln!("sealer-relay: {message}");
    ExitCode::from(2)
}

/// Exit statuses of `fetch` and `receive` that sealer tells apart: the copy stopped short (the peer
/// could not be reached, refused, went silent or too slow; stdin ended early), and a file whose bytes
/// did not match its name.
pub(crate) const UNREACHABLE: u8 = 3;
pub(crate) const MISMATCH: u8 = 4;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, rest)) if command == "start" => serve::start(rest),
        Some((command, rest)) if command == "serve" => serve::serve(rest),
        Some((command, rest)) if command == "fetch" => fetch::fetch(rest),
        Some((command, rest)) if command == "receive" => fetch::receive_stdin(rest),
        _ => fail(
            "usage: sealer-relay start|serve DIR ADDRESS IDLE_SECS DEADLINE_SECS | fetch PEER PORT SECONDS NAME SIZE... \
             | receive SECONDS NAME SIZE...",
        ),
    }
}

pub(crate) fn is_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The SHA-256 of the file at `path`, if it can be read.
pub(crate) fn file_sha256(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::{IpAddr, SocketAddr, TcpListener};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::fetch::*;
    use crate::serve::*;

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
        assert_eq!(
            fetch_one(&fetched, peer, &"x".repeat(32), (&name, content.len() as u64), later, &KEEP),
            Err(UNREACHABLE),
            "a wrong token"
        );
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), (&name, content.len() as u64), later, &KEEP), Ok(()));
        assert_eq!(std::fs::read(fetched.join(&name)).unwrap(), content);
        // A relay whose copy changed: the bytes arrive, the name does not match, nothing is kept.
        let mut changed = content.clone();
        changed[5] ^= 1;
        std::fs::write(served.join(&name), &changed).unwrap();
        std::fs::remove_file(fetched.join(&name)).unwrap();
        assert_eq!(
            fetch_one(&fetched, peer, &"t".repeat(32), (&name, content.len() as u64), later, &KEEP),
            Err(MISMATCH)
        );
        assert_eq!(std::fs::read_dir(&fetched).unwrap().count(), 0, "no part file left");
        // An address the relay does not answer.
        let other = relay(&served, vec!["10.0.0.9".parse().unwrap()], 1);
        assert_eq!(
            fetch_one(&fetched, other, &"t".repeat(32), (&name, content.len() as u64), later, &KEEP),
            Err(UNREACHABLE)
        );
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
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), (&name, tar.len() as u64), later, &leaf), Ok(()));
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
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), (&name, tar.len() as u64), later, &leaf), Err(MISMATCH));
        assert_eq!(read("etc/a.yml"), "new");
        assert!(!dest.join("etc/evil").exists() && !fetched.join("rootfs.unpack").exists());
        // A relay keeps its copy as well, and a copy it already holds is unpacked without a fetch.
        std::fs::write(served.join(&name), &tar).unwrap();
        let fresh = fetched.join("fresh");
        let relay_target = Target { keep: true, unpack: Some(&fresh) };
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), (&name, tar.len() as u64), later, &relay_target), Ok(()));
        assert_eq!(std::fs::read(fetched.join(&name)).unwrap(), tar);
        std::fs::remove_dir_all(&fresh).unwrap();
        let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            fetch_one(&fetched, nowhere, &"t".repeat(32), (&name, tar.len() as u64), later, &relay_target),
            Ok(())
        );
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
        assert_eq!(fetch_one(&fetched, peer, &"t".repeat(32), (&name, tar.len() as u64), later, &leaf), Ok(()));
        assert_eq!(std::fs::read_to_string(dest.join("etc/x")).unwrap(), "x");
        assert!(!fetched.join("escaped").exists() && !fetched.join("d.unpack").exists());
        for dir in [served, fetched] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// The workstation's copy to the seed: files one after the other on one stream, each kept and/or
    /// unpacked once it matches; a stream cut short is said as such, and leaves nothing.
    #[test]
    fn files_on_one_stream_are_taken_in_one_after_the_other_and_a_short_one_leaves_nothing() {
        let dir = scratch("stream");
        let manifest = b"the manifest".to_vec();
        let tar = archive(&[("etc/a.yml", b"new")]);
        let (m, t) = (format!("{:x}", Sha256::digest(&manifest)), format!("{:x}", Sha256::digest(&tar)));
        let stream = [manifest.clone(), tar.clone()].concat();
        let mut input = &stream[..];
        let later = Instant::now() + Duration::from_secs(30);
        let dest = dir.join("rootfs");
        let first = Exactly::new(&mut input, manifest.len() as u64);
        assert_eq!(take_in(&dir, first, &m, later, &KEEP), Ok(()));
        let serve = Target { keep: true, unpack: Some(&dest) };
        let second = Exactly::new(&mut input, tar.len() as u64);
        assert_eq!(take_in(&dir, second, &t, later, &serve), Ok(()));
        assert_eq!(
            (std::fs::read(dir.join(&m)).unwrap(), std::fs::read(dir.join(&t)).unwrap()),
            (manifest, tar.clone())
        );
        assert_eq!(std::fs::read_to_string(dest.join("etc/a.yml")).unwrap(), "new");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let short = Exactly::new(&tar[..tar.len() - 100], tar.len() as u64);
        assert_eq!(take_in(&dir, short, &t, later, &serve), Err(UNREACHABLE));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no part, stage nor destination left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A copy still arriving (the seed's `.part`) is served as it grows, whole once renamed; one removed
    /// instead (its copy failed) ends the fetch short (the peer's failure, not other bytes), which keeps
    /// nothing.
    #[test]
    fn a_copy_still_arriving_is_served_as_it_grows_and_not_once_abandoned() {
        use std::io::Write as _;
        let (served, fetched) = (scratch("arriving-served"), scratch("arriving-fetched"));
        let content = b"arriving".repeat(100_000);
        let (name, content_len) = (format!("{:x}", Sha256::digest(&content)), content.len() as u64);
        let part = served.join(format!("{name}.part"));
        let peer = relay(&served, vec!["127.0.0.1".parse().unwrap()], 2);
        let later = Instant::now() + Duration::from_secs(30);
        let (tx, rx) = std::sync::mpsc::channel();
        let into = fetched.clone();
        let n = name.clone();
        std::thread::spawn(move || {
            tx.send(fetch_one(&into, peer, &"t".repeat(32), (&n, content_len), later, &KEEP)).unwrap()
        });
        // The fetch comes before the first byte; then the copy arrives in two parts, and is renamed.
        std::thread::sleep(Duration::from_millis(50));
        let mut file = std::fs::File::create(&part).unwrap();
        file.write_all(&content[..300_000]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "the fetch waits for the rest");
        file.write_all(&content[300_000..]).unwrap();
        std::fs::rename(&part, served.join(&name)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(()));
        assert_eq!(std::fs::read(fetched.join(&name)).unwrap(), content);
        // Abandoned half-way: the fetch fails and keeps nothing.
        std::fs::remove_file(fetched.join(&name)).unwrap();
        std::fs::remove_file(served.join(&name)).unwrap();
        let mut file = std::fs::File::create(&part).unwrap();
        file.write_all(&content[..300_000]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (into, n) = (fetched.clone(), name.clone());
        std::thread::spawn(move || {
            tx.send(fetch_one(&into, peer, &"t".repeat(32), (&n, content_len), later, &KEEP)).unwrap()
        });
        // Once the fetch holds the bytes that arrived (its own `.part`), the copy is abandoned.
        let fetching = fetched.join(format!("{name}.part"));
        let waited = Instant::now();
        while std::fs::metadata(&fetching).map(|m| m.len()).unwrap_or(0) < 300_000 {
            assert!(waited.elapsed() < Duration::from_secs(20), "the fetch never got the first bytes");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(&part).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Err(UNREACHABLE));
        assert_eq!(std::fs::read_dir(&fetched).unwrap().count(), 0, "nothing kept");
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

//! `sealer-relay receive`, run as the seed's copy runs it: the files on stdin one after the other, in
//! one process whose stdin is buffered (the second file must start where the first ended).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// An archive of one file, `etc/a.yml`, of `size` bytes: larger than a read buffer, so that the
/// helper's reads cross from the first file into the second.
fn archive(size: usize) -> Vec<u8> {
    let content = vec![b'x'; size];
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, "etc/a.yml", &content[..]).unwrap();
    builder.into_inner().unwrap()
}

/// Runs `receive` in `dir` with `args`, `stdin` written whole (then closed); its status and stderr.
fn receive(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealer-relay"))
        .arg("receive")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A helper that refused its arguments reads nothing: its stdin may close under the write.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_seed_takes_the_manifest_and_the_archive_from_one_stdin() {
    let dir = std::env::temp_dir().join(format!("sealer-relay-receive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = b"manifest: 1\n".to_vec();
    let tar = archive(100_000);
    let (m, t) = (sha(&manifest), sha(&tar));
    let (ms, ts) = (manifest.len().to_string(), tar.len().to_string());
    let stdin = [manifest.clone(), tar.clone(), b"what the transport drains".to_vec()].concat();
    let args = ["60", &m, &ms, &t, &ts, "--unpack", "rootfs", "--keep"];
    assert_eq!(receive(&dir, &args, &stdin), (Some(0), String::new()));
    assert_eq!(std::fs::read(dir.join(&m)).unwrap(), manifest);
    assert_eq!(std::fs::read(dir.join(&t)).unwrap(), tar);
    assert_eq!(std::fs::read(dir.join("rootfs/etc/a.yml")).unwrap().len(), 100_000);

    // Cut short: said as such, with nothing of the archive left (the manifest, whole, is kept).
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let (status, stderr) = receive(&dir, &args, &stdin[..manifest.len() + 5000]);
    assert_eq!(status, Some(3), "{stderr}");
    assert!(stderr.contains("the copy ended") && stderr.contains("bytes short"), "{stderr}");
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, vec![m.clone()]);

    // Other bytes of the right length: a mismatch (4), nothing unpacked.
    let mut changed = tar.clone();
    changed[600] ^= 1;
    let stdin = [manifest.clone(), changed].concat();
    assert_eq!(receive(&dir, &args, &stdin).0, Some(4));
    assert!(!dir.join("rootfs").exists() && !dir.join(&t).exists());

    // Arguments that are not names and sizes: refused before a byte is read.
    for bad in [&["60", "../x", "1"][..], &["60", &m][..], &["60", &m, "-1"][..], &["x", &m, "1"][..]] {
        let (status, stderr) = receive(&dir, bad, b"");
        assert_eq!(status, Some(2), "{bad:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

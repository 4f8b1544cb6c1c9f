//! How sealer writes files on the workstation. [`write_atomic`] is the one way a file is replaced whole
//! or not at all, with the mode its caller names. [`write_private`] is the one way a file that may hold a
//! secret is written (logs, the ETCD plugin's snapshot of every Secret, registry logins, the Clusterfile
//! `sealer run` writes with the ssh password): 0600 from its creation in a 0700 directory, so no other
//! user reads it at any moment.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Creates `dir` and its missing parents 0700. A directory that exists keeps its mode: it may be the
/// user's (an ETCD plugin's `data: /tmp`), and the files sealer puts in it are 0600 anyway.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `content` to `path` whole or not at all: a temporary file beside it, with exactly `mode` from
/// its creation (whatever the umask), synced, then renamed over `path`. The directory must exist.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            // The umask narrows the mode at creation, and a file a killed write left keeps its own.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.write_all(content)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    remove_abandoned_temps(path);
    written
}

/// Removes the temporary files of `path` that writes of processes gone (killed mid-write) left beside it.
fn remove_abandoned_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let pid = entry_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split_once('-'))
            .map(|(pid, _)| pid)
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `content` to `path` whole or not at all, 0600 in a 0700 directory.
pub fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    write_atomic(path, content, 0o600)
}

/// Opens `path` for appending, created 0600 in a 0700 directory.
pub fn append_private(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_0600_in_0700_directories_and_a_users_directory_keeps_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&file, b"new").unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o777, 0o600), "a file made wider before is 0600 now");
        let made = root.path().join("c/d/secret");
        write_private(&made, b"x").unwrap();
        assert_eq!((mode(&root.path().join("c")), mode(&root.path().join("c/d"))), (0o700, 0o700));
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        let log = root.path().join("logs/1/h.log");
        append_private(&log).unwrap().write_all(b"x").unwrap();
        assert_eq!(
            (mode(&root.path().join("logs/1")), mode(&root.path().join("logs")), mode(&log)),
            (0o700, 0o700, 0o600)
        );
    }

    #[test]
    fn an_atomic_write_has_exactly_its_mode_and_leaves_nothing_on_failure() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("plan");
        write_atomic(&file, b"one", 0o644).unwrap();
        write_atomic(&file, b"two", 0o640).unwrap();
        assert_eq!((std::fs::read(&file).unwrap(), mode(&file)), (b"two".to_vec(), 0o640));
        let missing = root.path().join("no/such/dir/plan");
        assert!(write_atomic(&missing, b"x", 0o644).is_err());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "no temporary file left");
        // What a killed write left (its process gone) goes with the next write; a live one's stays.
        let dead = root.path().join("plan.4194399-0.tmp");
        let live = root.path().join(format!("plan.{}-9.tmp", std::process::id()));
        let other = root.path().join("planned.4194399-0.tmp");
        for f in [&dead, &live, &other] {
            std::fs::write(f, "x").unwrap();
        }
        write_atomic(&file, b"three", 0o644).unwrap();
        assert!(!dead.exists() && live.exists() && other.exists());
    }
}

//! The one way sealer writes a file that may hold a secret on the workstation (logs, the ETCD plugin's
//! snapshot of every Secret, registry logins, the Clusterfile `sealer run` writes with the ssh password):
//! the file is 0600 from its creation and its directory 0700, so no other user reads it at any moment.

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

/// Writes `content` to `path` whole or not at all: a 0600 temporary file beside it, renamed over it.
pub fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            // A file left by an older sealer with a wider mode keeps it through `truncate`.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(content)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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
}

//! `merge`: a fetched archive's stage moved into its destination, as `tar -x` would have left it.

use std::path::Path;

/// Moves what `from` holds into `to` as `tar -x` into `to` would have put it: files replace files,
/// directories merge, what `to` has besides stays. Renames only: `from` is on the same file system.
pub(crate) fn merge(from: &Path, to: &Path) -> std::io::Result<()> {
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

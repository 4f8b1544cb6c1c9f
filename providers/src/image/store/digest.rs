//! The digests of a rootfs's files, with a cache of those already hashed, and its file manifest.

use super::*;

/// SHA-256 of files already hashed, keyed by the [`identity`] of the file a rootfs file was copied from
/// and the path it has in the rootfs: an unchanged COPY or base image is not hashed again, and a file
/// whose content changed is, however its times were set. Files with no recorded source (made by RUN, pulled,
/// loaded) are always hashed. Kept in the store as `.cache/digests`, one `key<TAB>sha256` a line.
pub struct DigestCache {
    path: PathBuf,
    known: HashMap<String, String>,
    used: HashMap<String, String>,
}

/// Entries kept from earlier builds beside those of the latest one, at most.
pub(super) const DIGEST_CACHE_LIMIT: usize = 200_000;

impl DigestCache {
    pub fn load(store_root: &Path) -> Self {
        let path = store_root.join(".cache/digests");
        let known = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit_once('\t').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        DigestCache { path, known, used: HashMap::new() }
    }

    /// Written whole or not at all; a cache that cannot be written only costs time.
    pub fn save(mut self) {
        if self.known.len() + self.used.len() > DIGEST_CACHE_LIMIT {
            self.known.clear();
        }
        self.known.extend(self.used);
        let text: String = self.known.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
        let Some(dir) = self.path.parent() else { return };
        let _ = fs::create_dir_all(dir).and_then(|()| crate::private::write_atomic(&self.path, text.as_bytes(), 0o644));
    }

    fn digest(&mut self, path: &Path, rel: &str, source: Option<&String>) -> std::io::Result<String> {
        let key = source.map(|id| format!("{id}:{rel}"));
        if let Some(key) = &key {
            if let Some(sha) = self.known.get(key).or_else(|| self.used.get(key)) {
                let sha = sha.clone();
                self.used.insert(key.clone(), sha.clone());
                return Ok(sha);
            }
        }
        let mut hasher = Sha256::new();
        let mut f = fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha = format!("{:x}", hasher.finalize());
        if let Some(key) = key {
            self.used.insert(key, sha.clone());
        }
        Ok(sha)
    }
}

/// `sha256 mode path` for every regular file under `root`, sorted; the rootfs digest is over this.
/// `sources`: the identity of the file each was copied from (see [`DigestCache`]). `progress` sees the
/// bytes go by (files the cache knows count at once).
pub fn manifest(
    root: &Path,
    digests: &mut DigestCache,
    sources: &BTreeMap<String, String>,
    progress: &dyn TransferProgress,
) -> std::io::Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                files.push((path, meta));
            }
        }
    }
    progress.start("packing", files.iter().map(|(_, m)| m.len()).sum(), 0);
    let mut lines = Vec::with_capacity(files.len());
    for (path, meta) in files {
        let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        let sha = digests.digest(&path, &rel, sources.get(&rel))?;
        progress.advance(meta.len());
        lines.push((rel, sha, meta.permissions().mode() & 0o7777));
    }
    progress.finish("packing", false);
    lines.sort();
    Ok(lines.into_iter().map(|(path, sha, mode)| format!("{sha} {mode:o} {path}\n")).collect())
}

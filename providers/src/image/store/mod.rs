//! The local image store (`$SEALER_HOME/images`, default `~/.sealer/images`): one directory per image
//! with its rootfs, a file manifest (`sha256 mode path` per file, which is what the rootfs digest is
//! computed over and what lets a copy send only changed files) and `image.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kubefile::{self, Instruction, KubefileError};
use super::{Quiet, TransferProgress};

mod copy;
mod digest;

pub use copy::ROOTFS_DIRS;
use copy::*;
pub use digest::{manifest, DigestCache};

pub const IMAGE_FORMAT_VERSION: &str = "1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub format_version: String,
    pub name: String,
    /// The image's identity ([`image_digest`]): `sha256:` over its file manifest and its configuration.
    pub digest: String,
    pub base: Option<String>,
    pub cmds: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Container images carried in the image's registry (the lite build).
    #[serde(default)]
    pub images: Vec<String>,
}

/// An image's identity: SHA-256 over its file manifest and everything its configuration says (CMDs, ENV,
/// LABELs, the container images it carries), as an OCI manifest's digest names both its config and its
/// layers; a rebuild that changes only a CMD is a new image. Not its name, nor the base it was built
/// `FROM` (provenance, not content). An image committed before this rule keeps the digest it was stored
/// with, so upgrading sealer changes no plan.
pub fn image_digest(manifest: &str, config: &ImageConfig) -> String {
    let document = serde_json::json!({
        "files": format!("sha256:{:x}", Sha256::digest(manifest.as_bytes())),
        "cmds": config.cmds,
        "env": config.env,
        "labels": config.labels,
        "images": config.images,
    });
    format!("sha256:{:x}", Sha256::digest(document.to_string().as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{file}: {errors}", errors = .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Kubefile { file: String, errors: Vec<KubefileError> },
    #[error("{file}: line {line}: {message}")]
    Step { file: String, line: usize, message: String },
    #[error("image `{0}` is not in the local store; build it with `sealer build` first")]
    NotFound(String),
    #[error("image store `{path}`: {message}")]
    Io { path: String, message: String },
    #[error("`{name}` is not an image name: {why}")]
    Name { name: String, why: &'static str },
}

/// An image name by the OCI reference grammar: `[host[:port]/]path[:tag][@algorithm:hex]`, path components
/// lowercase `a-z0-9` joined by `.`, `_`, `__` or dashes, a tag of 1-128 `\w.-` not starting with `.`/`-`.
pub fn check_name(name: &str) -> Result<(), ImageError> {
    let bad = |why| Err(ImageError::Name { name: name.to_string(), why });
    if name.is_empty() || name.len() > 255 {
        return bad("it must be 1-255 characters");
    }
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(a, h)| {
            !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && h.len() >= 32
                && h.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return bad("the digest must be `algorithm:hex`");
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return bad("a tag is 1-128 of `A-Za-z0-9_.-`, not starting with `.` or `-`");
        }
    }
    let mut components: Vec<&str> = path.split('/').collect();
    let first = components[0];
    if components.len() > 1 && (first.contains(['.', ':']) || first == "localhost") {
        let (host, port) = first.split_once(':').unwrap_or((first, ""));
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !host_ok || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad("the registry host must be `host[:port]`");
        }
        components.remove(0);
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.split(['.', '_', '-']).all(|part| !part.is_empty() || c.contains("__") || c.contains("--"))
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
            && !c.contains("..")
            && !c.contains("___")
    };
    if !components.iter().all(|c| component_ok(c)) {
        return bad("path components are lowercase `a-z0-9`, joined by `.`, `_`, `__` or `-`");
    }
    Ok(())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |e| ImageError::Io { path: path.display().to_string(), message: e.to_string() }
}

pub struct StoredImage {
    pub config: ImageConfig,
    pub rootfs: PathBuf,
    /// `sha256 mode path` lines, sorted by path.
    pub manifest: String,
}

/// The paths whose line (`sha256 mode path`) in manifest `new` is not in `old`: what a copy sends.
pub fn changed_paths<'a>(old: &str, new: &'a str) -> Vec<&'a str> {
    let old: std::collections::HashSet<&str> = old.lines().collect();
    new.lines().filter(|l| !old.contains(l)).filter_map(manifest_path).collect()
}

/// The bytes of the tar archive of the files `paths` of `rootfs`: what a copy of them sends. Each entry is a
/// 512-byte header and a regular file's content padded to 512 bytes; a name (or a link's target) longer
/// than a header holds (100 bytes) comes first as a GNU long-name entry, a header and the name padded to
/// 512 bytes; the archive ends with 1024 zero bytes. (A sparse file counts whole: at most more than sent.)
pub fn bytes_of(rootfs: &Path, paths: &[&str]) -> u64 {
    let long = |name_len: usize| if name_len > 100 { 512 + (name_len as u64 + 1).div_ceil(512) * 512 } else { 0 };
    let entry = |path: &&str| {
        let full = rootfs.join(path);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        let target = if meta.is_symlink() { std::fs::read_link(&full).map_or(0, |t| t.as_os_str().len()) } else { 0 };
        let content = if meta.is_file() { meta.len().div_ceil(512) * 512 } else { 0 };
        Some(512 + long(path.len()) + long(target) + content)
    };
    paths.iter().filter_map(entry).sum::<u64>() + 1024
}

/// The paths of `old` that `new` no longer has: what a copy removes.
pub fn removed_paths<'a>(old: &'a str, new: &str) -> Vec<&'a str> {
    let new: std::collections::HashSet<&str> = new.lines().filter_map(manifest_path).collect();
    // The old manifest comes from the host: a path that would leave the rootfs is never removed.
    let inside = |p: &&str| !p.starts_with('/') && !p.split('/').any(|c| c == "..");
    old.lines().filter_map(manifest_path).filter(inside).filter(|p| !new.contains(p)).collect()
}

/// The path of a manifest line.
fn manifest_path(line: &str) -> Option<&str> {
    line.splitn(3, ' ').nth(2)
}

pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store under `home` (`$SEALER_HOME`, else `~/.sealer`).
    pub fn new(home: &Path) -> Self {
        ImageStore { root: home.join("images") }
    }

    /// Where image `name` lives: every byte outside `a-z0-9.-` escaped as `_XX`, so that two names never
    /// share a directory (`reg.io/team/app:1` and `reg.io/team_app:1` stay apart).
    fn dir_for(&self, name: &str) -> PathBuf {
        let mut safe = String::with_capacity(name.len());
        for b in name.bytes() {
            if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
                safe.push(char::from(b));
            } else {
                safe.push_str(&format!("_{b:02x}"));
            }
        }
        self.root.join(safe)
    }

    /// The directory of an existing image `name`: where `dir_for` puts it, or where stores before the
    /// escaping put it (`_` for every other character), when the image there has exactly that name.
    fn existing_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir_for(name);
        if dir.join("image.json").exists() {
            return dir;
        }
        let legacy: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        let legacy = self.root.join(legacy);
        let named = fs::read_to_string(legacy.join("image.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<ImageConfig>(&t).ok())
            .is_some_and(|c| c.name == name);
        if named {
            legacy
        } else {
            dir
        }
    }

    pub fn get(&self, name: &str) -> Result<StoredImage, ImageError> {
        let dir = self.existing_dir(name);
        let config_path = dir.join("image.json");
        let text = match fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ImageError::NotFound(name.to_string())),
            Err(e) => return Err(io(&config_path)(e)),
        };
        let config: ImageConfig = serde_json::from_str(&text)
            .map_err(|e| ImageError::Io { path: config_path.display().to_string(), message: e.to_string() })?;
        let manifest = fs::read_to_string(dir.join("manifest")).map_err(io(&dir))?;
        Ok(StoredImage { config, rootfs: dir.join("rootfs"), manifest })
    }

    pub fn list(&self) -> Result<Vec<ImageConfig>, ImageError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.root)(e)),
        };
        // Dot directories are the store's own: builds in progress or abandoned, the digest cache.
        for entry in entries.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')) {
            if let Ok(text) = fs::read_to_string(entry.path().join("image.json")) {
                if let Ok(config) = serde_json::from_str::<ImageConfig>(&text) {
                    out.push(config);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Runs the Kubefile at `kubefile` in `context` into a work directory, without touching the store; the
    /// caller adds what it needs (the lite build) and then calls [`ImageStore::commit`], or
    /// [`ImageStore::discard`] on failure.
    pub fn prepare(
        &self,
        kubefile: &Path,
        context: &Path,
        name: &str,
        build_args: &BTreeMap<String, String>,
        mut say: impl FnMut(&str),
    ) -> Result<(PathBuf, ImageConfig), ImageError> {
        check_name(name)?;
        let file = kubefile.display().to_string();
        let text = fs::read_to_string(kubefile).map_err(io(kubefile))?;
        let steps =
            kubefile::parse(&text, build_args).map_err(|errors| ImageError::Kubefile { file: file.clone(), errors })?;
        let work = self.work_dir()?;
        let rootfs = work.join("rootfs");
        match self
            .run_steps(&steps, &file, context, &rootfs, name, &mut say)
            .and_then(|(config, sources)| write_sources(&work, &sources).map(|()| config))
        {
            Ok(config) => Ok((work, config)),
            Err(e) => {
                self.discard(&work);
                Err(e)
            }
        }
    }

    pub fn discard(&self, work: &Path) {
        let _ = fs::remove_dir_all(work);
    }

    /// Where pulls keep what an interruption must not lose: the blobs being downloaded.
    pub fn partial_dir(&self) -> Result<PathBuf, ImageError> {
        let dir = self.root.join(".partial");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir)
    }

    /// Where a blob being downloaded is kept until it is complete, so an interrupted pull resumes there.
    pub fn partial_blob(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.partial_dir()?.join(digest.replace(':', "-")))
    }

    /// Removes what builds that died left (`.work-PID-N`, `.old-PID-N` of processes that are gone).
    fn clean_abandoned(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid =
                name.strip_prefix(".work-").or_else(|| name.strip_prefix(".old-")).and_then(|r| r.split('-').next());
            if pid.is_some_and(|p| !Path::new("/proc").join(p).exists()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// A fresh directory for assembling an image before [`ImageStore::commit`].
    pub fn work_dir(&self) -> Result<PathBuf, ImageError> {
        self.clean_abandoned();
        let work = self.root.join(format!(".work-{}-{}", std::process::id(), self.next_work()));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(work.join("rootfs")).map_err(io(&work))?;
        Ok(work)
    }

    fn next_work(&self) -> u64 {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// Seals `work/rootfs` as image `config.name`: computes the manifest and digest, then replaces any
    /// image of that name in one rename, so a failed build or pull leaves the store as it was.
    pub fn commit(
        &self,
        work: &Path,
        config: ImageConfig,
        progress: &dyn TransferProgress,
    ) -> Result<ImageConfig, ImageError> {
        let rootfs = work.join("rootfs");
        let mut digests = DigestCache::load(&self.root);
        let sources: BTreeMap<String, String> = fs::read_to_string(work.join(SOURCES_FILE))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let _ = fs::remove_file(work.join(SOURCES_FILE));
        let manifest = manifest(&rootfs, &mut digests, &sources, progress).map_err(io(&rootfs))?;
        digests.save();
        let config = ImageConfig { digest: image_digest(&manifest, &config), ..config };
        fs::write(work.join("manifest"), &manifest).map_err(io(work))?;
        self.keep_manifest(&config.digest, &manifest)?;
        let json = serde_json::to_string_pretty(&config)
            .map_err(|e| ImageError::Io { path: work.display().to_string(), message: e.to_string() })?;
        fs::write(work.join("image.json"), json).map_err(io(work))?;
        check_name(&config.name)?;
        let dest = self.dir_for(&config.name);
        // An image kept where stores before the escaping put it is replaced too, not left beside.
        let legacy = Some(self.existing_dir(&config.name)).filter(|d| *d != dest);
        let old = self.root.join(format!(".old-{}-{}", std::process::id(), self.next_work()));
        if dest.exists() {
            fs::rename(&dest, &old).map_err(io(&dest))?;
        }
        fs::rename(work, &dest).map_err(io(&dest))?;
        let _ = fs::remove_dir_all(&old);
        if let Some(legacy) = legacy {
            let _ = fs::remove_dir_all(legacy);
        }
        Ok(config)
    }

    /// Keeps every committed manifest by its digest, so that a plan can tell what a new digest changes
    /// against the one a host holds after the image under that name was replaced.
    fn keep_manifest(&self, digest: &str, manifest: &str) -> Result<(), ImageError> {
        let dir = self.root.join(".manifests");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(digest.replace(':', "-"));
        if !path.exists() {
            crate::private::write_atomic(&path, manifest.as_bytes(), 0o644).map_err(io(&path))?;
        }
        Ok(())
    }

    /// The manifest of an image this store committed with `digest`, if it still has it.
    pub fn manifest_of(&self, digest: &str) -> Option<String> {
        let name = digest.replace(':', "-");
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        fs::read_to_string(self.root.join(".manifests").join(name)).ok()
    }

    /// A second name for an image (a copy: images are small directories and names are independent).
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageConfig, ImageError> {
        check_name(target)?;
        let image = self.get(source)?;
        let work = self.work_dir()?;
        let rootfs = work.join("rootfs");
        copy_tree(&image.rootfs, &rootfs).map_err(io(&work))?;
        let mut sources = BTreeMap::new();
        record_sources(&image.rootfs, &rootfs, &rootfs, &mut sources);
        write_sources(&work, &sources)?;
        self.commit(&work, ImageConfig { name: target.to_string(), ..image.config }, &Quiet)
    }

    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let dir = self.existing_dir(name);
        if !dir.join("image.json").exists() {
            return Err(ImageError::NotFound(name.to_string()));
        }
        fs::remove_dir_all(&dir).map_err(io(&dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rootfs file copied from a source the cache knows is not hashed again; a source whose content
    /// changed is, even with the same size and a modification time set back by `touch -d`.
    #[test]
    fn unchanged_sources_are_not_hashed_again_and_changed_ones_are_whatever_their_times() {
        let store = tempfile::tempdir().unwrap();
        let context = tempfile::tempdir().unwrap();
        let source = context.path().join("tool");
        fs::write(&source, b"version 1").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::open(&source).unwrap().set_modified(old).unwrap();
        // Old enough for the racy-timestamp rule (its change time is now: wait it out).
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let build = |cache: &mut DigestCache| {
            let rootfs = tempfile::tempdir().unwrap();
            copy_tree(&source, &rootfs.path().join("bin/tool")).unwrap();
            let mut sources = BTreeMap::new();
            record_sources(&source, &rootfs.path().join("bin/tool"), rootfs.path(), &mut sources);
            manifest(rootfs.path(), cache, &sources, &Quiet).unwrap()
        };
        let mut cache = DigestCache::load(store.path());
        let first = build(&mut cache);
        assert!(first.starts_with(&format!("{:x}", Sha256::digest(b"version 1"))), "{first}");
        cache.save();

        // Poison the cached digest: an unchanged source takes it as is, proving it was not read.
        let path = store.path().join(".cache/digests");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace(&format!("{:x}", Sha256::digest(b"version 1")), &"0".repeat(64))).unwrap();
        let mut cache = DigestCache::load(store.path());
        assert!(build(&mut cache).starts_with(&"0".repeat(64)));

        // Same size, modification time put back as it was: the change time moved, so it is hashed again.
        fs::write(&source, b"version 2").unwrap();
        fs::File::open(&source).unwrap().set_modified(old).unwrap();
        let again = build(&mut cache);
        assert!(again.starts_with(&format!("{:x}", Sha256::digest(b"version 2"))), "{again}");
        // A file with no recorded source is always hashed.
        let rootfs = tempfile::tempdir().unwrap();
        fs::write(rootfs.path().join("made-by-run"), b"x").unwrap();
        let made = manifest(rootfs.path(), &mut cache, &BTreeMap::new(), &Quiet).unwrap();
        assert!(made.starts_with(&format!("{:x}", Sha256::digest(b"x"))));
    }

    /// A build context with `a.txt`, a link to a directory outside holding a canary, and a link to a
    /// canary file outside; returns (home, context, outside).
    fn escape_setup() -> (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir) {
        let (home, context, outside) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(outside.path().join("secret.txt"), "canary").unwrap();
        fs::write(context.path().join("a.txt"), "mine").unwrap();
        std::os::unix::fs::symlink(outside.path(), context.path().join("link_out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), context.path().join("file_link")).unwrap();
        (home, context, outside)
    }

    fn build(home: &Path, context: &Path, name: &str, kubefile: &str) -> Result<ImageConfig, ImageError> {
        let path = context.join(format!("Kubefile.{name}"));
        fs::write(&path, kubefile).unwrap();
        let store = ImageStore::new(home);
        let (work, config) = store.prepare(&path, context, name, &BTreeMap::new(), |_| {})?;
        store.commit(&work, config, &Quiet)
    }

    /// The outside directory holds exactly its canary, untouched.
    fn untouched(outside: &Path) {
        let names: Vec<_> = fs::read_dir(outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["secret.txt"], "nothing was written outside");
        assert_eq!(fs::read_to_string(outside.join("secret.txt")).unwrap(), "canary");
    }

    #[test]
    fn copy_patterns_match_as_docker_matches_them() {
        let m = |p: &str, n: &str| pattern_matches(&p.chars().collect::<Vec<_>>(), &n.chars().collect::<Vec<_>>());
        assert!(m("*.yaml", "a.yaml") && m("*.yaml", ".hidden.yaml") && !m("*.yaml", "a.yml"));
        assert!(m("x?.txt", "x1.txt") && !m("x?.txt", "x12.txt"));
        assert!(m("[ab].md", "a.md") && !m("[ab].md", "c.md") && m("[^ab].md", "c.md") && m("[a-c]*", "b-side"));
        assert!(m("[!ab].md", "!.md") && !m("[!ab].md", "c.md"), "`!` is no negation in Go's patterns");
        assert!(m("\\*", "*") && !m("\\*", "a") && !m("[", "["));
        let long: String = "a".repeat(200);
        assert!(!m(&format!("{}c", "*a".repeat(30)), &format!("{long}b")), "no backtracking blow-up");
        let (context, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for f in ["a.yaml", "b.yaml", "c.txt", "x1.txt", "sub/d.yaml"] {
            fs::create_dir_all(context.path().join(f).parent().unwrap()).unwrap();
            fs::write(context.path().join(f), f).unwrap();
        }
        let config = build(
            home.path(),
            context.path(),
            "p",
            "FROM scratch\nCOPY *.yaml x?.txt */*.yaml manifests\nCOPY c.* one.txt\n",
        )
        .unwrap();
        let manifest = fs::read_to_string(ImageStore::new(home.path()).dir_for("p").join("manifest")).unwrap();
        let paths: Vec<&str> = manifest.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(paths, ["manifests/a.yaml", "manifests/b.yaml", "manifests/d.yaml", "manifests/x1.txt", "one.txt"]);
        assert!(!config.digest.is_empty());
        let err = build(home.path(), context.path(), "q", "FROM scratch\nCOPY *.json etc/\n").unwrap_err();
        assert!(err.to_string().contains("COPY source `*.json` matches nothing in the build context"), "{err}");
        // Nothing outside the context is looked at, through `..`, an absolute path or a link.
        std::os::unix::fs::symlink("/etc", context.path().join("etclink")).unwrap();
        for (pattern, why) in [
            ("sub/../../*", "leaves its directory"),
            ("/etc/pass*", "leaves its directory"),
            ("etclink/pass*", "matches nothing"),
            ("*/pass*", "matches nothing"),
            ("[ab", "has a `[` without its `]`"),
        ] {
            let err =
                build(home.path(), context.path(), "r", &format!("FROM scratch\nCOPY {pattern} etc/\n")).unwrap_err();
            assert!(err.to_string().contains(why) && !err.to_string().contains("passwd"), "{pattern}: {err}");
        }
    }

    /// The digest names the configuration too: a CMD, ENV or LABEL alone makes another image, and the
    /// same Kubefile the same one.
    #[test]
    fn the_digest_names_the_configuration_as_well_as_the_files() {
        let (home, context) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let digest = |kubefile: &str| build(home.path(), context.path(), "d", kubefile).unwrap().digest;
        let a = digest("FROM scratch\nCMD echo a\n");
        assert_eq!(a, digest("FROM scratch\nCMD echo a\n"), "a rebuild of the same is the same image");
        let others = [
            digest("FROM scratch\nCMD echo b\n"),
            digest("FROM scratch\nCMD echo a\nENV A=1\n"),
            digest("FROM scratch\nCMD echo a\nLABEL a=1\n"),
            digest("FROM scratch\n"),
        ];
        let mut all = vec![a.clone()];
        all.extend(others.iter().cloned());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5, "every configuration is an image of its own: {all:?}");
        assert_ne!(a, format!("sha256:{:x}", Sha256::digest(b"")), "not the digest of no files");
        // Directly: the carried images count; the name and the base do not.
        let config = ImageConfig {
            format_version: IMAGE_FORMAT_VERSION.into(),
            name: "a:1".into(),
            digest: String::new(),
            base: None,
            cmds: vec![],
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            images: vec![],
        };
        let plain = image_digest("x 644 f", &config);
        let carrying = ImageConfig { images: vec!["docker.io/library/a:1".into()], ..config.clone() };
        assert_ne!(plain, image_digest("x 644 f", &carrying));
        let renamed = ImageConfig { name: "b:2".into(), base: Some("k:1".into()), ..config.clone() };
        assert_eq!(plain, image_digest("x 644 f", &renamed));
        assert_ne!(plain, image_digest("y 644 f", &config), "the files count");
        let err = build(home.path(), context.path(), "l", "FROM scratch\nLABEL sealer.io/base=fake\n").unwrap_err();
        assert!(err.to_string().contains("LABEL `sealer.io/base` is sealer's own"), "{err}");
    }

    #[test]
    fn nothing_is_read_through_a_directory_link_out_of_the_context() {
        let (home, context, outside) = escape_setup();
        let err =
            build(home.path(), context.path(), "r:1", "FROM scratch\nCOPY link_out/secret.txt etc/\n").unwrap_err();
        assert!(err.to_string().contains("goes through the link `link_out`"), "{err}");
        assert!(ImageStore::new(home.path()).get("r:1").is_err());
        untouched(outside.path());
        // A link itself is copied as the link it is, not as what it points at, with a trailing `/` too.
        build(home.path(), context.path(), "d:1", "FROM scratch\nCOPY link_out/ f\nCOPY link_out/ etc\n").unwrap();
        let image = ImageStore::new(home.path()).get("d:1").unwrap();
        assert!(fs::symlink_metadata(image.rootfs.join("f")).unwrap().file_type().is_symlink());
        assert!(!image.manifest.contains("secret.txt"), "{}", image.manifest);
        build(home.path(), context.path(), "l:1", "FROM scratch\nCOPY file_link etc/file_link\n").unwrap();
        let image = ImageStore::new(home.path()).get("l:1").unwrap();
        assert!(fs::symlink_metadata(image.rootfs.join("etc/file_link")).unwrap().file_type().is_symlink());
        assert!(!image.manifest.contains("canary"));
    }

    #[test]
    fn nothing_is_written_through_a_copied_link() {
        let (home, context, outside) = escape_setup();
        let err =
            build(home.path(), context.path(), "w:1", "FROM scratch\nCOPY link_out d\nCOPY a.txt d/\n").unwrap_err();
        assert!(err.to_string().contains("destination `d/` goes through the link `d`"), "{err}");
        untouched(outside.path());
        // Over a copied link to a file: the link is replaced by the file, its target keeps the canary.
        build(home.path(), context.path(), "f:1", "FROM scratch\nCOPY file_link f\nCOPY a.txt f\n").unwrap();
        let image = ImageStore::new(home.path()).get("f:1").unwrap();
        assert_eq!(fs::read_to_string(image.rootfs.join("f")).unwrap(), "mine");
        untouched(outside.path());
    }

    #[test]
    fn a_base_with_a_link_out_is_never_written_through() {
        let (home, context, outside) = escape_setup();
        // A base whose `etc` is a link out of the image (as a hostile pulled FROM image could carry).
        build(home.path(), context.path(), "base:1", "FROM scratch\nCOPY a.txt etc/\n").unwrap();
        let etc = ImageStore::new(home.path()).get("base:1").unwrap().rootfs.join("etc");
        fs::remove_dir_all(&etc).unwrap();
        std::os::unix::fs::symlink(outside.path(), &etc).unwrap();
        for (name, copy) in
            [("app:1", "COPY a.txt etc/"), ("app:2", "COPY a.txt etc/secret.txt"), ("app:3", "COPY a.txt etc")]
        {
            let err = build(home.path(), context.path(), name, &format!("FROM base:1\n{copy}\n")).unwrap_err();
            assert!(err.to_string().contains("goes through the link `etc`"), "{copy}: {err}");
        }
        // Outside the rootfs directories, a destination named without `/` replaces a link.
        build(home.path(), context.path(), "base:2", "FROM scratch\nCOPY link_out conf\n").unwrap();
        build(home.path(), context.path(), "app:4", "FROM base:2\nCOPY a.txt conf\n").unwrap();
        untouched(outside.path());
    }

    #[test]
    fn image_names_follow_the_oci_grammar_and_map_to_distinct_directories() {
        for good in [
            "kubernetes:v1.19.8",
            "reg.io/team/app:1",
            "reg.io/team_app:1",
            "localhost:5000/a/b",
            "a__b-c.d",
            "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "-t", "A:1", "a/../b", "a\nb", "a b", "a:", "a:-x", "reg.io/", "a//b", "a/.b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let store = ImageStore::new(Path::new("/s"));
        assert_ne!(store.dir_for("reg.io/team/app:1"), store.dir_for("reg.io/team_app:1"));
    }

    /// sealer's rootfs directories are directories whatever the COPY says; `/x` is the rootfs's `x`; RUN
    /// works in the rootfs.
    #[test]
    fn kubefile_copies_follow_the_rootfs_layout_and_run_writes_into_the_image() {
        let (home, context) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let c = context.path();
        for (path, text) in [
            ("shell.yaml", "a"),
            ("more.yaml", "b"),
            ("apollo/Chart.yaml", "c"),
            ("apollo/templates/d.yaml", "d"),
            ("helm", "e"),
            ("rootfs/bin/kubectl", "f"),
            ("registry_config.yaml", "g"),
            ("kubeadm.yml", "h"),
            ("app/x.yaml", "i"),
        ] {
            fs::create_dir_all(c.join(path).parent().unwrap()).unwrap();
            fs::write(c.join(path), text).unwrap();
        }
        let kubefile = "FROM scratch\nCOPY shell.yaml plugin\nCOPY more.yaml plugin\nCOPY apollo charts\n\
                        COPY helm /bin\nCOPY rootfs/bin bin\nCOPY registry_config.yaml etc/\nCOPY kubeadm.yml etc\n\
                        COPY app manifests/app\nCOPY app/. statics\nRUN echo made > recommended.yaml && test \"$PWD\" = \"$ROOTFS\"\n";
        build(home.path(), c, "layout:1", kubefile).unwrap();
        let image = ImageStore::new(home.path()).get("layout:1").unwrap();
        let files: Vec<&str> = image.manifest.lines().filter_map(manifest_path).collect();
        assert_eq!(
            files,
            [
                "bin/helm",
                "bin/kubectl",
                "charts/apollo/Chart.yaml",
                "charts/apollo/templates/d.yaml",
                "etc/kubeadm.yml",
                "etc/registry_config.yaml",
                "manifests/app/x.yaml",
                "plugin/more.yaml",
                "plugin/shell.yaml",
                "recommended.yaml",
                "statics/x.yaml",
            ]
        );
        assert!(!c.join("recommended.yaml").exists(), "RUN writes into the image, not the build context");
        // A destination out of the rootfs stays refused however it is spelled.
        let err = build(home.path(), c, "out:1", "FROM scratch\nCOPY helm /../x\n").unwrap_err();
        assert!(err.to_string().contains("leaves its directory"), "{err}");
    }

    #[test]
    fn abandoned_builds_are_never_listed_and_go_at_the_next_build() {
        let home = tempfile::tempdir().unwrap();
        let store = ImageStore::new(home.path());
        // A build that died after writing its image.json, before its rename.
        let dead = home.path().join("images/.work-999999999-0");
        fs::create_dir_all(&dead).unwrap();
        fs::write(
            dead.join("image.json"),
            serde_json::to_string(&ImageConfig {
                format_version: "1".into(),
                name: "ghost:1".into(),
                digest: "sha256:0".into(),
                base: None,
                cmds: vec![],
                env: BTreeMap::new(),
                labels: BTreeMap::new(),
                images: vec![],
            })
            .unwrap(),
        )
        .unwrap();
        assert!(store.list().unwrap().is_empty());
        let work = store.work_dir().unwrap();
        assert!(!dead.exists(), "cleaned at the next build");
        store.discard(&work);
    }
}

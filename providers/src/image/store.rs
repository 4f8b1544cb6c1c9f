//! The local image store (`$SEALER_HOME/images`, default `~/.sealer/images`): one directory per image
//! with its rootfs, a file manifest (`sha256 mode path` per file, which is what the rootfs digest is
//! computed over and what lets a copy send only changed files) and `image.json`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kubefile::{self, Instruction, KubefileError};

pub const IMAGE_FORMAT_VERSION: &str = "1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub format_version: String,
    pub name: String,
    /// `sha256:` over the file manifest.
    pub digest: String,
    pub base: Option<String>,
    pub cmds: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Container images carried in the image's registry (the lite build).
    #[serde(default)]
    pub images: Vec<String>,
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

pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store under `home` (`$SEALER_HOME`, else `~/.sealer`).
    pub fn new(home: &Path) -> Self {
        ImageStore { root: home.join("images") }
    }

    fn dir_for(&self, name: &str) -> PathBuf {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        self.root.join(safe)
    }

    pub fn get(&self, name: &str) -> Result<StoredImage, ImageError> {
        let dir = self.dir_for(name);
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
        for entry in entries.flatten() {
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
        let file = kubefile.display().to_string();
        let text = fs::read_to_string(kubefile).map_err(io(kubefile))?;
        let steps =
            kubefile::parse(&text, build_args).map_err(|errors| ImageError::Kubefile { file: file.clone(), errors })?;
        let work = self.work_dir()?;
        let rootfs = work.join("rootfs");
        match self.run_steps(&steps, &file, context, &rootfs, name, &mut say) {
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

    /// Where a blob being downloaded is kept until it is complete, so an interrupted pull resumes there.
    pub fn partial_blob(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let dir = self.root.join(".partial");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir.join(digest.replace(':', "-")))
    }

    /// A fresh directory for assembling an image before [`ImageStore::commit`].
    pub fn work_dir(&self) -> Result<PathBuf, ImageError> {
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
    pub fn commit(&self, work: &Path, config: ImageConfig) -> Result<ImageConfig, ImageError> {
        let rootfs = work.join("rootfs");
        let manifest = manifest(&rootfs).map_err(io(&rootfs))?;
        let config = ImageConfig { digest: format!("sha256:{:x}", Sha256::digest(manifest.as_bytes())), ..config };
        fs::write(work.join("manifest"), &manifest).map_err(io(work))?;
        let json = serde_json::to_string_pretty(&config)
            .map_err(|e| ImageError::Io { path: work.display().to_string(), message: e.to_string() })?;
        fs::write(work.join("image.json"), json).map_err(io(work))?;
        let dest = self.dir_for(&config.name);
        let old = self.root.join(format!(".old-{}-{}", std::process::id(), self.next_work()));
        if dest.exists() {
            fs::rename(&dest, &old).map_err(io(&dest))?;
        }
        fs::rename(work, &dest).map_err(io(&dest))?;
        let _ = fs::remove_dir_all(&old);
        Ok(config)
    }

    /// A second name for an image (a copy: images are small directories and names are independent).
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageConfig, ImageError> {
        let image = self.get(source)?;
        let work = self.work_dir()?;
        copy_tree(&image.rootfs, &work.join("rootfs")).map_err(io(&work))?;
        self.commit(&work, ImageConfig { name: target.to_string(), ..image.config })
    }

    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let dir = self.dir_for(name);
        if !dir.join("image.json").exists() {
            return Err(ImageError::NotFound(name.to_string()));
        }
        fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    fn run_steps(
        &self,
        steps: &[kubefile::Step],
        file: &str,
        context: &Path,
        rootfs: &Path,
        name: &str,
        say: &mut impl FnMut(&str),
    ) -> Result<ImageConfig, ImageError> {
        let mut config = ImageConfig {
            format_version: IMAGE_FORMAT_VERSION.into(),
            name: name.to_string(),
            digest: String::new(),
            base: None,
            cmds: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            images: Vec::new(),
        };
        for step in steps {
            let fail = |message: String| ImageError::Step { file: file.to_string(), line: step.line, message };
            match &step.instruction {
                Instruction::From(base) if base == "scratch" => {}
                Instruction::From(base) => {
                    let image = self.get(base).map_err(|e| fail(e.to_string()))?;
                    copy_tree(&image.rootfs, rootfs).map_err(|e| fail(format!("cannot copy the base image: {e}")))?;
                    config.base = Some(base.clone());
                    config.cmds = image.config.cmds;
                    config.env = image.config.env;
                    config.labels = image.config.labels;
                    config.images = image.config.images;
                }
                Instruction::Copy { sources, dest } => {
                    let target =
                        inside(rootfs, dest).ok_or_else(|| fail(format!("destination `{dest}` leaves the rootfs")))?;
                    for source in sources {
                        let from = inside(context, source).filter(|p| p.exists()).ok_or_else(|| {
                            fail(format!("COPY source `{source}` does not exist in the build context"))
                        })?;
                        say(&format!("COPY {source} {dest}"));
                        let to = if from.is_file() && (dest.ends_with('/') || target.is_dir()) {
                            target.join(from.file_name().unwrap_or_default())
                        } else {
                            target.clone()
                        };
                        copy_tree(&from, &to).map_err(|e| fail(format!("cannot copy `{source}`: {e}")))?;
                    }
                }
                Instruction::Run(command) => {
                    say(&format!("RUN {command}"));
                    let status = std::process::Command::new("sh")
                        .arg("-c")
                        .arg(command)
                        .current_dir(context)
                        .envs(&config.env)
                        .env("ROOTFS", rootfs)
                        .status()
                        .map_err(|e| fail(format!("cannot run: {e}")))?;
                    if !status.success() {
                        return Err(fail(format!("RUN failed with {status}")));
                    }
                }
                Instruction::Cmd(command) => config.cmds.push(command.clone()),
                Instruction::Env(k, v) => {
                    config.env.insert(k.clone(), v.clone());
                }
                Instruction::Label(k, v) => {
                    config.labels.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(config)
    }
}

/// `relative` under `base`, refusing absolute paths and `..`.
fn inside(base: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative.trim_start_matches("./"));
    if rel.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_))) {
        return None;
    }
    Some(base.join(rel))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        let _ = fs::remove_file(to);
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from, to)?;
    }
    Ok(())
}

/// `sha256 mode path` for every regular file under `root`, sorted; the rootfs digest is over this.
pub fn manifest(root: &Path) -> std::io::Result<String> {
    let mut lines = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let mut hasher = Sha256::new();
                let mut f = fs::File::open(&path)?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
                lines.push((rel, format!("{:x}", hasher.finalize()), meta.permissions().mode() & 0o7777));
            }
        }
    }
    lines.sort();
    Ok(lines.into_iter().map(|(path, sha, mode)| format!("{sha} {mode:o} {path}\n")).collect())
}

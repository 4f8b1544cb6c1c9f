//! The build steps of a Kubefile (`COPY`, `RUN`, the rest) on a rootfs: paths kept inside the build
//! context and the image, patterns matched as Docker matches them, and where each file came from.

use super::*;

impl ImageStore {
    pub(super) fn run_steps(
        &self,
        steps: &[kubefile::Step],
        file: &str,
        context: &Path,
        rootfs: &Path,
        name: &str,
        say: &mut impl FnMut(&str),
    ) -> Result<(ImageConfig, BTreeMap<String, String>), ImageError> {
        // The identity of the file every rootfs file was copied from, for the digest cache.
        let mut copied = BTreeMap::new();
        let copied = &mut copied;
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
                    record_sources(&image.rootfs, rootfs, rootfs, copied);
                    config.base = Some(base.clone());
                    config.cmds = image.config.cmds;
                    config.env = image.config.env;
                    config.labels = image.config.labels;
                    config.images = image.config.images;
                }
                Instruction::Copy { sources, dest } => copy_step(context, rootfs, (sources, dest), say, copied, &fail)?,
                Instruction::Run(command) => {
                    say(&format!("RUN {command}"));
                    // A command may change any file: none is trusted to be what it was copied from.
                    copied.clear();
                    run_step(rootfs, command, &config.env, &fail)?;
                }
                Instruction::Cmd(command) => config.cmds.push(command.clone()),
                Instruction::Env(set) => config.env.extend(set.iter().cloned()),
                Instruction::Label(set) => {
                    if let Some((key, _)) =
                        set.iter().find(|(k, _)| crate::image::oci::RESERVED_LABELS.contains(&k.as_str()))
                    {
                        return Err(fail(format!(
                            "LABEL `{key}` is sealer's own (it describes the image when pushed)"
                        )));
                    }
                    config.labels.extend(set.iter().cloned());
                }
            }
        }
        Ok((config, std::mem::take(copied)))
    }
}

/// `COPY SOURCES DEST`. Nothing is read through a link out of the context, nor written through one out
/// of the rootfs: a link is copied as a link, and replaced, never followed, when written. `d/` means into
/// the directory `d`: a link there is refused; `d` alone replaces a link. `/bin` is the rootfs's `bin`:
/// the image is the only root a Kubefile knows.
fn copy_step(
    context: &Path,
    rootfs: &Path,
    (sources, dest): (&[String], &str),
    say: &mut impl FnMut(&str),
    copied: &mut BTreeMap<String, String>,
    fail: &dyn Fn(String) -> ImageError,
) -> Result<(), ImageError> {
    let mut matched = Vec::new();
    for source in sources {
        let found = expand_pattern(context, source).map_err(|why| fail(format!("COPY source `{source}` {why}")))?;
        matched.extend(found);
    }
    let dest_rel = dest.trim_start_matches('/');
    let dest_rel = if dest_rel.is_empty() { "." } else { dest_rel };
    // Several sources, named or matched by a pattern, go into the destination directory.
    let into = dest.ends_with('/') || is_rootfs_dir(dest_rel) || matched.len() > 1;
    let target = beneath(rootfs, dest_rel, !into).map_err(|why| fail(format!("destination `{dest}` {why}")))?;
    let target_is_dir = fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
    for source in &matched {
        let from = beneath(context, source, true).map_err(|why| fail(format!("COPY source `{source}` {why}")))?;
        let Ok(meta) = fs::symlink_metadata(&from) else {
            return Err(fail(format!("COPY source `{source}` does not exist in the build context")));
        };
        say(&format!("COPY {source} {dest}"));
        // `src/.` is the contents of `src`, as in `cp -r src/. dest`.
        let contents = meta.is_dir() && (source == "." || source.ends_with("/."));
        let to = copy_target(&target, &from, meta.is_dir() && !contents, into || target_is_dir, dest_rel);
        copy_tree(&from, &to).map_err(|e| fail(format!("cannot copy `{source}`: {e}")))?;
        record_sources(&from, &to, rootfs, copied);
    }
    Ok(())
}

/// `RUN COMMAND`, in the rootfs, as sealer's users expect: what a RUN downloads or writes is in the image.
fn run_step(
    rootfs: &Path,
    command: &str,
    env: &BTreeMap<String, String>,
    fail: &dyn Fn(String) -> ImageError,
) -> Result<(), ImageError> {
    fs::create_dir_all(rootfs).map_err(|e| fail(format!("cannot make the rootfs: {e}")))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(rootfs)
        .envs(env)
        .env("ROOTFS", rootfs)
        .status()
        .map_err(|e| fail(format!("cannot run: {e}")))?;
    if !status.success() {
        return Err(fail(format!("RUN failed with {status}")));
    }
    Ok(())
}

/// The top-level directories of a sealer rootfs. They are always directories: `COPY file plugin` lands
/// inside `plugin/`, and `COPY apollo charts` keeps `charts/apollo/`.
pub const ROOTFS_DIRS: [&str; 9] =
    ["plugin", "plugins", "manifests", "charts", "etc", "bin", "scripts", "images", "statics"];

pub(super) fn is_rootfs_dir(dest: &str) -> bool {
    ROOTFS_DIRS.contains(&dest.trim_end_matches('/'))
}

/// Where one COPY source goes. Into a directory (`dest/`, an existing directory or a rootfs directory),
/// a file keeps its name. A whole directory (not `src/.`) keeps its name inside a rootfs directory, unless it has that same
/// name (`COPY rootfs/bin bin` fills `bin`, never `bin/bin`); elsewhere, as in Docker, its contents are
/// copied (`COPY rootfs .`).
pub(super) fn copy_target(target: &Path, from: &Path, whole_dir: bool, into: bool, dest: &str) -> PathBuf {
    let name = from.file_name().unwrap_or_default();
    let dest = dest.trim_end_matches('/');
    let is_dir = fs::symlink_metadata(from).is_ok_and(|m| m.is_dir());
    let keeps_name =
        if is_dir { whole_dir && is_rootfs_dir(dest) && name != Path::new(dest).as_os_str() } else { into };
    if keeps_name {
        target.join(name)
    } else {
        target.to_path_buf()
    }
}

/// Why a path a Kubefile names is refused, said after the path.
#[derive(Debug, thiserror::Error)]
pub(super) enum PathRefused {
    #[error("leaves its directory")]
    Leaves,
    #[error("goes through the link `{}`", .0.display())]
    Link(PathBuf),
    #[error("is not a valid pattern: `{0}` has a `[` without its `]`")]
    BadPattern(String),
    #[error("cannot be listed: {0}")]
    Unlisted(std::io::Error),
    #[error("matches nothing in the build context")]
    NoMatch,
}

/// `relative` under `base`, refusing absolute paths and `..`.
/// The path is rebuilt from its components: a trailing `/` (`link_out/`) would make the system follow a
/// link that the component walk of [`beneath`] allowed as the last one, and copy what it points at.
pub(super) fn inside(base: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative.trim_start_matches("./"));
    if rel.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_))) {
        return None;
    }
    Some(base.join(rel.components().collect::<PathBuf>()))
}

/// `relative` under `base`, refusing absolute paths, `..`, and any component that is a symbolic link (the
/// last one too unless `last_may_link`: a link named as a COPY source is copied as the link it is).
pub(super) fn beneath(base: &Path, relative: &str, last_may_link: bool) -> Result<PathBuf, PathRefused> {
    let path = inside(base, relative).ok_or(PathRefused::Leaves)?;
    let rel = path.strip_prefix(base).map_err(|_| PathRefused::Leaves)?.to_path_buf();
    let count = rel.components().count();
    let mut walked = base.to_path_buf();
    for (i, component) in rel.components().enumerate() {
        walked.push(component);
        match fs::symlink_metadata(&walked) {
            Ok(m) if m.file_type().is_symlink() && !(last_may_link && i + 1 == count) => {
                return Err(PathRefused::Link(walked.strip_prefix(base).unwrap_or(&walked).to_path_buf()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(path)
}

/// Whether a COPY source is a pattern (`*`, `?`, `[...]`), as Docker's (Go's `filepath.Match`) are.
pub(super) fn is_pattern(source: &str) -> bool {
    source.contains(['*', '?', '['])
}

/// The context paths a COPY source names: itself, or for a pattern every path it matches (sorted), each
/// component matched against the entries of a real directory of the context (links are not walked into).
/// A pattern that matches nothing is an error, as in Docker.
pub(super) fn expand_pattern(context: &Path, source: &str) -> Result<Vec<String>, PathRefused> {
    if !is_pattern(source) {
        return Ok(vec![source.to_string()]);
    }
    // A pattern stays in the context: no `..`, no absolute path, no link walked through.
    if source.starts_with('/') || source.split('/').any(|c| c == "..") {
        return Err(PathRefused::Leaves);
    }
    let components: Vec<&str> = source.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let mut found = vec![String::new()];
    for (index, component) in components.iter().enumerate() {
        let last = index + 1 == components.len();
        let mut next = Vec::new();
        for dir in &found {
            let join = |name: &str| if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
            let path = if dir.is_empty() { context.to_path_buf() } else { context.join(dir) };
            // Only a real directory of the context is looked into.
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            if !is_pattern(component) {
                if last || fs::symlink_metadata(path.join(component)).is_ok_and(|m| m.is_dir()) {
                    next.push(join(component));
                }
                continue;
            }
            if glob_tokens(&component.chars().collect::<Vec<_>>()).is_none() {
                return Err(PathRefused::BadPattern(component.to_string()));
            }
            let pattern: Vec<char> = component.chars().collect();
            for entry in fs::read_dir(&path).map_err(PathRefused::Unlisted)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if pattern_matches(&pattern, &name.chars().collect::<Vec<_>>()) {
                    next.push(join(&name));
                }
            }
        }
        found = next;
    }
    let mut found: Vec<String> =
        found.into_iter().filter(|rel| !rel.is_empty() && fs::symlink_metadata(context.join(rel)).is_ok()).collect();
    found.sort();
    if found.is_empty() {
        return Err(PathRefused::NoMatch);
    }
    Ok(found)
}

/// One element of a COPY pattern component.
pub(super) enum Glob {
    /// `*`: any run of characters.
    Any,
    /// `?`: one character.
    One,
    /// `[abc]`, `[a-z]`, negated by a leading `!` or `^`.
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Char(char),
}

/// The elements of a pattern component; `None` for a `[` without its `]` (Go's ErrBadPattern).
pub(super) fn glob_tokens(pattern: &[char]) -> Option<Vec<Glob>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '*' => out.push(Glob::Any),
            '?' => out.push(Glob::One),
            '[' => {
                if let Some(close) = pattern.iter().skip(i + 2).position(|&c| c == ']').map(|p| p + i + 2) {
                    let mut class = &pattern[i + 1..close];
                    // Go's `filepath.Match` (Docker's): `^` negates; `!` is a character like any other.
                    let negated = class.first() == Some(&'^');
                    if negated {
                        class = &class[1..];
                    }
                    let mut ranges = Vec::new();
                    let mut j = 0;
                    while j < class.len() {
                        if j + 2 < class.len() && class[j + 1] == '-' {
                            ranges.push((class[j], class[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((class[j], class[j]));
                            j += 1;
                        }
                    }
                    out.push(Glob::Class { ranges, negated });
                    i = close;
                } else {
                    return None;
                }
            }
            '\\' if i + 1 < pattern.len() => {
                out.push(Glob::Char(pattern[i + 1]));
                i += 1;
            }
            c => out.push(Glob::Char(c)),
        }
        i += 1;
    }
    Some(out)
}

/// `filepath.Match` for one path component, in time proportional to pattern × name (no backtracking).
pub(super) fn pattern_matches(pattern: &[char], name: &[char]) -> bool {
    let Some(tokens) = glob_tokens(pattern) else { return false };
    // matched[j]: the tokens so far match the first j characters of the name.
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    for token in &tokens {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            match token {
                Glob::Any => next[j] = matched[j] || (j > 0 && next[j - 1]),
                _ if j == 0 => {}
                Glob::One => next[j] = matched[j - 1],
                Glob::Class { ranges, negated } => {
                    let c = name[j - 1];
                    next[j] = matched[j - 1] && (ranges.iter().any(|(a, b)| *a <= c && c <= *b) != *negated);
                }
                Glob::Char(c) => next[j] = matched[j - 1] && name[j - 1] == *c,
            }
        }
        matched = next;
    }
    matched[name.len()]
}

pub(super) fn write_sources(work: &Path, sources: &BTreeMap<String, String>) -> Result<(), ImageError> {
    let text: String = sources.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    fs::write(work.join(SOURCES_FILE), text).map_err(io(work))
}

pub(super) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    // A link where the copy goes is replaced, never written through.
    if fs::symlink_metadata(to).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(to)?;
    }
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        let _ = fs::remove_file(to);
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from, to)?;
        // The copy keeps the source's modification time, so the digest cache knows it unchanged.
        fs::File::open(to)?.set_modified(meta.modified()?)?;
    }
    Ok(())
}

/// What identifies the content of a file without reading it, as far as `touch` cannot forge it: device,
/// inode, size, mode, and modification and change times to the nanosecond (`touch -d` sets the former,
/// never the latter). `None` for a file changed within the last 2 seconds, which a same-second write
/// could change again unseen (git's racy-timestamp rule): it is hashed every time until it is older.
pub(super) fn identity(meta: &fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let newest = meta.mtime().max(meta.ctime());
    if u64::try_from(newest).ok()? + 2 > now {
        return None;
    }
    Some(format!(
        "{}:{}:{}:{:o}:{}.{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mode() & 0o7777,
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

/// The identity of every regular file under `from`, as the rootfs path its copy under `to` gets.
pub(super) fn record_sources(from: &Path, to: &Path, rootfs: &Path, sources: &mut BTreeMap<String, String>) {
    let Ok(meta) = fs::symlink_metadata(from) else { return };
    if meta.is_dir() {
        for entry in fs::read_dir(from).into_iter().flatten().flatten() {
            record_sources(&entry.path(), &to.join(entry.file_name()), rootfs, sources);
        }
    } else if meta.is_file() {
        let rel = to.strip_prefix(rootfs).unwrap_or(to).display().to_string();
        match identity(&meta) {
            Some(id) => sources.insert(rel, id),
            None => sources.remove(&rel),
        };
    }
}

/// Where a build records the sources of its copies, for the commit.
pub(super) const SOURCES_FILE: &str = "sources";

//! `image.IP`: the cluster image's rootfs on the host, by digest. Only the files whose content or mode
//! differs from what the host recorded at its last copy travel; nothing at all when the digest matches.
//! A new digest (a rebuilt image, or another image) is an in-place update: `/etc/hosts` and the files
//! other kinds wrote stay.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use sealer_engine::kubeadm::{is_registry_name, API_SERVER_DOMAIN, REGISTRY_DOMAIN};
use sealer_engine::schema::{self, Known};

use super::plugin::SHELL;
use super::remote::Result;
use super::{cluster_dir, Cx, KindProvider};
use crate::error::ProviderError;
use crate::image::store::{bytes_of, changed_paths, removed_paths, StoredImage};
use crate::shell::quote;

pub struct Image;

/// The rendered templates of `image`: rootfs path → text.
fn templates(image: &schema::Image) -> BTreeMap<String, String> {
    image.templates.clone().unwrap_or_default()
}

impl Image {
    /// Writes the rendered templates that differ from what `before` recorded (all of them after a copy).
    async fn render(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::Image,
        after: &schema::Image,
        copied: bool,
    ) -> Result<()> {
        let old = templates(before);
        for (path, text) in templates(after) {
            if copied || old.get(&path) != Some(&text) {
                cx.upload(ip, &format!("{}/{path}", cx.rootfs()), text.as_bytes(), 0o644).await?;
            }
        }
        Ok(())
    }
}

impl KindProvider for Image {
    type Schema = schema::Image;

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Image) -> Result<schema::Image> {
        self.update(cx, ip, &schema::Image::default(), after).await
    }

    async fn update(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::Image,
        mut after: schema::Image,
    ) -> Result<schema::Image> {
        let image = cx.image()?;
        let dir = cluster_dir(&cx.ctx.cluster);
        let qdir = quote(&dir);
        let held = cx.output(ip, &held_command(&dir, &image.config.digest)).await?;
        let (on_host, old) = held.split_once('\n').unwrap_or((held.as_str(), ""));
        if on_host != image.config.digest {
            let changed = changed_paths(old, &image.manifest);
            let removed = removed_paths(old, &image.manifest);
            if cx.relay.enabled(cx.ctx.hosts.len(), bytes_of(&image.rootfs, &changed)) {
                let remove = remove_command(&dir, &removed).map(|rm| format!("{rm}; ")).unwrap_or_default();
                let archive = cx.relay.archive(&image.rootfs, &changed, &image.manifest).await?;
                let digest = quote(&image.config.digest);
                let rootfs = format!("{dir}/rootfs");
                cx.relay
                    .deliver(cx, ip, "image", &archive, (&rootfs, false), |manifest| {
                        format!("cd {qdir}; {remove}cp {} manifest; printf %s {digest} > digest", quote(manifest))
                    })
                    .await?;
            } else {
                let archive = direct_archive(image, &changed)?;
                cx.relay.note_direct("image", ip);
                cx.relay.planned("image", ip, archive.len() as u64);
                cx.run(ip, &direct_copy(&dir, &removed, &image.config.digest), &archive).await?;
                cx.relay.delivered("image", ip, archive.len() as u64, None);
            }
        }
        // A copy may have brought the template files back: every rendering is written again then.
        self.render(cx, ip, before, &after, on_host != image.config.digest).await?;
        // A new image may bring a new registry login or port: the mirrors are written again with it.
        if on_host != image.config.digest
            || mirrors(before) != mirrors(&after)
            || before.mirror_endpoint != after.mirror_endpoint
        {
            self.mirror(cx, ip, before, &after).await?;
        }
        // The image's own start-up (its container runtime), after its files and the registry mirrors
        // are in place and before kubeadm runs; the script is idempotent, so every update runs it.
        cx.run(ip, &image_script(&dir, "init.sh"), b"").await?;
        after.digest = Known::Is(image.config.digest.clone());
        Ok(after)
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::Image) -> Result<()> {
        cx.run(ip, &image_script(&cluster_dir(&cx.ctx.cluster), "clean.sh"), b"").await?;
        if let Some(script) = unmirror_script(&mirrors(before), &[]) {
            cx.run(ip, &script, b"").await?;
        }
        let dir = quote(&cluster_dir(&cx.ctx.cluster));
        let edits: Vec<String> = [REGISTRY_DOMAIN, API_SERVER_DOMAIN]
            .iter()
            .map(|n| format!("-e {}", quote(&format!("/ {}$/d", n.replace('.', "\\.")))))
            .collect();
        // `/var/lib/sealer` goes too once its last cluster left, so the host is as it was found.
        let command = format!(
            "rm -rf {dir} && sed -i {} /etc/hosts && (rmdir /var/lib/sealer 2>/dev/null; true)",
            edits.join(" ")
        );
        cx.run(ip, &command, b"").await.map(|_| ())
    }
}

/// One command: the digest the host holds in `dir` (read by the shell itself), then, when it holds
/// another image's, the manifest of what it holds. An empty digest (a copy cut short, or one that failed)
/// is no image at all: its manifest, which may be cut short too, is not read, and everything is copied.
fn held_command(dir: &str, digest: &str) -> String {
    let qdir = quote(dir);
    format!(
        "d=; if [ -f {qdir}/digest ]; then IFS= read -r d < {qdir}/digest || true; fi; printf '%s\\n' \"$d\"; \
         if [ -n \"$d\" ] && [ \"$d\" != {} ] && [ -f {qdir}/manifest ]; then cat {qdir}/manifest; fi",
        quote(digest)
    )
}

/// The one command that copies a small image's files to a host directly; its stdin is
/// [`direct_archive`]. It first empties the digest and the manifest, so a copy cut short anywhere leaves a
/// host that holds no image, whose next apply copies everything, even the image it held before (files of
/// the earlier image that the new one has not may stay). The archive ends with `digest.copied`, which the
/// command empties first: the digest is written only when `tar` succeeded (it goes on past a file it
/// could not write, and exits 2 at the end) and that last entry arrived (a stream cut at an entry's end
/// ends `tar` with 0). A list of `&&` that keeps its shell as it is (no `cd`, `set -e` or `umask`): the
/// command needs no subshell of its own around it, one process fewer on every host.
fn direct_copy(dir: &str, removed: &[&str], digest: &str) -> String {
    let file = |name: &str| quote(&format!("{dir}/{name}"));
    let remove = remove_command(dir, removed).map(|rm| format!("{rm} && ")).unwrap_or_default();
    format!(
        "mkdir -p {} && : > {digest_file} && : > {} && : > {copied} && {remove}tar -C {} -xf - && [ -s {copied} ] && \
         printf %s {} > {digest_file}",
        file("rootfs"),
        file("manifest"),
        quote(dir),
        quote(digest),
        digest_file = file("digest"),
        copied = file(COPIED),
    )
}

/// Removes the rootfs files of `dir` that the image no longer has (`removed`, from [`removed_paths`]).
fn remove_command(dir: &str, removed: &[&str]) -> Option<String> {
    let files: Vec<String> = removed.iter().map(|p| quote(&format!("{dir}/rootfs/{p}"))).collect();
    (!files.is_empty()).then(|| format!("rm -f {}", files.join(" ")))
}

/// The last entry of a direct copy's archive (see [`direct_copy`]).
const COPIED: &str = "digest.copied";

/// What [`direct_copy`] unpacks in the cluster's directory: the changed files under `rootfs/`, then the
/// manifest, then `digest.copied` holding the digest (0644, root's).
fn direct_archive(image: &StoredImage, changed: &[&str]) -> Result<Vec<u8>> {
    let local = archive_error(&image.rootfs);
    let mut builder = ::tar::Builder::new(Vec::new());
    append_files(&mut builder, &image.rootfs, changed, "rootfs/")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (name, text) in [("manifest", image.manifest.as_str()), (COPIED, image.config.digest.as_str())] {
        let mut header = ::tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(now);
        header.set_entry_type(::tar::EntryType::Regular);
        builder.append_data(&mut header, name, text.as_bytes()).map_err(local)?;
    }
    builder.into_inner().map_err(local)
}

/// sealer's image convention: `rootfs/scripts/init.sh` starts what the image carries (its container
/// runtime) on every host once the files are there, and `scripts/clean.sh` stops it and removes what it
/// made before they go; each run from its directory, in bash where the host has it. An image without the
/// script runs nothing.
fn image_script(dir: &str, name: &str) -> String {
    let scripts = quote(&format!("{dir}/rootfs/scripts"));
    format!("if [ -f {scripts}/{name} ]; then cd {scripts} && {SHELL} {name}; fi")
}

/// Where containerd looks for a registry's mirrors.
const CERTS_D: &str = "/etc/containerd/certs.d";

/// The registries `image` mirrors (a name that is none, from a state edited by hand, never reaches a path).
fn mirrors(image: &schema::Image) -> Vec<String> {
    image.mirrors.iter().filter(|r| is_registry_name(r)).cloned().collect()
}

/// containerd's `hosts.toml` for `registry`: pulled from the cluster's registry, never the internet,
/// with the registry's login when it has one.
fn hosts_toml(registry: &str, port: u16, authorization: Option<&str>) -> String {
    let server = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
    let mut toml = format!(
        "# Written by sealer: images named {registry}/... are served by the cluster's own registry.\n\
         server = \"https://{server}\"\n\n[host.\"http://{REGISTRY_DOMAIN}:{port}\"]\n  \
         capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"
    );
    if let Some(authorization) = authorization {
        toml.push_str(&format!(
            "  [host.\"http://{REGISTRY_DOMAIN}:{port}\".header]\n    Authorization = \"{authorization}\"\n"
        ));
    }
    toml
}

/// The script that writes each registry's `hosts.toml` under `certs_d` (see [`Image::mirror`]), and its
/// stdin: the files' text, one after the other.
fn mirror_script(certs_d: &str, registries: &[String], port: u16, authorization: Option<&str>) -> (String, String) {
    let (mut script, mut stdin) = (String::new(), String::new());
    if registries.is_empty() {
        return (script, stdin);
    }
    let dirs: Vec<String> = registries.iter().map(|r| quote(&format!("{certs_d}/{r}"))).collect();
    let files: Vec<String> = registries.iter().map(|r| quote(&format!("{certs_d}/{r}/hosts.toml"))).collect();
    let lacking: Vec<String> = dirs.iter().map(|d| format!("[ -d {d} ]")).collect();
    let had: Vec<String> = files.iter().map(|f| format!("[ -e {f} ] || [ -L {f} ]")).collect();
    script.push_str(&format!(
        "{} || mkdir -p {}; if {}; then rm -f {}; fi; umask {}; ",
        lacking.join(" && "),
        dirs.join(" "),
        had.join(" || "),
        files.join(" "),
        if authorization.is_some() { "077" } else { "022" }
    ));
    // bash reads each file's bytes itself; a host whose shell is another (no bash: commands run in the
    // login shell) has `dd bs=1`, which reads no further than asked from a pipe (busybox's `head -c` does).
    let (mut read, mut copy) = (String::new(), String::new());
    for (registry, file) in registries.iter().zip(&files) {
        let toml = hosts_toml(registry, port, authorization);
        read.push_str(&format!("LC_ALL=C IFS= read -r -N {} t; printf %s \"$t\" > {file}; ", toml.len()));
        copy.push_str(&format!("dd bs=1 count={} 2>/dev/null > {file}; ", toml.len()));
        stdin.push_str(&toml);
    }
    script.push_str(&format!("if [ -n \"${{BASH_VERSION-}}\" ]; then {read}else {copy}fi"));
    (script, stdin)
}

/// Removes the mirror configuration of the registries of `was` that `now` lacks (all of them on delete).
fn unmirror_script(was: &[String], now: &[String]) -> Option<String> {
    let gone: Vec<String> = was.iter().filter(|r| !now.contains(r)).map(|r| quote(&format!("{CERTS_D}/{r}"))).collect();
    (!gone.is_empty())
        .then(|| format!("rm -rf {}; rmdir {CERTS_D} /etc/containerd 2>/dev/null || true", gone.join(" ")))
}

impl Image {
    /// Writes every registry's `hosts.toml` and removes those of registries no longer mirrored, in one
    /// command (a host has a dozen of them, and a command or a process per file costs every host). The
    /// files' text comes on stdin, never on a command line (it may hold the registry's login); the shell
    /// reads each with `read -N` and writes it with `printf`, so a host with bash starts no process for the
    /// files but `mkdir` for directories it lacks and `rm` for files it had (a login's stdin, binary, adds
    /// the transport's `head` and `cat`): a file is always made anew, its mode the umask's, 0600 when it
    /// holds the login (never readable by others, not even while it is written), else 0644.
    async fn mirror(&self, cx: &Cx, ip: IpAddr, before: &schema::Image, after: &schema::Image) -> Result<()> {
        let settings = super::registry::settings(cx)?;
        let authorization = settings.authorization();
        let mut script = String::from("set -e; ");
        if let Some(unmirror) = unmirror_script(&mirrors(before), &mirrors(after)) {
            script.push_str(&format!("{{ {unmirror}; }}; "));
        }
        let (write, stdin) = mirror_script(CERTS_D, &mirrors(after), settings.port, authorization.as_deref());
        script.push_str(&write);
        if script == "set -e; " {
            return Ok(());
        }
        cx.run(ip, script.trim_end(), stdin.as_bytes()).await.map(|_| ())
    }
}

/// `head`, then the listed files of `root` as a tar stream, as `tar -C root -cf - FILES` makes it (modes,
/// times and owners kept; links stored as links, never followed; a listed directory with what it holds),
/// by the tar crate: the workstation needs no `tar` of its own. After `head` (a relayed copy's manifest),
/// so that the two go out as one buffer, the archive never copied.
pub(super) fn tar(head: Vec<u8>, root: &Path, files: &[&str]) -> Result<Vec<u8>> {
    let mut builder = ::tar::Builder::new(head);
    append_files(&mut builder, root, files, "")?;
    builder.into_inner().map_err(archive_error(root))
}

/// The error of archiving `root`'s files on the workstation.
fn archive_error(root: &Path) -> impl Fn(std::io::Error) -> ProviderError + Copy + '_ {
    move |source| ProviderError::Local { what: "archive", path: root.display().to_string(), source }
}

/// Appends the listed files of `root` to `builder` as [`tar`] stores them, each name after `prefix`.
fn append_files(builder: &mut ::tar::Builder<Vec<u8>>, root: &Path, files: &[&str], prefix: &str) -> Result<()> {
    let local = archive_error(root);
    builder.follow_symlinks(false);
    for file in files {
        let (path, name) = (root.join(file), format!("{prefix}{file}"));
        let meta = std::fs::symlink_metadata(&path).map_err(local)?;
        if meta.is_dir() {
            builder.append_dir_all(&name, &path).map_err(local)?;
        } else {
            builder.append_path_with_name(&path, &name).map_err(local)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;
    use crate::cluster::ClusterProvider;
    use crate::image::store::{removed_paths, ImageConfig, StoredImage};

    fn image(dir: &std::path::Path, manifest: &str) -> StoredImage {
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/a.yml"), "a").unwrap();
        std::fs::write(dir.join("etc/b.yml"), "b").unwrap();
        StoredImage {
            config: ImageConfig {
                format_version: "1".into(),
                name: "img:1".into(),
                digest: "sha256:new".into(),
                base: None,
                cmds: vec![],
                env: BTreeMap::new(),
                labels: BTreeMap::new(),
                images: vec![],
            },
            rootfs: dir.to_path_buf(),
            manifest: manifest.into(),
        }
    }

    /// The image's init script, run at the end of every create and update.
    const INIT: &str =
        "if [ -f /var/lib/sealer/c/rootfs/scripts/init.sh ]; then cd /var/lib/sealer/c/rootfs/scripts && \
                        \"$(command -v bash || echo sh)\" init.sh; fi";

    #[tokio::test]
    async fn only_changed_files_travel_and_removed_ones_go() {
        let root = tempfile::tempdir().unwrap();
        let img = image(root.path(), "aaa 644 etc/a.yml\nbbb2 644 etc/b.yml");
        let remote = Arc::new(
            Scripted::default().on("/digest", "sha256:old\naaa 644 etc/a.yml\nbbb 644 etc/b.yml\nccc 644 etc/gone.yml"),
        );
        let logs = tempfile::tempdir().unwrap();
        let p = ClusterProvider::new(context(Some(img), logs.path()), remote.clone());
        let before = attrs([("image", Value::text("img:1")), ("digest", Value::text("sha256:old"))]);
        let after = attrs([("image", Value::text("img:1")), ("digest", Value::text("sha256:new"))]);
        let got = apply(&p, change(Kind::Image, "10.0.0.2", M1, Action::Update, Some(before), Some(after)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["digest"], Value::text("sha256:new"));
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 3, "one command reads the digest and the manifest, one copies: {commands:?}");
        assert_eq!(
            commands[1],
            "mkdir -p /var/lib/sealer/c/rootfs && : > /var/lib/sealer/c/digest && : > /var/lib/sealer/c/manifest && \
             : > /var/lib/sealer/c/digest.copied && rm -f /var/lib/sealer/c/rootfs/etc/gone.yml && \
             tar -C /var/lib/sealer/c -xf - && [ -s /var/lib/sealer/c/digest.copied ] && \
             printf %s sha256:new > /var/lib/sealer/c/digest"
        );
        assert!(crate::shell::leaves_shell_as_is(&commands[1]), "no subshell of its own");
        assert_eq!(commands[2], INIT);
        // The changed file, then the manifest, then the entry that says the archive arrived whole.
        let stdin = remote.stdin_of(M1, "tar -C").unwrap().into_bytes(); // headers and texts: ASCII
        let mut archive = ::tar::Archive::new(stdin.as_slice());
        let entries: Vec<(String, String)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                (e.path().unwrap().display().to_string(), text)
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["rootfs/etc/b.yml", "manifest", "digest.copied"]);
        assert_eq!(entries[1].1, "aaa 644 etc/a.yml\nbbb2 644 etc/b.yml");
        assert_eq!(entries[2].1, "sha256:new");
        assert!(!commands.iter().any(|c| c.contains("/etc/hosts")), "an update keeps /etc/hosts");
    }

    /// The copy, run by a real bash and GNU tar with its stream cut at every 97th byte, whole, and whole
    /// over a file it cannot write (a directory there): the digest is the image's only when every file and
    /// the manifest landed and `tar` succeeded, else empty, and then the next apply's read of the host
    /// takes no manifest (one cut short) from it.
    #[test]
    fn a_real_tar_copy_writes_the_digest_only_when_whole() {
        let src = tempfile::tempdir().unwrap();
        let manifest: String = (0..60).map(|i| format!("{i:064} 644 etc/file-{i}.yml\n")).collect();
        let img = image(src.path(), &manifest);
        let archive = super::direct_archive(&img, &["etc/a.yml", "etc/b.yml"]).unwrap();
        let bash = |script: &str, stdin: &[u8]| {
            let mut child = std::process::Command::new("bash")
                .args(["--norc", "-c", script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // A cut stream may find tar gone: what it did not take is the cut.
            let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin);
            String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
        };
        let cuts = (0..archive.len()).step_by(97).map(|n| (n, false));
        for (n, blocked) in cuts.chain([(archive.len(), false), (archive.len(), true)]) {
            let host = tempfile::tempdir().unwrap();
            let dir = host.path().join("c").display().to_string();
            std::fs::create_dir_all(format!("{dir}/rootfs/etc")).unwrap();
            std::fs::write(format!("{dir}/digest"), "sha256:old").unwrap();
            if blocked {
                std::fs::create_dir_all(format!("{dir}/rootfs/etc/a.yml/x")).unwrap();
            }
            bash(&super::direct_copy(&dir, &[], "sha256:new"), &archive[..n]);
            let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_default();
            let digest = read("digest");
            if n == archive.len() && !blocked {
                assert_eq!(digest, "sha256:new");
            }
            if digest.is_empty() {
                let held = bash(&super::held_command(&dir, "sha256:other"), b"");
                assert_eq!(held, "\n", "cut at {n} of {}: no manifest from a host holding no image", archive.len());
            } else {
                assert_eq!(digest, "sha256:new", "cut at {n}");
                assert_eq!(
                    (read("rootfs/etc/a.yml"), read("rootfs/etc/b.yml")),
                    ("a".into(), "b".into()),
                    "cut at {n}"
                );
                assert_eq!(read("manifest"), manifest, "cut at {n}");
            }
            assert!(!blocked || digest.is_empty(), "tar failed on a file, and the digest says the image is there");
        }
    }

    /// The manifest a host holds names what a copy removes there: never a path out of the rootfs.
    #[test]
    fn a_hosts_manifest_removes_nothing_out_of_the_rootfs() {
        let held = "h 644 ../../etc/passwd\nh 644 /etc/shadow\nh 644 etc/a/../../../x\nh 644 etc/gone.yml\nh 644 etc/b";
        assert_eq!(removed_paths(held, "h 644 etc/b"), ["etc/gone.yml"]);
    }

    /// A provider whose host already holds the image's digest, over a scripted remote; the temporary
    /// directories live as long as the returned guard.
    fn holding_the_new_digest() -> (ClusterProvider, Arc<Scripted>, [tempfile::TempDir; 2]) {
        let (root, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let remote = Arc::new(Scripted::default().on("/digest", "sha256:new"));
        let p = ClusterProvider::new(context(Some(image(root.path(), "")), logs.path()), remote.clone());
        (p, remote, [root, logs])
    }

    #[tokio::test]
    async fn the_same_digest_sends_nothing() {
        let (p, remote, _dirs) = holding_the_new_digest();
        let after = attrs([("image", Value::text("img:1"))]);
        apply(&p, change(Kind::Image, "10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap();
        let commands = remote.commands(M1);
        assert!(commands.len() == 2 && commands[0].contains("/var/lib/sealer/c/digest"), "{commands:?}");
        assert_eq!(commands[1], INIT, "the image's init script runs again (it is idempotent)");
    }

    #[tokio::test]
    async fn delete_removes_the_cluster_dir_and_its_hosts_entries() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::Image, "10.0.0.2", M1, Action::Delete, Some(attrs([])), None)).await.unwrap();
        assert_eq!(
            remote.commands(M1),
            [
                "if [ -f /var/lib/sealer/c/rootfs/scripts/clean.sh ]; then cd /var/lib/sealer/c/rootfs/scripts && \
                 \"$(command -v bash || echo sh)\" clean.sh; fi",
                "rm -rf /var/lib/sealer/c && sed -i -e '/ sea\\.hub$/d' -e '/ apiserver\\.cluster\\.local$/d' \
              /etc/hosts && (rmdir /var/lib/sealer 2>/dev/null; true)"
            ]
        );
    }

    #[tokio::test]
    async fn no_image_in_the_store_is_a_clear_error() {
        let (p, _logs) = provider(Arc::new(Scripted::default()));
        let err = failure(&p, change(Kind::Image, "10.0.0.2", M1, Action::Create, None, Some(attrs([])))).await;
        assert_eq!(err, "the cluster image is not in the local store");
    }

    #[tokio::test]
    async fn an_env_change_rewrites_exactly_the_templates_it_changes() {
        let (p, remote, _dirs) = holding_the_new_digest();
        let rendered = |docker: &str| {
            Value::Map(BTreeMap::from([
                ("etc/daemon.json".to_string(), format!("{{\"data-root\": \"{docker}\"}}")),
                ("etc/static.conf".to_string(), "same".to_string()),
            ]))
        };
        let before = attrs([("digest", Value::text("sha256:new")), ("templates", rendered("/var/lib/docker"))]);
        let after = attrs([("digest", Value::text("sha256:new")), ("templates", rendered("/data/docker"))]);
        apply(&p, change(Kind::Image, "10.0.0.2", M1, Action::Update, Some(before), Some(after))).await.unwrap();
        assert_eq!(remote.commands(M1)[1..], ["upload /var/lib/sealer/c/rootfs/etc/daemon.json 644", INIT]);
        let written = remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/daemon.json").unwrap();
        assert_eq!(written, "{\"data-root\": \"/data/docker\"}");
    }

    /// Every registry's mirror file in one command, the files on stdin, none on the command line.
    #[tokio::test]
    async fn mirrors_are_written_in_one_command() {
        let (p, remote, _dirs) = holding_the_new_digest();
        let listed = |names: &[&str]| Value::List(names.iter().map(|n| n.to_string()).collect());
        let before = attrs([("digest", Value::text("sha256:new")), ("mirrors", listed(&["ghcr.io"]))]);
        let after = attrs([("digest", Value::text("sha256:new")), ("mirrors", listed(&["docker.io", "quay.io"]))]);
        apply(&p, change(Kind::Image, "10.0.0.2", M1, Action::Update, Some(before), Some(after))).await.unwrap();
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 3, "{commands:?}");
        let write = &commands[1];
        assert!(write.contains("rm -rf /etc/containerd/certs.d/ghcr.io"), "{write}");
        let stdin = remote.stdin_of(M1, "certs.d/docker.io").unwrap();
        assert!(
            stdin.contains("server = \"https://registry-1.docker.io\"")
                && stdin.contains("server = \"https://quay.io\"")
        );
        assert!(!write.contains("server ="), "contents travel on stdin");
    }

    /// The mirror command, run by a real bash, dash and busybox sh in a directory of its own (stdin a pipe,
    /// as on a host): each file made anew with the umask's mode (a link or a 0644 file where a login goes is replaced), only the stdin's text in it.
    #[test]
    fn a_real_shell_writes_the_mirror_files_anew() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let certs = format!("{root}/certs.d");
        std::fs::create_dir_all(format!("{certs}/docker.io")).unwrap();
        std::fs::create_dir_all(format!("{certs}/quay.io")).unwrap();
        std::fs::write(format!("{certs}/docker.io/hosts.toml"), "old").unwrap();
        std::fs::write(format!("{certs}/docker.io/ca.crt"), "ca").unwrap();
        std::fs::write(format!("{root}/elsewhere"), "keep").unwrap();
        std::os::unix::fs::symlink(format!("{root}/elsewhere"), format!("{certs}/quay.io/hosts.toml")).unwrap();
        let registries = ["docker.io".to_string(), "quay.io".to_string(), "ghcr.io".to_string()];
        let login = Some("Basic c2VjcmV0");
        for (shell, login, mode) in [
            (&["bash", "-c"][..], login, 0o600),
            (&["bash", "-c"], None, 0o644),
            (&["dash", "-c"], login, 0o600),
            (&["busybox", "sh", "-c"], None, 0o644),
        ] {
            let (script, stdin) = super::mirror_script(&certs, &registries, 5000, login);
            let script = format!("set -e; {script}");
            let mut child = std::process::Command::new(shell[0])
                .args(&shell[1..])
                .arg(&script)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success(), "{shell:?}: {script}");
            for registry in &registries {
                let file = format!("{certs}/{registry}/hosts.toml");
                let meta = std::fs::symlink_metadata(&file).unwrap();
                assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, mode, "{file}");
                let text = std::fs::read_to_string(&file).unwrap();
                assert_eq!(text, super::hosts_toml(registry, 5000, login), "{shell:?}");
            }
        }
        // As the shell loop runs a stdin it does not give as a here-document: `head -c` hands over exactly
        // its bytes, and what follows on the loop's stdin stays for it.
        let (script, stdin) = super::mirror_script(&certs, &registries, 5000, login);
        let wrapped = format!(
            "head -c {} | {{ ( eval {}\n); s=$?; cat >/dev/null; exit $s; }} && cat",
            stdin.len(),
            crate::shell::quote(&format!("set -e; {script}"))
        );
        let mut child = std::process::Command::new("bash")
            .args(["-c", &wrapped])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{stdin}NEXT").as_bytes()).unwrap();
        assert_eq!(child.wait_with_output().unwrap().stdout, b"NEXT");
        for registry in &registries {
            let text = std::fs::read_to_string(format!("{certs}/{registry}/hosts.toml")).unwrap();
            assert_eq!(text, super::hosts_toml(registry, 5000, login));
        }
        assert_eq!(std::fs::read_to_string(format!("{root}/elsewhere")).unwrap(), "keep", "a link is replaced");
        assert_eq!(std::fs::read_to_string(format!("{certs}/docker.io/ca.crt")).unwrap(), "ca", "other files stay");
    }

    /// What decides between a direct copy and the relay is the archive's real size.
    #[test]
    fn the_bytes_of_a_copy_are_its_archives() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}/file", "d".repeat(120));
        let hundred = "h".repeat(100);
        std::fs::create_dir_all(dir.path().join(&long).parent().unwrap()).unwrap();
        let files =
            [("empty", 0), ("one", 1), ("block", 512), ("more", 513), (long.as_str(), 7), (hundred.as_str(), 3)];
        for (name, size) in files {
            std::fs::write(dir.path().join(name), vec![b'x'; size]).unwrap();
        }
        std::os::unix::fs::symlink("one", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(&long, dir.path().join("far")).unwrap();
        let paths: Vec<&str> = files.iter().map(|(n, _)| *n).chain(["link", "far"]).collect();
        let archive = super::tar(Vec::new(), dir.path(), &paths).unwrap();
        assert_eq!(crate::image::store::bytes_of(dir.path(), &paths), archive.len() as u64);
    }
}

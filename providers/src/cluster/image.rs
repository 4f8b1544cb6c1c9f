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
        // One command: the digest the host holds (read by the shell itself), then, when it is not this
        // image's, the manifest of what it holds.
        let held = cx
            .output(
                ip,
                &format!(
                    "d=; if [ -f {qdir}/digest ]; then IFS= read -r d < {qdir}/digest || true; fi; printf '%s\\n' \"$d\"; \
                     if [ \"$d\" != {} ] && [ -f {qdir}/manifest ]; then cat {qdir}/manifest; fi",
                    quote(&image.config.digest)
                ),
            )
            .await?;
        let (on_host, old) = held.split_once('\n').unwrap_or((held.as_str(), ""));
        if on_host != image.config.digest {
            let changed = changed_paths(old, &image.manifest);
            let removed: Vec<String> =
                removed_paths(old, &image.manifest).iter().map(|p| quote(&format!("rootfs/{p}"))).collect();
            let remove = if removed.is_empty() { String::new() } else { format!("rm -f {}; ", removed.join(" ")) };
            if cx.relay.enabled(cx.ctx.hosts.len(), bytes_of(&image.rootfs, &changed)) {
                let archive = cx.relay.archive(&image.rootfs, &changed, &image.manifest).await?;
                let digest = quote(&image.config.digest);
                let rootfs = format!("{dir}/rootfs");
                cx.relay
                    .deliver(cx, ip, "image", &archive, (&rootfs, false), |manifest| {
                        format!("cd {qdir}; {remove}cp {} manifest; printf %s {digest} > digest", quote(manifest))
                    })
                    .await?;
            } else {
                let archive = tar(&image.rootfs, &changed)?;
                cx.relay.note_direct("image", ip);
                cx.relay.planned("image", ip, archive.len() as u64);
                let (copy, commit) = direct_copy(&dir, &remove, image);
                cx.run(ip, &copy, &[image.manifest.as_bytes(), &archive].concat()).await?;
                cx.run(ip, &commit, b"").await?;
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

/// The two commands that copy a small image's files to a host directly, where files, manifest and digest
/// took three. The copy's stdin: the image's manifest, which waits in a file of its own, then the archive
/// of the files. It first empties the digest and the manifest: a copy cut short anywhere leaves a host
/// that holds no image, whose next apply copies everything, even the image it held before (files of the
/// earlier image that the new one has not may stay). The commit,
/// sent once the copy succeeded (a `tar` whose stream was cut at a file's end succeeds too, and a cut
/// stream ends the command on the host), puts the manifest in place and writes the digest.
fn direct_copy(dir: &str, remove: &str, image: &StoredImage) -> (String, String) {
    let (qdir, digest) = (quote(dir), quote(&image.config.digest));
    let tmp = "manifest.sealer-upload";
    let copy = format!(
        "set -e; mkdir -p {qdir}/rootfs; cd {qdir}; : > digest; : > manifest; {remove}\
         {{ [ ! -e {tmp} ] && [ ! -L {tmp} ]; }} || rm -f {tmp}; umask 022; head -c {} > {tmp}; tar -C rootfs -xf -",
        image.manifest.len()
    );
    let commit = format!("cd {qdir} && mv -f {tmp} manifest && printf %s {digest} > digest");
    (copy, commit)
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

/// Removes the mirror configuration of the registries of `was` that `now` lacks (all of them on delete).
fn unmirror_script(was: &[String], now: &[String]) -> Option<String> {
    let gone: Vec<String> = was.iter().filter(|r| !now.contains(r)).map(|r| quote(&format!("{CERTS_D}/{r}"))).collect();
    (!gone.is_empty())
        .then(|| format!("rm -rf {}; rmdir {CERTS_D} /etc/containerd 2>/dev/null || true", gone.join(" ")))
}

impl Image {
    /// Writes every registry's `hosts.toml` (0600 when it holds the registry's login: never on a
    /// command line), and removes those of registries no longer mirrored: one command with the files in
    /// a tar on its stdin (a host has a dozen of them, and a command or a process per file costs every
    /// host).
    async fn mirror(&self, cx: &Cx, ip: IpAddr, before: &schema::Image, after: &schema::Image) -> Result<()> {
        let settings = super::registry::settings(cx)?;
        let authorization = settings.authorization();
        let mode = if authorization.is_some() { 0o600 } else { 0o644 };
        let mut script = String::from("set -e; ");
        if let Some(unmirror) = unmirror_script(&mirrors(before), &mirrors(after)) {
            script.push_str(&format!("{{ {unmirror}; }}; "));
        }
        let registries = mirrors(after);
        let mut stdin = Vec::new();
        if !registries.is_empty() {
            // A tar of the files, each with its final mode, extracted under umask 077: a file holding the
            // login is never readable by others, not even while it is written.
            let mut archive = tar::Builder::new(Vec::new());
            let mut dirs = Vec::new();
            for registry in &registries {
                let toml = hosts_toml(registry, settings.port, authorization.as_deref());
                let mut header = tar::Header::new_gnu();
                header.set_size(toml.len() as u64);
                header.set_mode(mode);
                header.set_entry_type(tar::EntryType::Regular);
                let path = format!("{}/{registry}/hosts.toml", CERTS_D.trim_start_matches('/'));
                archive.append_data(&mut header, path, toml.as_bytes()).map_err(|e| ProviderError::Local {
                    what: "archive",
                    path: "the mirror configuration".into(),
                    source: e,
                })?;
                dirs.push(quote(&format!("{CERTS_D}/{registry}")));
            }
            stdin = archive.into_inner().map_err(|e| ProviderError::Local {
                what: "archive",
                path: "the mirror configuration".into(),
                source: e,
            })?;
            script.push_str(&format!("mkdir -p {}; umask 077; tar -C / -xf -", dirs.join(" ")));
        }
        if script == "set -e; " {
            return Ok(());
        }
        cx.run(ip, script.trim_end(), &stdin).await.map(|_| ())
    }
}

/// The listed files of `root` as a tar stream, as `tar -C root -cf - FILES` makes it (modes, times and
/// owners kept; links stored as links, never followed; a listed directory with what it holds), by the tar
/// crate: the workstation needs no `tar` of its own.
pub(super) fn tar(root: &Path, files: &[&str]) -> Result<Vec<u8>> {
    let local = |what: &'static str| {
        move |source: std::io::Error| ProviderError::Local { what, path: root.display().to_string(), source }
    };
    let mut builder = ::tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for file in files {
        let path = root.join(file);
        let meta = std::fs::symlink_metadata(&path).map_err(local("archive"))?;
        if meta.is_dir() {
            builder.append_dir_all(file, &path).map_err(local("archive"))?;
        } else {
            builder.append_path_with_name(&path, file).map_err(local("archive"))?;
        }
    }
    builder.into_inner().map_err(local("archive"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;
    use crate::cluster::ClusterProvider;
    use crate::image::store::{ImageConfig, StoredImage};

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
        assert_eq!(commands.len(), 4, "one command reads the digest and the manifest, one copies: {commands:?}");
        assert!(
            commands[1].starts_with(
                "set -e; mkdir -p /var/lib/sealer/c/rootfs; cd /var/lib/sealer/c; : > digest; : > manifest; rm -f rootfs/etc/gone.yml; "
            ),
            "{}",
            commands[1]
        );
        assert!(commands[1].ends_with("head -c 36 > manifest.sealer-upload; tar -C rootfs -xf -"), "{}", commands[1]);
        assert_eq!(
            commands[2],
            "cd /var/lib/sealer/c && mv -f manifest.sealer-upload manifest && printf %s sha256:new > digest",
            "the manifest and the digest only once the copy succeeded"
        );
        assert_eq!(commands[3], INIT);
        let stdin = remote.stdin_of(M1, "tar -C rootfs -xf -").unwrap();
        // The manifest's 36 bytes, then the archive of the changed file.
        assert_eq!(&stdin[..36], "aaa 644 etc/a.yml\nbbb2 644 etc/b.yml");
        assert!(stdin[36..].starts_with("etc/b.yml\0"), "the archive follows the manifest");
        assert!(!commands.iter().any(|c| c.contains("/etc/hosts")), "an update keeps /etc/hosts");
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
        assert!(
            write.ends_with(
                "mkdir -p /etc/containerd/certs.d/docker.io /etc/containerd/certs.d/quay.io; umask 077; tar -C / -xf -"
            ),
            "{write}"
        );
        let stdin = remote.stdin_of(M1, "certs.d/docker.io").unwrap();
        assert!(
            stdin.contains("server = \"https://registry-1.docker.io\"")
                && stdin.contains("server = \"https://quay.io\"")
        );
        assert!(!write.contains("server ="), "contents travel on stdin");
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
        let archive = super::tar(dir.path(), &paths).unwrap();
        assert_eq!(crate::image::store::bytes_of(dir.path(), &paths), archive.len() as u64);
    }
}

//! `app.NAME`: an application image (`spec.apps`, `sealer run APP_IMAGE`) on the cluster. Its files go to
//! every master under `/var/lib/sealer/CLUSTER/apps/NAME`, the container images it carries into the
//! cluster's registry on the first master, and its CMDs run once there, in its directory. A new digest
//! (a rebuilt or retagged application) delivers and runs it again; a new master only gets the files.
//! Removing it runs the cleanup lines its image declares (labels `sealer.io/clean`, `sealer.io/clean.*`,
//! in key order), then removes its files.

use std::net::IpAddr;

use sealer_engine::clusterfile::app_name;
use std::collections::BTreeMap;

use sealer_engine::schema::{self, Known};

use super::image::tar;
use super::plugin::{prelude, SHELL};
use super::remote::Result;
use super::{app_status, cluster_dir, Cx, KindProvider, Observation};
use crate::error::ProviderError;
use crate::image::store::{bytes_of, changed_paths, ImageConfig};
use crate::shell::quote;

pub struct App;

/// The directory of the application on a master.
fn app_dir(cx: &Cx, image: &str) -> String {
    format!("{}/apps/{}", cluster_dir(&cx.ctx.cluster), app_name(image))
}

/// The cleanup lines an application image declares in its labels.
pub fn clean_cmds(config: &ImageConfig) -> Vec<String> {
    config
        .labels
        .iter()
        .filter(|(k, _)| *k == "sealer.io/clean" || k.starts_with("sealer.io/clean."))
        .map(|(_, v)| v.clone())
        .collect()
}

impl App {
    /// Each line in the application's directory, with the cluster's tools on the PATH and its env.
    async fn run_lines(
        &self,
        cx: &Cx,
        ip: IpAddr,
        dir: &str,
        lines: &[String],
        env: Option<&BTreeMap<String, String>>,
    ) -> Result<()> {
        let (prelude, env) = prelude(dir, env, false);
        for line in lines {
            let command = format!("{prelude}{env}{SHELL} -c {}", quote(line));
            cx.run(ip, &cx.with_image_path(&command), b"").await?;
        }
        Ok(())
    }
}

/// Its entry in `kube-system/sealer-apps`.
fn status_key(image: &str) -> String {
    format!("app.{}", app_name(image))
}

impl KindProvider for App {
    type Schema = schema::App;

    async fn read(&self, obs: &Observation<'_>, _ip: IpAddr, recorded: &schema::App) -> Result<Option<schema::App>> {
        let observed = app_status::observe(obs, &status_key(&recorded.image), &recorded.digest).await?;
        Ok(observed.map(|digest| schema::App { digest, ..recorded.clone() }))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::App) -> Result<schema::App> {
        self.update(cx, ip, &schema::App::default(), after).await
    }

    async fn update(&self, cx: &Cx, ip: IpAddr, before: &schema::App, mut after: schema::App) -> Result<schema::App> {
        let name = after.image.clone();
        let image = cx.ctx.apps.get(&name).ok_or_else(|| ProviderError::NoAppImage(name.clone()))?;
        let dir = app_dir(cx, &name);
        let delivered = before.digest.known() == Some(&image.config.digest) && before.image == name;
        // A new first master (the one before is gone) runs the cluster's registry from its own copy of the
        // cluster image: the application's container images go there too; its CMDs ran already.
        let registry_moved = delivered && before.first_master != after.first_master;
        let all = changed_paths("", &image.manifest);
        let (registry, files): (Vec<&str>, Vec<&str>) = all.into_iter().partition(|p| p.starts_with("registry/"));
        let had_files = &before.masters;
        let mut targets = Vec::new();
        for master in &after.masters {
            if delivered && had_files.contains(master) {
                continue;
            }
            targets.push(master.parse::<IpAddr>().map_err(|_| ProviderError::NoHost { address: master.clone() })?);
        }
        // Replaced whole: files the new version no longer has go.
        let q = quote(&dir);
        let swap = format!("rm -rf {q}; mv {q}.new {q}");
        let what = status_key(&name);
        if cx.relay.enabled(targets.len(), bytes_of(&image.rootfs, &files)) {
            let archive = cx.relay.archive(&image.rootfs, &files, &image.manifest).await?;
            let new = format!("{dir}.new");
            for master in targets {
                cx.relay.deliver(cx, master, &what, &archive, (&new, true), |_| swap.clone()).await?;
            }
        } else if !targets.is_empty() {
            let archive = tar(Vec::new(), &image.rootfs, &files)?;
            let install = format!("set -e; rm -rf {q}.new; mkdir -p {q}.new; tar -C {q}.new -xf -; {swap}");
            for master in targets {
                cx.relay.planned(&what, master, archive.len() as u64);
                cx.run(master, &install, &archive).await?;
                cx.relay.delivered(&what, master, archive.len() as u64, None);
            }
        }
        if (!delivered || registry_moved) && !registry.is_empty() {
            // Into the storage the cluster's registry serves (`sea.hub`), beside what is there.
            let storage = super::registry::settings(cx)
                .map_or_else(|_| format!("{}/registry", cx.rootfs()), |s| s.storage(&cx.rootfs()));
            let blobs = tar(
                Vec::new(),
                &image.rootfs.join("registry"),
                &registry.iter().filter_map(|p| p.strip_prefix("registry/")).collect::<Vec<_>>(),
            )?;
            cx.run(ip, &format!("set -e; mkdir -p {0}; tar -C {0} -xf -", quote(&storage)), &blobs).await?;
        }
        if !delivered {
            if let Err(e) = self.run_lines(cx, ip, &dir, &image.config.cmds, after.env.as_ref()).await {
                let _ = app_status::record(cx, &status_key(&name), Some(("failed", &image.config.digest))).await;
                return Err(e);
            }
            app_status::record(cx, &status_key(&name), Some(("installed", &image.config.digest))).await?;
        }
        after.digest = Known::Is(image.config.digest.clone());
        after.cmds = Known::Is(image.config.cmds.clone());
        after.clean_cmds = Known::Is(clean_cmds(&image.config));
        Ok(after)
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::App) -> Result<()> {
        let name = &before.image;
        let dir = app_dir(cx, name);
        let clean = before.clean_cmds.known().cloned().unwrap_or_default();
        if !clean.is_empty() && cx.holds(ip, &format!("-d {}", quote(&dir))).await? {
            self.run_lines(cx, ip, &dir, &clean, before.env.as_ref()).await?;
        }
        for master in &before.masters {
            let Ok(master) = master.parse::<IpAddr>() else { continue };
            cx.run(master, &format!("rm -rf {}", quote(&dir)), b"").await?;
        }
        app_status::record(cx, &status_key(name), None).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;
    use crate::cluster::ClusterProvider;
    use crate::image::store::{ImageConfig, StoredImage};

    fn app_image(rootfs: &std::path::Path, digest: &str) -> StoredImage {
        std::fs::create_dir_all(rootfs.join("manifests")).unwrap();
        std::fs::create_dir_all(rootfs.join("registry/docker")).unwrap();
        std::fs::write(rootfs.join("manifests/app.yaml"), "kind: Pod\n").unwrap();
        std::fs::write(rootfs.join("registry/docker/blob"), "b").unwrap();
        StoredImage {
            config: ImageConfig {
                format_version: "1".into(),
                name: "reg.io/team/nginx-app:1".into(),
                digest: digest.into(),
                base: None,
                cmds: vec!["kubectl apply -f manifests/app.yaml".into()],
                env: BTreeMap::new(),
                labels: BTreeMap::from([(
                    "sealer.io/clean".to_string(),
                    "kubectl delete -f manifests/app.yaml".to_string(),
                )]),
                images: vec![],
            },
            rootfs: rootfs.to_path_buf(),
            manifest: "0 644 manifests/app.yaml\n0 644 registry/docker/blob\n".into(),
        }
    }

    fn after(digest: &str) -> sealer_engine::Attributes {
        attrs([
            ("image", Value::text("reg.io/team/nginx-app:1")),
            ("digest", Value::text(digest)),
            ("masters", Value::List(vec!["10.0.0.2".into(), "10.0.0.3".into()])),
        ])
    }

    #[tokio::test]
    async fn files_go_to_every_master_images_to_the_registry_and_cmds_run_once_on_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.apps.insert("reg.io/team/nginx-app:1".into(), app_image(dir.path(), "sha256:1"));
        let remote = Arc::new(Scripted::default());
        let p = ClusterProvider::new(ctx, remote.clone());
        let got = apply(&p, change(Kind::App, "nginx-app", M1, Action::Create, None, Some(after("sha256:1"))))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["clean_cmds"], Value::List(vec!["kubectl delete -f manifests/app.yaml".into()]));
        let first = remote.commands(M1);
        assert_eq!(first.len(), 5, "{first:?}");
        assert!(first[0].contains("mv /var/lib/sealer/c/apps/nginx-app.new /var/lib/sealer/c/apps/nginx-app"));
        assert_eq!(
            first[1],
            "set -e; mkdir -p /var/lib/sealer/c/rootfs/registry; tar -C /var/lib/sealer/c/rootfs/registry -xf -"
        );
        assert!(
            first[2].contains("cd /var/lib/sealer/c/apps/nginx-app || exit; ")
                && first[2].contains("'kubectl apply -f manifests/app.yaml'")
        );
        assert_eq!(remote.commands(M2).len(), 1, "the second master gets the files only");

        // The same digest with one more master: only the new master gets the files, nothing runs again.
        let remote = Arc::new(Scripted::default());
        let mut ctx = context(None, logs.path());
        ctx.apps.insert("reg.io/team/nginx-app:1".into(), app_image(dir.path(), "sha256:1"));
        let p = ClusterProvider::new(ctx, remote.clone());
        let mut before = got.clone();
        before.insert("masters".into(), Value::List(vec!["10.0.0.2".into()]));
        apply(&p, change(Kind::App, "nginx-app", M1, Action::Update, Some(before), Some(after("sha256:1"))))
            .await
            .unwrap();
        assert!(remote.commands(M1).is_empty(), "{:?}", remote.commands(M1));
        assert_eq!(remote.commands(M2).len(), 1);

        // A new first master (the one before is gone): its registry gets the container images; no CMD
        // runs again and no files are copied.
        let remote = Arc::new(Scripted::default());
        let mut ctx = context(None, logs.path());
        ctx.apps.insert("reg.io/team/nginx-app:1".into(), app_image(dir.path(), "sha256:1"));
        let p = ClusterProvider::new(ctx, remote.clone());
        let mut before = got.clone();
        before.insert("first_master".into(), Value::text("10.0.0.9"));
        let mut moved = after("sha256:1");
        moved.insert("first_master".into(), Value::text("10.0.0.3"));
        apply(&p, change(Kind::App, "nginx-app", M2, Action::Update, Some(before), Some(moved))).await.unwrap();
        assert_eq!(
            remote.commands(M2),
            ["set -e; mkdir -p /var/lib/sealer/c/rootfs/registry; tar -C /var/lib/sealer/c/rootfs/registry -xf -"]
        );
        assert!(remote.commands(M1).is_empty(), "{:?}", remote.commands(M1));

        // Removed: the cleanup line runs, then the files go from every master.
        let remote = Arc::new(Scripted::default().on("test -d", "yes"));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::App, "nginx-app", M1, Action::Delete, Some(got), None)).await.unwrap();
        let commands = remote.commands(M1);
        assert!(commands[1].contains("'kubectl delete -f manifests/app.yaml'"), "{commands:?}");
        assert_eq!(commands[2], "rm -rf /var/lib/sealer/c/apps/nginx-app");
        assert_eq!(remote.commands(M2), ["rm -rf /var/lib/sealer/c/apps/nginx-app"]);
    }

    /// Creates the application on both masters with the relay on (a helper present), over `remote`.
    async fn create_with_relay(
        dir: &std::path::Path,
        logs: &std::path::Path,
        remote: Arc<Scripted>,
    ) -> ClusterProvider {
        let (p, failed) = try_create_with_relay(dir, logs, remote).await;
        assert_eq!(failed, None);
        p
    }

    /// As [`create_with_relay`], with the apply's error, if any.
    async fn try_create_with_relay(
        dir: &std::path::Path,
        logs: &std::path::Path,
        remote: Arc<Scripted>,
    ) -> (ClusterProvider, Option<String>) {
        let mut ctx = context(None, logs);
        let mut image = app_image(&dir.join("app"), "sha256:1");
        // Large enough to be relayed rather than sent to each master.
        let big = vec![b'x'; super::super::relay::DIRECT_MAX as usize + 1];
        std::fs::write(image.rootfs.join("manifests/big.bin"), big).unwrap();
        image.manifest = format!("0 644 manifests/big.bin\n{}", image.manifest);
        ctx.apps.insert("reg.io/team/nginx-app:1".into(), image);
        ctx.distribution.helper = Some(b"#!/bin/sh\n".to_vec());
        let p = ClusterProvider::new(ctx, remote);
        let applied =
            apply(&p, change(Kind::App, "nginx-app", M1, Action::Create, None, Some(after("sha256:1")))).await;
        let failed = applied.err().map(|e| e.to_string());
        (p, failed)
    }

    /// With the relay (its helper present), the first master gets the files from the workstation and
    /// the next one fetches them from the first, checked; the token is never in a command.
    #[tokio::test]
    async fn the_second_master_fetches_the_files_from_the_first() {
        let (dir, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let remote = Arc::new(Scripted::default().on(" start . ", "relay-port 4100"));
        let p = create_with_relay(dir.path(), logs.path(), remote.clone()).await;
        let first = remote.commands(M1);
        assert!(first[0].contains("sha256sum -c --status") && first[0].contains("cat > "), "{first:?}");
        // The helper alone goes as a file, checked to run; the seed's relay starts, then the helper takes
        // in the manifest and the files, the whole stdin of one command, which the relay serves as they
        // arrive.
        assert!(first[0].contains("-lt 126 ] || exit 6"), "{first:?}");
        assert_eq!(first.iter().filter(|c| c.contains("cat > \"$p\"")).count(), 1, "{first:?}");
        assert!(first[1].contains(" start . 10.0.0.2 ") && !first[1].contains(" receive "), "{first:?}");
        assert!(first[1].contains("rm -f /var/lib/sealer/c/.relay/"), "half-way copies removed first: {first:?}");
        assert!(
            first[2].contains(" receive ")
                && first[2].contains(" --unpack /var/lib/sealer/c/apps/nginx-app.new --keep")
        );
        assert!(!first[2].contains(" start . ") && !first[2].contains("read -r token"), "{first:?}");
        let streamed = remote.stdin_of(M1, " receive ").unwrap();
        assert!(streamed.starts_with("0 644 manifests/big.bin\n"), "the manifest");
        assert!(streamed.len() > super::super::relay::DIRECT_MAX as usize, "then the archive");
        assert!(first.iter().any(|c| c.contains(" start . 10.0.0.2 ")), "the first master serves: {first:?}");
        // One command fetches (the helper with bash, then the files with the helper), installs and serves.
        let second = remote.commands(M2);
        assert_eq!(second.len(), 1, "{second:?}");
        assert!(second[0].starts_with("s=") && second[0].contains(" 10.0.0.2 4100 $h > $part"), "{second:?}");
        assert!(second[0].contains(" fetch 10.0.0.2 4100 "), "the helper fetches the files: {second:?}");
        assert!(second[0].contains(" --unpack /var/lib/sealer/c/apps/nginx-app.new --keep"), "{second:?}");
        assert!(second[0].contains("mv /var/lib/sealer/c/apps/nginx-app.new /var/lib/sealer/c/apps/nginx-app"));
        assert!(second[0].contains(" start . 10.0.0.3 "), "and then serves: {second:?}");
        let access = remote.stdin_of(M2, " start . ").unwrap();
        let token = access.lines().next().unwrap();
        assert_eq!((token.len(), access.lines().count()), (32, 4), "the token, then the 3 hosts: {access}");
        // In no host's log: the seed's relay start and the fetch both take it on stdin.
        for log in std::fs::read_dir(logs.path()).unwrap() {
            let logged = std::fs::read_to_string(log.unwrap().path()).unwrap();
            assert!(!logged.contains(token), "the token leaked into a log: {logged}");
        }
        assert!(!remote.calls().iter().any(|c| c.contains(token)), "the token leaked into a command");
        p.stop_relays().await;
        assert!(remote.commands(M2).last().unwrap().contains("rm -rf /var/lib/sealer/c/.relay"));
    }

    /// Stopping the relays skips a host found unreachable during the apply (it was named then; its relay
    /// exits when idle) and stops the others.
    #[tokio::test]
    async fn stopping_the_relays_skips_a_host_known_unreachable() {
        let (dir, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let remote = Arc::new(Scripted::default().on(" start . ", "relay-port 4100"));
        let p = create_with_relay(dir.path(), logs.path(), remote.clone()).await;
        remote.goes_down(M2);
        let before = remote.commands(M2).len();
        assert!(p.stop_relays().await.is_empty(), "no error for the host skipped");
        assert_eq!(remote.commands(M2).len(), before, "{:?}", remote.commands(M2));
        assert!(remote.commands(M1).last().unwrap().contains("rm -rf /var/lib/sealer/c/.relay"));
    }

    /// A host where the helper cannot run (another architecture) takes a direct copy and serves nobody.
    #[tokio::test]
    async fn a_host_that_cannot_run_the_helper_gets_a_direct_copy() {
        let (dir, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Earlier rules answer first: the second master's fetch fails before any `relay-port` answer.
        let remote =
            Arc::new(Scripted::default().fail(" fetch 10.0.0.2 4100 ", 6, "").on(" start . ", "relay-port 4100"));
        create_with_relay(dir.path(), logs.path(), remote.clone()).await;
        let second = remote.commands(M2);
        assert_eq!(second.len(), 4, "{second:?}");
        assert!(second[0].contains(" fetch 10.0.0.2 4100 "), "{second:?}");
        assert!(second[1..3].iter().all(|c| c.contains("cat > ")), "two files from the workstation: {second:?}");
        assert!(second[3].contains("tar -C /var/lib/sealer/c/apps/nginx-app.new"), "{second:?}");
        assert!(!second[3].contains(" start . "), "it serves nobody: {second:?}");
    }

    /// A seed where the helper it was sent cannot run (a `noexec` mount) gets the files instead, unpacks
    /// them with tar and serves nobody; the next host seeds.
    #[tokio::test]
    async fn a_seed_that_cannot_run_the_helper_gets_the_files() {
        let (dir, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let remote =
            Arc::new(Scripted::default().fail_on_host(M1, "-lt 126 ]", 6, "").on(" start . ", "relay-port 4100"));
        create_with_relay(dir.path(), logs.path(), remote.clone()).await;
        let first = remote.commands(M1);
        assert!(first[1..3].iter().all(|c| c.contains("cat > ")), "two files from the workstation: {first:?}");
        assert!(first[3].contains("tar -C /var/lib/sealer/c/apps/nginx-app.new"), "{first:?}");
        assert!(
            !first.iter().any(|c| c.contains(" receive ") || c.contains(" start . ")),
            "nothing streamed: {first:?}"
        );
        let second = remote.commands(M2);
        assert!(second.iter().any(|c| c.contains(" start . 10.0.0.3 ")), "the next seeds and serves: {second:?}");
        assert!(second.iter().any(|c| c.contains(" receive ")), "{second:?}");
    }

    /// The workstation's own copy to the seed failing its check (or cut short) is the apply's error, with
    /// the helper's words.
    #[tokio::test]
    async fn a_seed_whose_stream_fails_is_an_error() {
        let (dir, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let remote = Arc::new(
            Scripted::default().fail(" receive ", 4, "sealer-relay: mismatch").on(" start . ", "relay-port 4100"),
        );
        let error = try_create_with_relay(dir.path(), logs.path(), remote).await.1.expect("the apply fails");
        assert!(error.contains("sealer-relay: mismatch"), "{error}");
    }
}

//! `registry.IP`: the image's own registry (its `bin/registry`, serving the image's `registry/`
//! directory) on the first master, answering as `sea.hub`, configured as the image says (see
//! [`RegistrySettings`]): its port, storage and login.

use std::net::IpAddr;

use sealer_engine::kubeadm::REGISTRY_DOMAIN;
use sealer_engine::schema;

use super::remote::Result;
use super::{cluster_dir, Cx, KindProvider};
use crate::image::registry_config::RegistrySettings;
use crate::shell::quote;

pub struct Registry;

const REGISTRY_PID: &str = "/run/sealer-registry.pid";

/// The registry settings of the cluster image.
pub(super) fn settings(cx: &Cx) -> Result<RegistrySettings> {
    let image = cx.image()?;
    Ok(RegistrySettings::load(&image.rootfs)?)
}

impl KindProvider for Registry {
    type Schema = schema::Registry;

    /// Starts the registry unless it already runs, and waits until it answers.
    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Registry) -> Result<schema::Registry> {
        let rootfs = cx.rootfs();
        let binary = quote(&format!("{rootfs}/bin/registry"));
        if cx.holds(ip, &format!("-x {binary}")).await? {
            let settings = settings(cx)?;
            let dir = cluster_dir(&cx.ctx.cluster);
            let (config_path, htpasswd_path) = (format!("{dir}/registry.yml"), format!("{dir}/registry.htpasswd"));
            if let Some(htpasswd) = settings.htpasswd() {
                cx.upload(ip, &htpasswd_path, htpasswd.as_bytes(), 0o600).await?;
            }
            cx.upload(ip, &config_path, settings.config(ip, &rootfs, &htpasswd_path).as_bytes(), 0o600).await?;
            // The images the image carries are where the registry serves from, wherever its storage is.
            let storage = quote(&settings.storage(&rootfs));
            let carried = quote(&format!("{rootfs}/registry"));
            cx.run(ip, &format!("mkdir -p {storage}; if [ {carried} != {storage} ] && [ -d {carried} ]; then cp -a {carried}/. {storage}/; fi"), b"").await?;
            let port = settings.port;
            let start = format!(
                "if ! kill -0 \"$(cat {REGISTRY_PID} 2>/dev/null)\" 2>/dev/null; then \
                   setsid {binary} serve {} >/var/log/sealer-registry.log 2>&1 </dev/null & echo $! > {REGISTRY_PID}; fi; \
                 for i in $(seq 100); do bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null && exit 0; sleep 0.1; done; \
                 echo 'the registry did not answer on {ip}:{port}' >&2; exit 1",
                quote(&config_path)
            );
            cx.run(ip, &start, b"").await?;
        }
        cx.hosts_entry(ip, REGISTRY_DOMAIN, ip).await?;
        Ok(after)
    }

    /// A new configuration (port, login) needs the registry started again with it.
    async fn update(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::Registry,
        after: schema::Registry,
    ) -> Result<schema::Registry> {
        self.delete(cx, ip, before).await?;
        self.create(cx, ip, after).await
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, _before: &schema::Registry) -> Result<()> {
        let stop = format!("kill \"$(cat {REGISTRY_PID} 2>/dev/null)\" 2>/dev/null; rm -f {REGISTRY_PID}; true");
        cx.run(ip, &stop, b"").await.map(|_| ())
    }
}
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Kind};

    use crate::cluster::testing::*;

    #[tokio::test]
    async fn an_image_with_a_registry_binary_gets_it_started_with_the_images_login() {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        std::fs::write(rootfs.path().join("etc/registry_config.yaml"), "port: 5001\nusername: u\npassword: Pw-9\n")
            .unwrap();
        let image = crate::image::store::StoredImage {
            config: crate::image::store::ImageConfig {
                format_version: "1".into(),
                name: "k:1".into(),
                digest: "sha256:1".into(),
                base: None,
                cmds: vec![],
                env: Default::default(),
                labels: Default::default(),
                images: vec![],
            },
            rootfs: rootfs.path().to_path_buf(),
            manifest: String::new(),
        };
        let remote = Arc::new(Scripted::default().on("test -x", "yes"));
        let logs = tempfile::tempdir().unwrap();
        let p = crate::cluster::ClusterProvider::new(context(Some(image), logs.path()), remote.clone());
        apply(&p, change(Kind::Registry, "10.0.0.2", M1, Action::Create, None, Some(attrs([])))).await.unwrap();
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 6, "{commands:?}");
        assert_eq!(commands[1], "upload /var/lib/sealer/c/registry.htpasswd 600");
        assert_eq!(commands[2], "upload /var/lib/sealer/c/registry.yml 600");
        assert!(commands[4].contains("setsid /var/lib/sealer/c/rootfs/bin/registry serve"), "{}", commands[4]);
        assert!(commands[4].contains("/dev/tcp/10.0.0.2/5001"), "{}", commands[4]);
        assert!(commands[5].contains("10.0.0.2 sea.hub"), "{}", commands[5]);
        let config = remote.uploaded(M1, "/var/lib/sealer/c/registry.yml").unwrap();
        assert!(config.contains("addr: 10.0.0.2:5001") && config.contains("htpasswd"), "{config}");
        assert!(remote.uploaded(M1, "/var/lib/sealer/c/registry.htpasswd").unwrap().starts_with("u:$2"));
        assert!(!commands.iter().any(|c| c.contains("Pw-9")), "the password is on no command line");
    }

    #[tokio::test]
    async fn without_a_registry_binary_only_the_name_is_set() {
        let remote = Arc::new(Scripted::default().on("test -x", "no"));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::Registry, "10.0.0.2", M1, Action::Create, None, Some(attrs([])))).await.unwrap();
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(commands[1].contains("sea.hub"));
    }

    #[tokio::test]
    async fn delete_stops_it() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::Registry, "10.0.0.2", M1, Action::Delete, Some(attrs([])), None)).await.unwrap();
        assert_eq!(
            remote.commands(M1),
            ["kill \"$(cat /run/sealer-registry.pid 2>/dev/null)\" 2>/dev/null; rm -f /run/sealer-registry.pid; true"]
        );
    }
}

//! `registry.IP`: the image's own registry (its `bin/registry`, serving the image's `registry/`
//! directory) on the first master, answering as `sea.hub`.

use std::net::IpAddr;

use sealer_engine::kubeadm::{REGISTRY_DOMAIN, REGISTRY_PORT};
use sealer_engine::Attributes;

use super::remote::Result;
use super::{Cx, KindProvider};
use crate::shell::quote;

pub struct Registry;

const REGISTRY_PID: &str = "/run/sealer-registry.pid";

impl KindProvider for Registry {
    /// Starts the registry unless it already runs, and waits until it answers.
    async fn create(&self, cx: &Cx, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        let rootfs = cx.rootfs();
        let binary = quote(&format!("{rootfs}/bin/registry"));
        if cx.holds(ip, &format!("-x {binary}")).await? {
            let config = format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {rootfs}/registry\nhttp:\n  addr: {ip}:{REGISTRY_PORT}\n"
            );
            let config_path = format!("{rootfs}/etc/registry.yml");
            cx.run(ip, &format!("mkdir -p {}/registry", quote(&rootfs)), b"").await?;
            cx.upload(ip, &config_path, config.as_bytes(), 0o644).await?;
            let start = format!(
                "if ! kill -0 \"$(cat {REGISTRY_PID} 2>/dev/null)\" 2>/dev/null; then \
                   setsid {binary} serve {} >/var/log/sealer-registry.log 2>&1 </dev/null & echo $! > {REGISTRY_PID}; fi; \
                 for i in $(seq 100); do bash -c 'exec 3<>/dev/tcp/{ip}/{REGISTRY_PORT}' 2>/dev/null && exit 0; sleep 0.1; done; \
                 echo 'the registry did not answer on {ip}:{REGISTRY_PORT}' >&2; exit 1",
                quote(&config_path)
            );
            cx.run(ip, &start, b"").await?;
        }
        cx.hosts_entry(ip, REGISTRY_DOMAIN, ip).await?;
        Ok(after)
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, _before: &Attributes) -> Result<()> {
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
    async fn an_image_with_a_registry_binary_gets_it_started_and_sea_hub_resolves() {
        let remote = Arc::new(Scripted::default().on("test -x", "yes"));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::Registry, "10.0.0.2", M1, Action::Create, None, Some(attrs([])))).await.unwrap();
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 5, "{commands:?}");
        assert_eq!(commands[2], "upload /var/lib/sealer/c/rootfs/etc/registry.yml 644");
        assert!(commands[3].contains("setsid /var/lib/sealer/c/rootfs/bin/registry serve"), "{}", commands[3]);
        assert!(commands[4].contains("10.0.0.2 sea.hub"), "{}", commands[4]);
        let config = remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/registry.yml").unwrap();
        assert!(config.contains("addr: 10.0.0.2:5000"), "{config}");
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

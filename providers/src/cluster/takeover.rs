//! `sealer gen`: a running cluster that sealer did not install, as its API and its hosts show it. The
//! API is read through the first master; each host is asked where its `/etc/hosts` sends the registry's
//! name. Reads only: nothing on a host changes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sealer_engine::kubeadm::REGISTRY_DOMAIN;

use super::{kube, ClusterProvider};
use crate::error::ProviderError;
use crate::shell::quote;

/// A node of the running cluster.
#[derive(Clone, Debug)]
pub struct RunningNode {
    pub name: String,
    /// Its InternalIP, when it reports one.
    pub ip: Option<IpAddr>,
    /// It carries a control-plane role label kubeadm puts on the nodes of its version.
    pub control_plane: bool,
    pub ready: bool,
    pub kubelet_version: String,
}

/// What the running cluster holds.
#[derive(Clone, Debug)]
pub struct Running {
    pub nodes: Vec<RunningNode>,
    /// `kube-system/kubeadm-config`'s ClusterConfiguration (YAML), as kubeadm stored it.
    pub cluster_configuration: String,
    /// Where each host asked sends the registry's name (`sea.hub`) in its `/etc/hosts`, if anywhere.
    pub registry_entries: BTreeMap<IpAddr, Option<IpAddr>>,
}

impl RunningNode {
    fn of(node: &kube::Node) -> RunningNode {
        let kubelet_version = node.status.node_info.kubelet_version.clone();
        let labels = sealer_engine::kubeadm::master_labels(&kubelet_version);
        RunningNode {
            name: node.metadata.name.clone(),
            ip: node.internal_ip().and_then(|ip| ip.parse().ok()),
            control_plane: labels.iter().any(|l| node.metadata.labels.contains_key(*l)),
            ready: node.ready(),
            kubelet_version,
        }
    }
}

impl ClusterProvider {
    /// Reads the running cluster through the first master's kubectl (the image's once sealer delivered
    /// it, the host's own before) and `hosts`' `/etc/hosts`.
    pub async fn running(&self, hosts: &[IpAddr]) -> Result<Running, ProviderError> {
        let cx = &self.0;
        if !cx.initialised(cx.ctx.first_master, "admin.conf").await? {
            return Err(ProviderError::NotControlPlane { host: cx.ctx.first_master });
        }
        let nodes = cx.nodes().await?.items.iter().map(RunningNode::of).collect();
        let config: kube::ConfigMap = cx.get("--namespace kube-system configmap kubeadm-config").await?;
        let cluster_configuration =
            config.data.get("ClusterConfiguration").cloned().ok_or_else(|| ProviderError::Unexpected {
                host: cx.ctx.first_master,
                what: "kube-system/kubeadm-config".into(),
                message: "it holds no ClusterConfiguration".into(),
            })?;
        // The last line naming it wins, as for the resolver.
        let command = format!(
            "awk -v n={} '$1 !~ /^#/ {{ for (i = 2; i <= NF; i++) if ($i == n) a = $1 }} END {{ print a }}' /etc/hosts",
            quote(REGISTRY_DOMAIN)
        );
        let reads = hosts.iter().map(|ip| {
            let command = &command;
            async move { (*ip, cx.output(*ip, command).await) }
        });
        let mut registry_entries = BTreeMap::new();
        for (ip, read) in futures_util::future::join_all(reads).await {
            registry_entries.insert(ip, read?.trim().parse().ok());
        }
        Ok(Running { nodes, cluster_configuration, registry_entries })
    }
}

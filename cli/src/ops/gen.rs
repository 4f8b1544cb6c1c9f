//! `sealer gen`: takes over a running Kubernetes cluster that sealer did not install (sealer's `gen`,
//! Terraform's import). The cluster is read: its nodes, kubeadm's ClusterConfiguration, and where each
//! host's `/etc/hosts` sends the registry's name. Then two things are written together, or neither:
//! - the Clusterfile the flags mean, beside the state, with the cluster's own ClusterConfiguration;
//! - the members' kubeadm records, imported into the state as the hosts hold them.
//!
//! The apply that follows delivers what sealer adds (the image's files and start-up, its registry, the
//! nodes' API balancer, each member's registry name, the image's CMDs). Kubernetes is never initialised,
//! joined or reset there. When that apply applies nothing (declined, or failed first), both writes are
//! taken back ([`undo`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::error::{bail, err, Context as _, Error};
use super::Result;
use sealer_engine::kubeadm::API_SERVER_DOMAIN;
use sealer_engine::schema::{self, Schema};
use sealer_engine::{
    Address, Attributes, Clusterfile, Kind, ResourceGraph, ResourceStatus, ResourceWrite, State, StoredResource, Value,
};
use sealer_providers::cluster::Running;
use serde_yaml::{Mapping, Value as Yaml};

use super::run::{Prepared, RunRequest};
use super::Workspace;

/// What `gen` wrote: the Clusterfile, and the records imported into the state (which then had `serial`).
pub struct Generated {
    pub prepared: Prepared,
    pub imported: Vec<StoredResource>,
    pub serial: u64,
}

/// The ClusterConfiguration fields a takeover leaves to sealer: the Kubernetes version is the image's
/// (checked equal). The rest is the cluster's own, so that a later change of the control plane keeps it.
const SEALERS: [&str; 3] = ["apiVersion", "kind", "kubernetesVersion"];

/// Reads the running cluster the flags of `req` name, checks that sealer can take it over whole with
/// `req.image` (every problem at once), and writes the Clusterfile and the imported records.
pub fn generate(ws: &Workspace, req: &RunRequest) -> Result<Generated> {
    let target = super::run::target(ws, req)?;
    let Some(text) = target.new_text else {
        bail!(
            "cluster `{}` is already in the state: `sealer gen` takes over a cluster that sealer does not manage yet",
            target.cluster
        );
    };
    if super::run::is_application(ws, &req.image)? {
        bail!(
            "`{}` is an application image: a cluster is taken over with the cluster image of its Kubernetes version",
            req.image
        );
    }
    let text = text.replacen("sealer run", "sealer gen", 1);
    let cf = parse(&text)?;
    let first = cf.cluster.first_master().context("the flags declare no master")?.ip;
    let hosts: Vec<IpAddr> = cf.cluster.hosts.iter().map(|h| h.ip).collect();
    let logs = tempfile::Builder::new().prefix("sealer-gen-").tempdir()?;
    let empty = State::empty(&cf.cluster.name);
    // No host key is pinned before a cluster's first write: they are learned, as by `run`.
    let provider = super::hosts::api_provider(ws, &cf, &empty, false, first, logs.path().to_path_buf())?;
    let running = ws
        .block_on(provider.running(&hosts))?
        .map_err(|e| err!("reading the running cluster through {first}, the first of --masters: {e}"))?;
    let live: Yaml = serde_yaml::from_str(&running.cluster_configuration)
        .context("kube-system/kubeadm-config: its ClusterConfiguration is not YAML")?;
    let (facts, _) = super::images::facts(ws, &cf)?;
    let version = sealer_engine::kubeadm::kubernetes_version(&cf, &facts.kubeadm);
    let problems = check(&cf, &running, &live, &version);
    if !problems.is_empty() {
        bail!("cannot take over the cluster:\n  - {}", problems.join("\n  - "));
    }
    let text = with_live_settings(&text, &live)?;
    let cf = parse(&text)?;
    let compiled = super::plan::compile(ws, &cf, &Default::default())?;
    let records = imported(&compiled.graph, &cf, &running)?;
    let prepared = Prepared {
        cluster: target.cluster,
        path: target.path,
        previous: target.previous,
        text,
        application: false,
        joined: false,
    };
    let serial = record(ws, &prepared, &records)?;
    Ok(Generated { prepared, imported: records, serial })
}

/// Takes back what [`generate`] wrote when the apply after it applied nothing: the imported records, and
/// the Clusterfile (an earlier one comes back).
pub fn undo(ws: &Workspace, generated: &Generated) -> Result<()> {
    let cluster = &generated.prepared.cluster;
    let mut store = ws.open_state()?;
    let lock = store.lock(cluster, &super::who(), std::process::id(), &super::command_line())?;
    super::say_replaced(&lock);
    let writes: Vec<ResourceWrite<'_>> =
        generated.imported.iter().map(|r| ResourceWrite { from: None, address: &r.address, resource: None }).collect();
    let undone = store.write_resources(&lock, &writes).map_err(Error::from);
    let undone = undone.and_then(|_| generated.prepared.restore());
    store.unlock(&lock)?;
    undone
}

fn parse(text: &str) -> Result<Clusterfile> {
    let parsed = sealer_engine::parse("the Clusterfile gen writes", text).map_err(|diagnostics| {
        let shown: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        err!("the running cluster makes an invalid Clusterfile:\n{}", shown.join("\n"))
    })?;
    Ok(parsed.clusterfile)
}

fn bare(version: &str) -> &str {
    version.trim().trim_start_matches('v')
}

/// Why sealer cannot take the running cluster over as the flags declare it (nothing: it can).
fn check(cf: &Clusterfile, running: &Running, live: &Yaml, version: &str) -> Vec<String> {
    let image = &cf.cluster.image;
    let mut problems = Vec::new();
    for host in &cf.cluster.hosts {
        let Some(node) = running.nodes.iter().find(|n| n.ip == Some(host.ip)) else {
            problems.push(format!("{} is not a node of the cluster", host.ip));
            continue;
        };
        let (ip, name) = (host.ip, &node.name);
        match (host.role.as_str(), node.control_plane) {
            ("node", true) => problems.push(format!("{ip} ({name}) is a control-plane node: give it with --masters")),
            ("master", false) => problems.push(format!("{ip} ({name}) is a worker node: give it with --nodes")),
            _ => {}
        }
        if !node.ready {
            problems.push(format!("{ip} ({name}) is not Ready: a cluster is taken over healthy"));
        }
        if bare(&node.kubelet_version) != bare(version) {
            problems.push(format!(
                "{ip} ({name}) runs kubelet {}, and image `{image}` carries Kubernetes {version}",
                node.kubelet_version
            ));
        }
    }
    let declared: BTreeSet<IpAddr> = cf.cluster.hosts.iter().map(|h| h.ip).collect();
    for node in &running.nodes {
        match node.ip {
            None => problems
                .push(format!("node {} reports no InternalIP: sealer reaches every member by its address", node.name)),
            Some(ip) if !declared.contains(&ip) => problems.push(format!(
                "node {} ({ip}) is not in --masters or --nodes: a cluster is taken over whole",
                node.name
            )),
            Some(_) => {}
        }
    }
    let field = |name: &str| live.get(name).and_then(Yaml::as_str).unwrap_or_default().to_string();
    let live_version = field("kubernetesVersion");
    if bare(&live_version) != bare(version) {
        problems.push(format!(
            "the cluster's ClusterConfiguration is Kubernetes `{live_version}`, and image `{image}` carries \
             {version}: take it over with the image of its version, then upgrade"
        ));
    }
    let endpoint = field("controlPlaneEndpoint");
    let expected = format!("{API_SERVER_DOMAIN}:6443");
    // Without a port, kubeadm's endpoint is on the API's default port.
    if endpoint != expected && endpoint != API_SERVER_DOMAIN {
        problems.push(format!(
            "the cluster's controlPlaneEndpoint is `{endpoint}`: sealer's members reach the API as `{expected}` \
             (a name each member's /etc/hosts resolves), so only a cluster made with that endpoint is taken over"
        ));
    }
    problems
}

/// `text` with the running cluster's kubeadm ClusterConfiguration as a document of its own (less what
/// sealer decides, [`SEALERS`]), in the API version kubeadm stored it in.
fn with_live_settings(text: &str, live: &Yaml) -> Result<String> {
    let Some(live) = live.as_mapping() else {
        bail!("kube-system/kubeadm-config: its ClusterConfiguration is not a mapping");
    };
    let api_version = live
        .get("apiVersion")
        .and_then(Yaml::as_str)
        .filter(|v| v.starts_with("kubeadm.k8s.io/"))
        .unwrap_or("kubeadm.k8s.io/v1beta3");
    let kept: Mapping = live
        .iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| SEALERS.contains(&k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if kept.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc = Mapping::new();
    doc.insert("apiVersion".into(), api_version.into());
    doc.insert("kind".into(), "ClusterConfiguration".into());
    doc.extend(kept);
    Ok(format!(
        "{text}---\n# The running cluster's own settings (kube-system/kubeadm-config), read by `sealer gen`.\n{}",
        serde_yaml::to_string(&Yaml::Mapping(doc))?
    ))
}

/// The members' kubeadm records as an apply would have left them, with what the hosts hold where it
/// differs from what sealer would do: where each member's `/etc/hosts` sends the registry's name.
fn imported(graph: &ResourceGraph, cf: &Clusterfile, running: &Running) -> Result<Vec<StoredResource>> {
    let mut records = Vec::new();
    for host in &cf.cluster.hosts {
        let init = Address::new(Kind::KubeadmInit, host.ip.to_string());
        let join = Address::new(Kind::KubeadmJoin, host.ip.to_string());
        let address = if graph.get(&init).is_some() { init } else { join };
        let resource = graph.get(&address).with_context(|| format!("the graph has no {address}"))?;
        let mut attributes: Attributes = resource.attributes.clone();
        if address.kind == Kind::KubeadmJoin {
            let entry = running.registry_entries.get(&host.ip).copied().flatten();
            let mut join = schema::KubeadmJoin::from_attributes(&attributes)?;
            join.first_master = Some(entry.map(|ip| ip.to_string()).unwrap_or_default());
            attributes = join.to_attributes();
        }
        if let Some(unknown) = attributes.iter().find(|(_, v)| matches!(v, Value::Unknown)) {
            bail!("{address}: `{}` is only known after an apply", unknown.0);
        }
        records.push(StoredResource {
            depends_on: graph.depends_on(&address),
            address,
            host: Some(host.ip),
            status: ResourceStatus::Ready,
            attributes,
        });
    }
    Ok(records)
}

/// Under the cluster's lock, with its state still empty, writes the Clusterfile, then `records` in one
/// transaction; a failed write of the records takes the Clusterfile back. Returns the state's serial.
fn record(ws: &Workspace, prepared: &Prepared, records: &[StoredResource]) -> Result<u64> {
    let cluster = &prepared.cluster;
    let mut store = ws.open_state()?;
    let lock = store.lock(cluster, &super::who(), std::process::id(), &super::command_line())?;
    super::say_replaced(&lock);
    let mut write = || -> Result<u64> {
        if store.load(cluster)?.is_some_and(|s| !s.resources.is_empty()) {
            bail!("cluster `{cluster}` is already in the state: another command wrote it meanwhile");
        }
        prepared.write()?;
        let writes: Vec<ResourceWrite<'_>> =
            records.iter().map(|r| ResourceWrite { from: None, address: &r.address, resource: Some(r) }).collect();
        store.write_resources(&lock, &writes).or_else(|e| {
            // Neither or both: a Clusterfile without its imported records would install Kubernetes again.
            prepared.restore()?;
            Err(e.into())
        })
    };
    let written = write();
    // Once written, the import stands: a lock left behind is replaced by the next command, and says so.
    let _ = store.unlock(&lock);
    written
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sealer_providers::cluster::RunningNode;

    use super::*;

    const FLAGS: &str =
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: k:v1.29.14\n  \
                         hosts:\n  - ips: [10.0.0.2]\n    roles: [master]\n  - ips: [10.0.0.3]\n    roles: [node]\n";
    const LIVE: &str = "kubernetesVersion: v1.29.14\ncontrolPlaneEndpoint: apiserver.cluster.local:6443\n\
                        networking:\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n  dnsDomain: cluster.local\n\
                        apiServer:\n  certSANs: [hand.example.test]\n  extraArgs: {v: '4'}\netcd: {local: {dataDir: /x}}\n";

    fn node(name: &str, ip: &str, control_plane: bool) -> RunningNode {
        RunningNode {
            name: name.into(),
            ip: ip.parse().ok(),
            control_plane,
            ready: true,
            kubelet_version: "v1.29.14".into(),
        }
    }

    fn running(nodes: Vec<RunningNode>) -> Running {
        Running { nodes, cluster_configuration: LIVE.into(), registry_entries: BTreeMap::new() }
    }

    #[test]
    fn a_cluster_the_flags_declare_whole_at_the_images_version_is_taken_over() {
        let cf = parse(FLAGS).unwrap();
        let live: Yaml = serde_yaml::from_str(LIVE).unwrap();
        let ok = running(vec![node("m", "10.0.0.2", true), node("n", "10.0.0.3", false)]);
        assert_eq!(check(&cf, &ok, &live, "v1.29.14"), Vec::<String>::new());
        assert_eq!(check(&cf, &ok, &live, "1.29.14"), Vec::<String>::new(), "with or without the v");
    }

    #[test]
    fn every_reason_a_cluster_cannot_be_taken_over_is_named_at_once() {
        let cf = parse(FLAGS).unwrap();
        let mut live: Yaml = serde_yaml::from_str(LIVE).unwrap();
        live["controlPlaneEndpoint"] = "10.0.0.2:6443".into();
        let mut stale = node("n", "10.0.0.3", true);
        stale.ready = false;
        stale.kubelet_version = "v1.28.1".into();
        let other = running(vec![stale, node("x", "10.0.0.9", false), node("y", "", false)]);
        let problems = check(&cf, &other, &live, "v1.30.1").join("\n");
        for expected in [
            "10.0.0.2 is not a node of the cluster",
            "10.0.0.3 (n) is a control-plane node: give it with --masters",
            "10.0.0.3 (n) is not Ready",
            "10.0.0.3 (n) runs kubelet v1.28.1, and image `k:v1.29.14` carries Kubernetes v1.30.1",
            "node x (10.0.0.9) is not in --masters or --nodes",
            "node y reports no InternalIP",
            "the cluster's ClusterConfiguration is Kubernetes `v1.29.14`, and image `k:v1.29.14` carries v1.30.1",
            "the cluster's controlPlaneEndpoint is `10.0.0.2:6443`",
        ] {
            assert!(problems.contains(expected), "{expected}:\n{problems}");
        }
    }

    #[test]
    fn the_clusterfile_keeps_the_clusters_own_configuration_but_its_version() {
        let live: Yaml = serde_yaml::from_str(LIVE).unwrap();
        let text = with_live_settings(FLAGS, &live).unwrap();
        let cf = parse(&text).unwrap();
        let [doc] = cf.kubeadm.as_slice() else { panic!("one kubeadm document: {text}") };
        assert_eq!((doc.api_version.as_str(), doc.kind.as_str()), ("kubeadm.k8s.io/v1beta3", "ClusterConfiguration"));
        let config = serde_yaml::to_string(&doc.body).unwrap();
        for kept in ["podSubnet: 10.244.0.0/16", "serviceSubnet: 10.96.0.0/12", "dnsDomain: cluster.local"] {
            assert!(config.contains(kept), "{kept}: {config}");
        }
        for kept in ["hand.example.test", "extraArgs", "dataDir: /x", "controlPlaneEndpoint"] {
            assert!(config.contains(kept), "{kept}: {config}");
        }
        assert!(!config.contains("kubernetesVersion"), "the version is the image's: {config}");
        let bare: Yaml = serde_yaml::from_str("kubernetesVersion: v1.29.14\n").unwrap();
        assert_eq!(with_live_settings(FLAGS, &bare).unwrap(), FLAGS, "nothing to keep, no document");
    }
}

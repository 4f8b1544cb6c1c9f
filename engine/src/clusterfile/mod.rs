//! The Clusterfile: what the user declares, read from every YAML document of one file.

mod ip;
mod parse;
mod reader;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

pub use ip::{expand_item, expand_list, IpListError, MAX_ADDRESSES_PER_FILE, MAX_RANGE_LEN};
pub use parse::{add_image_plugins, parse, Parsed, MAX_IMAGE_PLUGIN_FILES};

/// A secret value (ssh password, key passphrase). It has no `Display`, and its `Debug` never shows it, so
/// it cannot reach logs, plans or errors by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The clear value, for the one place that needs it: authenticating to a host.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Master,
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Node => "node",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ssh {
    pub user: String,
    pub password: Option<Secret>,
    pub private_key: Option<String>,
    pub key_passphrase: Option<Secret>,
    pub port: u16,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh { user: "root".into(), password: None, private_key: None, key_passphrase: None, port: 22 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub ip: IpAddr,
    pub role: Role,
    pub ssh: Ssh,
    /// Cluster env with the host group's env over it.
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub api_version: String,
    pub image: String,
    pub cmd_args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// In declaration order; the first master is the first host with role master.
    pub hosts: Vec<Host>,
    pub pod_cidr: Option<String>,
    pub svc_cidr: Option<String>,
    pub cert_sans: Vec<String>,
    /// The cluster-wide `spec.ssh`, for hosts the Clusterfile no longer lists (scale-down, destroy).
    pub ssh: Ssh,
    /// `spec.apps`: application images delivered in this order once the cluster is complete.
    pub apps: Vec<String>,
}

/// The name an application image has in the state (`app.NAME`): its repository's last component,
/// `127.0.0.1:5000/team/nginx-app:1.0` → `nginx-app`, so that a new tag is an update of the same app.
pub fn app_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

impl Cluster {
    pub fn first_master(&self) -> Option<&Host> {
        self.hosts.iter().find(|h| h.role == Role::Master)
    }
}

/// The moments of an install (and of a tear-down) at which plugins run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Originally,
    PreInstall,
    PreInit,
    PreJoin,
    PostJoin,
    PreGuest,
    PostInstall,
    PreClean,
    PostClean,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Originally,
        Phase::PreInstall,
        Phase::PreInit,
        Phase::PreJoin,
        Phase::PostJoin,
        Phase::PreGuest,
        Phase::PostInstall,
        Phase::PreClean,
        Phase::PostClean,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Originally => "Originally",
            Phase::PreInstall => "PreInstall",
            Phase::PreInit => "PreInit",
            Phase::PreJoin => "PreJoin",
            Phase::PostJoin => "PostJoin",
            Phase::PreGuest => "PreGuest",
            Phase::PostInstall => "PostInstall",
            Phase::PreClean => "PreClean",
            Phase::PostClean => "PostClean",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    /// Clean phases run when their host leaves the cluster, not when it is installed.
    pub fn runs_on_delete(self) -> bool {
        matches!(self, Phase::PreClean | Phase::PostClean)
    }
}

/// Plugin types that become `plugin` resources (HOSTNAME, LABEL and TAINT become their own kinds).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PluginType {
    Shell,
    ClusterCheck,
    Etcd,
    /// An executable of that name in the image's `plugins/` directory.
    OutOfTree(String),
}

impl PluginType {
    pub fn name(&self) -> &str {
        match self {
            PluginType::Shell => "SHELL",
            PluginType::ClusterCheck => "CLUSTERCHECK",
            PluginType::Etcd => "ETCD",
            PluginType::OutOfTree(name) => name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugin {
    pub name: String,
    pub plugin_type: PluginType,
    pub phases: Vec<Phase>,
    /// The hosts `spec.on` selected, in cluster order.
    pub hosts: Vec<IpAddr>,
    pub data: String,
    /// `spec.on: key=value[,key=value]`: `hosts` are the hosts whose node labels match, resolved again at
    /// plan time with the labels the cluster really has ([`Clusterfile::select_by_labels`]).
    pub label_selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    pub pairs: Vec<(String, String)>,
    /// Where `spec.on` is, for the warning when it matches no host.
    pub location: crate::diagnostic::Location,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

/// Taints declared for one host: those it must carry and those (`key:Effect-`) it must not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTaints {
    pub present: BTreeSet<Taint>,
    pub absent: BTreeSet<Taint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigStrategy {
    Overwrite,
    Merge,
}

impl ConfigStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigStrategy::Overwrite => "overwrite",
            ConfigStrategy::Merge => "merge",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigProcess {
    ToJson,
    ToBase64,
    ToSecret,
}

impl ConfigProcess {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigProcess::ToJson => "toJson",
            ConfigProcess::ToBase64 => "toBase64",
            ConfigProcess::ToSecret => "toSecret",
        }
    }
}

/// A `Config` document: a file of the image rootfs to overwrite or merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    pub name: String,
    pub path: String,
    pub data: String,
    pub strategy: ConfigStrategy,
    pub process: Vec<ConfigProcess>,
    /// For a `toSecret` document: a keyed digest of its data (set by the caller with the user's state
    /// key), which plans compare instead of the data: the data itself is in no plan and no state.
    pub secret_digest: Option<String>,
}

impl ConfigFile {
    /// Its data becomes a Kubernetes Secret: it is a secret itself.
    pub fn is_secret(&self) -> bool {
        self.process.contains(&ConfigProcess::ToSecret)
    }
}

/// A partial kubeadm (or kube-proxy / kubelet) document, kept as YAML to merge over the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeadmDocument {
    pub api_version: String,
    pub kind: String,
    pub body: serde_yaml::Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clusterfile {
    pub cluster: Cluster,
    pub plugins: Vec<Plugin>,
    pub hostnames: BTreeMap<IpAddr, String>,
    pub labels: BTreeMap<IpAddr, BTreeMap<String, String>>,
    pub taints: BTreeMap<IpAddr, HostTaints>,
    pub configs: Vec<ConfigFile>,
    pub kubeadm: Vec<KubeadmDocument>,
}

impl Clusterfile {
    /// Resolves the label selectors of the plugins against the labels each host will have: those the
    /// cluster has now (`live`, read by refresh; empty for a cluster that does not exist yet), the ones
    /// kubeadm puts on every master for `kubernetes_version`, and those LABEL plugins declare. Returns a
    /// warning for each selector that matches no host: that plugin runs nowhere.
    pub fn select_by_labels(
        &mut self,
        live: &BTreeMap<IpAddr, BTreeMap<String, String>>,
        kubernetes_version: &str,
    ) -> Vec<crate::diagnostic::Diagnostic> {
        let kubeadm_labels = crate::kubeadm::master_labels(kubernetes_version);
        let hosts = &self.cluster.hosts;
        let labels_of = |h: &Host| {
            let mut labels: BTreeMap<&str, &str> = BTreeMap::new();
            if h.role == Role::Master {
                labels.extend(kubeadm_labels.iter().map(|k| (*k, "")));
            }
            for source in [live.get(&h.ip), self.labels.get(&h.ip)].into_iter().flatten() {
                labels.extend(source.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            labels
        };
        let mut warnings = Vec::new();
        for plugin in &mut self.plugins {
            let Some(selector) = &plugin.label_selector else { continue };
            plugin.hosts = hosts
                .iter()
                .filter(|h| {
                    let labels = labels_of(h);
                    selector.pairs.iter().all(|(k, v)| {
                        labels.get(k.as_str()) == Some(&v.as_str()) || (k == "node-role" && v == h.role.as_str())
                    })
                })
                .map(|h| h.ip)
                .collect();
            if plugin.hosts.is_empty() {
                let on: Vec<String> = selector.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                warnings.push(crate::diagnostic::Diagnostic {
                    severity: crate::diagnostic::Severity::Warning,
                    location: selector.location.clone(),
                    message: format!("the label selector matches no host: plugin `{}` runs nowhere", plugin.name),
                    value: Some(crate::diagnostic::quoted_value(&on.join(","))),
                });
            }
        }
        warnings
    }
}

#[cfg(test)]
mod validation_tests;

//! The providers of every resource kind: one module per kind, each implementing [`KindProvider`] (read,
//! create, update, delete), all reaching hosts through one [`Remote`]. Each is idempotent: when the host
//! already holds what the change asks for, it reads and returns without mutating anything.

mod app;
mod app_status;
mod balancer;
mod config;
mod etcd;
#[cfg(test)]
mod fake;
mod guest;
mod hook_watch;
mod hooks;
mod host;
mod hostname;
mod image;
pub mod kube;
mod kubeadm;
mod node_meta;
mod plugin;
mod registry;
mod relay;
pub mod remote;
mod state_copy;
mod takeover;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sealer_engine::schema::{self, Schema};
use sealer_engine::{
    Action, Address, Attributes, ChainFuture, ChainProgress, Kind, Provider, ProviderFuture, ResourceChange,
    ResourceStatus,
};
use tokio::sync::OnceCell;

pub use app_status::{AppStatus, APPS_CONFIGMAP};
pub use balancer::carried_by as image_carries_balancer;
pub use hook_watch::{Context, Look, WatchedHook, Watching};
pub use hooks::{recorded_schedules, recorded_watches, ScheduledHook};
pub use relay::{relayed, relaying_hosts, CopyEvent, CopyProgress, Distribution};
pub use remote::{forget_unreachable_hosts, Remote, SshRemote};
pub use state_copy::STATE_CONFIGMAP;
pub use takeover::{Running, RunningNode};

use crate::error::{ProviderError, TransportError};
use crate::image::store::StoredImage;
use crate::shell::quote;
use crate::transport::ExecOutput;
use remote::Result;

/// Where a cluster lives on each host.
pub fn cluster_dir(cluster: &str) -> String {
    format!("/var/lib/sealer/{cluster}")
}

pub struct ClusterContext {
    pub cluster: String,
    pub first_master: IpAddr,
    /// Every master the Clusterfile declares, the first one included.
    pub masters: Vec<IpAddr>,
    pub image: Option<StoredImage>,
    /// Attributes recorded by earlier applies, for what this apply does not redo (node names).
    pub prior: BTreeMap<Address, Attributes>,
    pub log_dir: PathBuf,
    /// Deleting a `hostname` gives the host back the name it had before sealer set one.
    pub restore_hostnames: bool,
    /// The data of `toSecret` Config documents by name: plans and states never hold it.
    pub secret_configs: BTreeMap<String, String>,
    /// The application images of `spec.apps`, by name.
    pub apps: BTreeMap<String, StoredImage>,
    /// Every host of the cluster: the only addresses a relay of the image answers.
    pub hosts: Vec<IpAddr>,
    /// How the image reaches the hosts (relayed between them, or a direct copy each).
    pub distribution: Distribution,
    /// Hosts the plan says are gone (`Plan::forgotten`): their resources are forgotten when the host still
    /// does not answer.
    pub forgotten: std::collections::BTreeSet<IpAddr>,
}

/// What one resource kind does to a host. `read` reports what the host holds for a recorded resource
/// (refresh); `update` defaults to `create`, since every kind converges on its desired attributes.
pub(crate) trait KindProvider: Sync {
    /// The kind's attributes, as the engine's schema declares them.
    type Schema: Schema + Send + Sync;
    fn read(
        &self,
        _obs: &Observation<'_>,
        _ip: IpAddr,
        _recorded: &Self::Schema,
    ) -> impl Future<Output = Result<Option<Self::Schema>>> + Send {
        async { Ok(None) }
    }
    fn create(&self, cx: &Cx, ip: IpAddr, after: Self::Schema) -> impl Future<Output = Result<Self::Schema>> + Send;
    fn update(
        &self,
        cx: &Cx,
        ip: IpAddr,
        _before: &Self::Schema,
        after: Self::Schema,
    ) -> impl Future<Output = Result<Self::Schema>> + Send {
        self.create(cx, ip, after)
    }
    fn delete(&self, _cx: &Cx, _ip: IpAddr, _before: &Self::Schema) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// The delete of a resource whose host left the Clusterfile and does not answer (a dead machine): what
    /// it did on the host cannot be undone; what it did elsewhere (the cluster's node and etcd member) is.
    fn forget(&self, _cx: &Cx, _ip: IpAddr, _before: &Self::Schema) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Reads `attributes` of the resource at `address` as its kind's schema.
pub(crate) fn typed<S: Schema>(address: &Address, attributes: &Attributes) -> Result<S> {
    S::from_attributes(attributes).map_err(|source| ProviderError::Schema { address: address.to_string(), source })
}

/// Join credentials, from `kubeadm init` or freshly minted on the first master.
#[derive(Clone, Debug)]
pub(crate) struct JoinInfo {
    token: String,
    ca_hash: String,
    certificate_key: Option<String>,
}

/// What every kind shares during one apply or refresh: the context, the remote, the results so far.
pub(crate) struct Cx {
    ctx: ClusterContext,
    remote: Arc<dyn Remote>,
    results: Mutex<BTreeMap<Address, Attributes>>,
    join: tokio::sync::Mutex<Option<JoinInfo>>,
    logs: Mutex<HashMap<IpAddr, std::fs::File>>,
    relay: relay::Relay,
    /// Whether each host of `ctx.forgotten` was found gone by this apply's own probe.
    gone: tokio::sync::Mutex<HashMap<IpAddr, bool>>,
}

#[derive(Clone)]
pub struct ClusterProvider(Arc<Cx>);

impl ClusterProvider {
    pub fn new(mut ctx: ClusterContext, remote: Arc<dyn Remote>) -> Self {
        let relay = relay::Relay::new(std::mem::take(&mut ctx.distribution), ctx.hosts.clone());
        ClusterProvider(Arc::new(Cx {
            relay,
            ctx,
            remote,
            results: Mutex::new(BTreeMap::new()),
            join: tokio::sync::Mutex::new(None),
            logs: Mutex::new(HashMap::new()),
            gone: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }
}

/// Hosts a refresh reads at once: thousands of hosts must not mean thousands of SSH handshakes at once.
const REFRESH_CONNECTIONS: usize = 32;
/// The `KUBECONFIG` every command on a host gets (see `Cx::with_image_path`).
pub(crate) const KUBECONFIG_DEFAULT: &str = "KUBECONFIG=\"${KUBECONFIG:-/etc/kubernetes/admin.conf}\"";

/// What a refresh shares between the resources it reads: the cluster's nodes, listed once.
pub(crate) struct Observation<'a> {
    cx: &'a Cx,
    /// Whether the state records the cluster as created (else there is no API to ask).
    cluster_up: bool,
    nodes: OnceCell<Vec<kube::Node>>,
    apps: OnceCell<BTreeMap<String, app_status::AppStatus>>,
    /// The hosts this refresh runs nothing on but their hostname's read, which may then go without a shell
    /// ([`Remote::read`]): a shell opened for other reads would serve it too.
    lone: std::collections::BTreeSet<IpAddr>,
}

impl Observation<'_> {
    /// The stdout of `command`, which only reads `ip`: without a shell where it is alone (`lone`).
    async fn read_output(&self, ip: IpAddr, command: &str) -> Result<String> {
        if self.lone.contains(&ip) {
            self.cx.read_output(ip, command).await
        } else {
            self.cx.output(ip, command).await
        }
    }

    /// The cluster's nodes, read once per refresh.
    async fn all_nodes(&self) -> Result<&[kube::Node]> {
        let nodes =
            self.nodes.get_or_try_init(|| async { Ok::<_, ProviderError>(self.cx.nodes().await?.items) }).await?;
        Ok(nodes)
    }

    /// The components' status records (`kube-system/sealer-apps`), read once per refresh.
    async fn app_statuses(&self) -> Result<&BTreeMap<String, app_status::AppStatus>> {
        self.apps.get_or_try_init(|| app_status::read_all(self.cx)).await
    }

    /// The node whose InternalIP is `ip`.
    async fn node(&self, ip: IpAddr) -> Result<Option<&kube::Node>> {
        Ok(self.all_nodes().await?.iter().find(|n| n.internal_ip() == Some(ip.to_string().as_str())))
    }
}

/// What a refresh learned beyond the state: the labels every node of the cluster has now, and the hosts
/// the Clusterfile no longer has that did not answer (their resources are forgotten, not cleaned).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub node_labels: BTreeMap<IpAddr, BTreeMap<String, String>>,
    pub gone: std::collections::BTreeSet<IpAddr>,
}

impl ClusterProvider {
    /// Reads what the hosts really hold for the resources in `state` and writes it into `state`, so that
    /// a plan shows drift; returns the nodes' labels (for label selectors). Reads only; mutates nothing.
    pub async fn refresh(&self, state: &mut sealer_engine::State) -> std::result::Result<Observed, ProviderError> {
        let cx = &self.0;
        // The API is asked through the first master: one the cluster was initialised on, or a master of it
        // being promoted (the first is gone). A host that is neither has no API to ask.
        let first = cx.ctx.first_master.to_string();
        let cluster_up = state.resources.contains_key(&Address::new(Kind::KubeadmInit, first.clone()))
            || state.resources.values().any(|r| {
                r.address == Address::new(Kind::KubeadmJoin, first.clone())
                    && typed::<schema::KubeadmJoin>(&r.address, &r.attributes).is_ok_and(|j| j.is_master())
            });
        // Hostname and balancer reads run on their own host; the others ask the API on the first master.
        let busy: std::collections::BTreeSet<IpAddr> = (state.resources.values())
            .filter(|r| r.address.kind == Kind::Balancer)
            .filter_map(|r| r.host)
            .chain(cluster_up.then_some(cx.ctx.first_master))
            .collect();
        let lone = state.resources.values().filter_map(|r| r.host).filter(|ip| !busy.contains(ip)).collect();
        let obs = Observation { cx, cluster_up, nodes: OnceCell::new(), apps: OnceCell::new(), lone };
        let connections = tokio::sync::Semaphore::new(REFRESH_CONNECTIONS);
        let reads = state
            .resources
            .iter()
            // A tainted resource is replaced whatever the host holds.
            .filter(|(_, r)| r.status != ResourceStatus::Tainted)
            .filter_map(|(address, r)| Some((address.clone(), r.host?, r.attributes.clone())))
            .map(|(address, ip, recorded)| {
                let (obs, connections) = (&obs, &connections);
                async move {
                    let _permit = connections.acquire().await;
                    let read = read(obs, &address, ip, &recorded).await;
                    (address, read)
                }
            });
        let results = futures_util::future::join_all(reads).await;
        let mut observed = Observed::default();
        for (address, read) in results {
            let read = match read {
                // A host the Clusterfile no longer has may be dead: its record stands, and the plan says so.
                Err(ProviderError::Transport(TransportError::Unreachable { host, .. }))
                    if !cx.ctx.hosts.contains(&host) =>
                {
                    observed.gone.insert(host);
                    None
                }
                read => read?,
            };
            if let (Some(observed), Some(r)) = (read, state.resources.get_mut(&address)) {
                r.attributes = observed;
            }
        }
        if obs.cluster_up {
            for node in obs.all_nodes().await? {
                if let Some(ip) = node.internal_ip().and_then(|ip| ip.parse().ok()) {
                    observed.node_labels.insert(ip, node.metadata.labels.clone());
                }
            }
        }
        Ok(observed)
    }
}

async fn read(
    obs: &Observation<'_>,
    address: &Address,
    ip: IpAddr,
    recorded: &Attributes,
) -> Result<Option<Attributes>> {
    match address.kind {
        Kind::Hostname => read_as(&hostname::Hostname, obs, address, ip, recorded).await,
        Kind::Label => read_as(&node_meta::Labels, obs, address, ip, recorded).await,
        Kind::Taint => read_as(&node_meta::Taints, obs, address, ip, recorded).await,
        Kind::Guest => read_as(&guest::Guest, obs, address, ip, recorded).await,
        Kind::App => read_as(&app::App, obs, address, ip, recorded).await,
        Kind::Balancer => read_as(&balancer::Balancer, obs, address, ip, recorded).await,
        _ => Ok(None),
    }
}

async fn read_as<K: KindProvider>(
    k: &K,
    obs: &Observation<'_>,
    address: &Address,
    ip: IpAddr,
    recorded: &Attributes,
) -> Result<Option<Attributes>> {
    let typed = typed::<K::Schema>(address, recorded)?;
    let Some(observed) = k.read(obs, ip, &typed).await? else { return Ok(None) };
    // What the read changed, onto the record as it was: a refresh shows drift, never the defaults of
    // attributes an older record lacks.
    let mut record = recorded.clone();
    schema::patch(&mut record, &typed, &observed);
    Ok(Some(record))
}

/// Whether a `kubeadm-init` change's record was the host's join (a master promoted to first): the plan says
/// so with `previous_address`, and a record that has a member's role is one whatever says it (never
/// initialised, upgraded or reconfigured as a first master's).
fn promoted(change: &ResourceChange) -> bool {
    change.previous_address.as_ref().is_some_and(|a| a.kind == Kind::KubeadmJoin)
        || change
            .before
            .as_ref()
            .is_some_and(|b| schema::KubeadmJoin::from_attributes(b).is_ok_and(|j| !j.role.is_empty()))
}

/// Runs one change with the kind's provider: a replace is a delete, then a create.
async fn drive<K: KindProvider>(k: &K, cx: &Cx, change: &ResourceChange) -> Result<Option<Attributes>> {
    let ip = change.host.ok_or_else(|| ProviderError::NoHost { address: change.address.to_string() })?;
    let read = |a: &Option<Attributes>| typed::<K::Schema>(&change.address, a.as_ref().unwrap_or(&Attributes::new()));
    let (before, after) = (read(&change.before)?, read(&change.after)?);
    let attrs = match change.action {
        Action::Delete if cx.gone(ip).await => {
            k.forget(cx, ip, &before).await?;
            return Ok(None);
        }
        Action::Delete => {
            k.delete(cx, ip, &before).await?;
            return Ok(None);
        }
        Action::Replace => {
            k.delete(cx, ip, &before).await?;
            k.create(cx, ip, after).await?
        }
        Action::Create => k.create(cx, ip, after).await?,
        Action::Update => k.update(cx, ip, &before, after).await?,
        Action::NoOp => return Ok(change.after.clone()),
    };
    Ok(Some(attrs.to_attributes()))
}

impl Cx {
    async fn apply(&self, change: &ResourceChange) -> Result<Option<Attributes>> {
        let attrs = match change.kind {
            Kind::Host => drive(&host::Host, self, change).await?,
            Kind::Hostname => drive(&hostname::Hostname, self, change).await?,
            Kind::Image => drive(&image::Image, self, change).await?,
            Kind::Config => drive(&config::Config, self, change).await?,
            Kind::Registry => drive(&registry::Registry, self, change).await?,
            Kind::KubeadmInit if promoted(change) => self.promote(change).await?,
            Kind::KubeadmInit => drive(&kubeadm::Init, self, change).await?,
            Kind::KubeadmJoin => drive(&kubeadm::Join, self, change).await?,
            Kind::Label => drive(&node_meta::Labels, self, change).await?,
            Kind::Taint => drive(&node_meta::Taints, self, change).await?,
            Kind::Plugin => drive(&plugin::Plugin, self, change).await?,
            Kind::Guest => drive(&guest::Guest, self, change).await?,
            Kind::Hooks => drive(&hooks::Hooks, self, change).await?,
            Kind::App => drive(&app::App, self, change).await?,
            Kind::Balancer => drive(&balancer::Balancer, self, change).await?,
        };
        if let Some(attrs) = &attrs {
            self.results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(change.address.clone(), attrs.clone());
        }
        Ok(attrs)
    }

    /// `kubeadm-init.IP` of a master whose record was its join: the first master is gone, and this one is
    /// promoted (see [`kubeadm::Init::promote`]).
    async fn promote(&self, change: &ResourceChange) -> Result<Option<Attributes>> {
        let ip = change.host.ok_or_else(|| ProviderError::NoHost { address: change.address.to_string() })?;
        let empty = Attributes::new();
        let before = typed::<schema::KubeadmJoin>(&change.address, change.before.as_ref().unwrap_or(&empty))?;
        let after = typed::<schema::KubeadmInit>(&change.address, change.after.as_ref().unwrap_or(&empty))?;
        Ok(Some(kubeadm::Init.promote(self, ip, &before, after).await?.to_attributes()))
    }

    /// Appends to the host's command log (0600 in a 0700 directory: outputs may name cluster internals).
    fn log(&self, ip: IpAddr, line: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = match logs.entry(ip) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match crate::private::append_private(&self.ctx.log_dir.join(format!("{ip}.log"))) {
                    Ok(f) => e.insert(f),
                    Err(_) => return,
                }
            }
        };
        let _ = writeln!(file, "{line}");
    }

    /// Runs `command` on `ip`, logging it and its output; a non-zero exit is an error naming the host.
    async fn run(&self, ip: IpAddr, command: &str, stdin: &[u8]) -> Result<ExecOutput> {
        let out = self.run_status(ip, command, stdin).await?;
        remote::succeeded(ip, command, out)
    }

    /// Runs `command` on `ip`, logging it and its output, whatever its exit status.
    async fn run_status(&self, ip: IpAddr, command: &str, stdin: &[u8]) -> Result<ExecOutput> {
        self.logged(ip, command, self.remote.exec(ip, command, stdin)).await
    }

    /// What `running` (`command` on `ip`) gives, with the command, its output or its failure logged.
    async fn logged(
        &self,
        ip: IpAddr,
        command: &str,
        running: impl std::future::Future<Output = Result<ExecOutput>>,
    ) -> Result<ExecOutput> {
        self.log(ip, &format!("$ {command}"));
        let started = std::time::Instant::now();
        let out = running.await.inspect_err(|e| self.log_failure(ip, started, e))?;
        self.log_output(ip, &out, started);
        Ok(out)
    }

    fn log_failure(&self, ip: IpAddr, started: std::time::Instant, e: &ProviderError) {
        let line = format!("# failed after {:.1} s: {e}", started.elapsed().as_secs_f64());
        self.log(ip, &crate::redact::credentials(&line));
    }

    /// Logs what a command printed and how it ended. Join credentials (kubeadm prints them) are masked;
    /// the rest of the output is kept.
    fn log_output(&self, ip: IpAddr, out: &ExecOutput, started: std::time::Instant) {
        let (stdout, stderr) = (out.stdout_text(), out.stderr_text());
        if !stdout.is_empty() {
            self.log(ip, &crate::redact::credentials(&stdout));
        }
        if !stderr.is_empty() {
            self.log(ip, &crate::redact::credentials(&stderr));
        }
        // How long each command took tells where an apply's time went.
        self.log(ip, &format!("# exit {} after {:.1} s", out.status, started.elapsed().as_secs_f64()));
    }

    /// The trimmed stdout of `command`.
    async fn output(&self, ip: IpAddr, command: &str) -> Result<String> {
        Ok(self.run(ip, command, b"").await?.stdout_text())
    }

    /// The stdout of `command`, a read run by [`Remote::read`] (the caller knows the host has nothing else
    /// to run for a while), logged; an error when it exits non-zero.
    async fn read_output(&self, ip: IpAddr, command: &str) -> Result<String> {
        let out = self.logged(ip, command, self.remote.read(ip, command)).await?;
        Ok(remote::succeeded(ip, command, out)?.stdout_text())
    }

    /// The trimmed stdout of a command that prints a secret no pattern can mask (a secret Config's file):
    /// the log records the command and its status, never what it printed.
    async fn secret_output(&self, ip: IpAddr, command: &str) -> Result<String> {
        self.log(ip, &format!("$ {command}"));
        let out = self.remote.exec(ip, command, b"").await?;
        self.log(ip, &format!("# exit {} (output withheld: it may hold secrets)", out.status));
        if out.status != 0 {
            return Err(ProviderError::Command {
                host: ip,
                command: command.to_string(),
                status: out.status,
                detail: "(output withheld: it may hold secrets)".into(),
            });
        }
        Ok(out.stdout_text())
    }

    /// Whether `ip` is one the plan said is gone and still does not answer: a fresh connection is tried
    /// (not the process's memory of an earlier failure), once per apply.
    async fn gone(&self, ip: IpAddr) -> bool {
        if !self.ctx.forgotten.contains(&ip) || self.ctx.hosts.contains(&ip) {
            return false;
        }
        let mut verdicts = self.gone.lock().await;
        if let Some(gone) = verdicts.get(&ip) {
            return *gone;
        }
        remote::forget_unreachable_host(ip);
        let gone = matches!(
            self.remote.exec(ip, "true", b"").await,
            Err(ProviderError::Transport(TransportError::Unreachable { .. }))
        );
        if gone {
            self.log(ip, "# the host does not answer and left the Clusterfile: its resources are forgotten");
        }
        verdicts.insert(ip, gone);
        gone
    }

    /// Whether `test_expression` (a `test` argument list) holds on `ip`.
    async fn holds(&self, ip: IpAddr, test_expression: &str) -> Result<bool> {
        Ok(self.output(ip, &format!("test {test_expression} && echo yes || echo no")).await? == "yes")
    }

    async fn upload(&self, ip: IpAddr, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.log(ip, &format!("# upload {path} ({} bytes, mode {mode:o})", content.len()));
        self.remote.upload(ip, path, content, mode).await
    }

    fn rootfs(&self) -> String {
        format!("{}/rootfs", cluster_dir(&self.ctx.cluster))
    }

    /// The command with the image's own tools (kubeadm, kubectl) first on the PATH, and kubectl reaching
    /// the cluster on a master unless the caller's environment names a kubeconfig: the admin kubeconfig
    /// kubeadm wrote, by its path, as no `$HOME` can be relied on (a sudo user's, one shared by hosts).
    fn with_image_path(&self, command: &str) -> String {
        format!("export PATH={}/bin:$PATH {KUBECONFIG_DEFAULT}; {command}", quote(&self.rootfs()))
    }

    fn image(&self) -> Result<&StoredImage> {
        self.ctx.image.as_ref().ok_or(ProviderError::NoImage)
    }

    /// What this apply made of `S` at `key`, or else what an earlier apply recorded.
    fn known<S: Schema>(&self, key: &str) -> Option<S> {
        let address = Address::new(S::KIND, key);
        let results = self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let attributes = results.get(&address).or_else(|| self.ctx.prior.get(&address))?;
        S::from_attributes(attributes).ok()
    }

    /// The name of the host's node: its `hostname`, as this or an earlier apply learned it.
    fn known_node_name(&self, ip: IpAddr) -> Option<String> {
        self.known::<schema::Hostname>(&ip.to_string()).and_then(|h| h.name.known().cloned())
    }

    async fn node_name(&self, ip: IpAddr) -> Result<String> {
        if let Some(name) = self.known_node_name(ip) {
            return Ok(name);
        }
        self.output(ip, "hostname").await
    }

    async fn kubectl(&self, args: &str) -> Result<String> {
        self.output(self.ctx.first_master, &self.with_image_path(&format!("kubectl {args}"))).await
    }

    /// `kubectl get ARGS -o json`, parsed.
    async fn get<T: serde::de::DeserializeOwned>(&self, args: &str) -> Result<T> {
        let json = self.kubectl(&format!("get {args} -o json")).await?;
        serde_json::from_str(&json).map_err(|e| ProviderError::Unexpected {
            host: self.ctx.first_master,
            what: format!("kubectl get {args}"),
            message: format!("invalid JSON: {e}"),
        })
    }

    async fn nodes(&self) -> Result<kube::List<kube::Node>> {
        self.get("nodes").await
    }

    /// Makes `/etc/hosts` of `ip` resolve `name` to `address`, replacing an older entry for `name`.
    async fn hosts_entry(&self, ip: IpAddr, name: &str, address: IpAddr) -> Result<()> {
        let line = format!("{address} {name}");
        let (q, qn) = (quote(&line), quote(name));
        let command = format!(
            "grep -qxF {q} /etc/hosts || {{ sed -i \"/ {qn}\\$/d\" /etc/hosts; printf '%s\\n' {q} >> /etc/hosts; }}"
        );
        self.run(ip, &command, b"").await.map(|_| ())
    }
}

impl ClusterProvider {
    /// Stops the relays this apply started and removes their copies (call it once the apply ended,
    /// whatever its outcome). Returns the hosts where that failed: their relay exits on its own when idle.
    /// The cluster's nodes, as its API has them (asked through the first master).
    pub async fn nodes(&self) -> std::result::Result<Vec<kube::Node>, ProviderError> {
        Ok(self.0.nodes().await?.items)
    }

    pub async fn stop_relays(&self) -> Vec<(IpAddr, ProviderError)> {
        self.0.relay.stop(&self.0).await
    }
}

impl Provider for ClusterProvider {
    fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture {
        let cx = self.0.clone();
        Box::pin(async move { cx.apply(&change).await.map_err(Into::into) })
    }

    fn chain_key(&self, change: &ResourceChange) -> Option<String> {
        plugin::chains(change).then(|| change.host.map(|ip| ip.to_string())).flatten()
    }

    fn apply_chain(&self, changes: Vec<Arc<ResourceChange>>, progress: ChainProgress) -> ChainFuture {
        let cx = self.0.clone();
        Box::pin(async move { cx.shell_chain(&changes, &progress).await })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building blocks of the kinds' unit tests.
    use super::*;
    pub use sealer_engine::Value;

    pub const M1: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    pub const M2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));
    pub const N1: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5));

    pub fn context(image: Option<StoredImage>, log_dir: &std::path::Path) -> ClusterContext {
        ClusterContext {
            cluster: "c".into(),
            first_master: M1,
            masters: vec![M1, M2],
            image,
            prior: BTreeMap::new(),
            log_dir: log_dir.to_path_buf(),
            restore_hostnames: false,
            secret_configs: BTreeMap::new(),
            apps: BTreeMap::new(),
            hosts: vec![M1, M2, N1],
            distribution: Distribution::default(),
            forgotten: Default::default(),
        }
    }

    /// A provider over `remote`, with logs in a temporary directory kept alive by the returned guard.
    pub fn provider(remote: Arc<fake::Scripted>) -> (ClusterProvider, tempfile::TempDir) {
        let logs = tempfile::tempdir().unwrap();
        (ClusterProvider::new(context(None, logs.path()), remote), logs)
    }

    pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    pub fn change(
        kind: Kind,
        key: &str,
        host: IpAddr,
        action: Action,
        before: Option<Attributes>,
        after: Option<Attributes>,
    ) -> Arc<ResourceChange> {
        Arc::new(ResourceChange {
            address: Address::new(kind, key),
            kind,
            host: Some(host),
            action,
            reason: sealer_engine::Reason::CreateBecauseNotInState,
            before,
            after,
            replace_paths: vec![],
            previous_address: None,
            depends_on: vec![],
        })
    }

    pub async fn apply(
        p: &ClusterProvider,
        change: Arc<ResourceChange>,
    ) -> std::result::Result<Option<Attributes>, sealer_engine::BoxError> {
        p.apply(change).await
    }

    /// The message of a change that must fail.
    pub async fn failure(p: &ClusterProvider, change: Arc<ResourceChange>) -> String {
        match p.apply(change).await {
            Ok(_) => panic!("the change succeeded"),
            Err(e) => e.to_string(),
        }
    }

    /// `changes` applied as an apply does (the executor's walk, chains included) with `p`: the report, and
    /// each recorded change's key with whether it was recorded tainted.
    pub async fn walk(
        p: ClusterProvider,
        changes: Vec<ResourceChange>,
    ) -> (sealer_engine::ApplyReport, Vec<(String, bool)>) {
        struct Quiet;
        impl sealer_engine::Reporter for Quiet {
            fn event(&self, _: &sealer_engine::ApplyEvent) {}
        }
        let plan = sealer_engine::Plan::against(&sealer_engine::State::empty("c"), changes);
        let mut recorded = Vec::new();
        let report = sealer_engine::Executor { parallelism: 4, drain: std::time::Duration::from_secs(5) }
            .run(&plan, Arc::new(p), Arc::new(Quiet), Default::default(), |batch| {
                let keys = batch
                    .iter()
                    .map(|(c, done)| (c.address.key.clone(), *done == sealer_engine::Completion::FailedPartway));
                recorded.extend(keys);
                Ok(())
            })
            .await;
        (report, recorded)
    }

    pub use super::fake::Scripted;
}

#[cfg(test)]
mod refresh_tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Address, Kind, ResourceStatus, State, StoredResource, Value};

    use super::testing::*;

    fn stored(kind: Kind, ip: std::net::IpAddr, attributes: sealer_engine::Attributes) -> StoredResource {
        let key = ip.to_string();
        StoredResource {
            address: Address::new(kind, key),
            host: Some(ip),
            status: ResourceStatus::Ready,
            attributes,
            depends_on: vec![],
        }
    }

    #[tokio::test]
    async fn refresh_reads_hostnames_and_one_node_list_for_every_label_and_taint() {
        let nodes = r#"{"items":[{"metadata":{"name":"node-1","labels":{"disk":"ssd"}},
            "spec":{"taints":[{"key":"a","effect":"NoSchedule"}]},
            "status":{"addresses":[{"type":"InternalIP","address":"10.0.0.5"}]}}]}"#;
        let remote = Arc::new(Scripted::default().on_host(N1, "hostname", "renamed").on("get nodes", nodes));
        let (p, _logs) = provider(remote.clone());
        let mut state = State::empty("c");
        let labels = BTreeMap::from([("disk".to_string(), "ssd".to_string()), ("zone".to_string(), "a".to_string())]);
        for r in [
            stored(Kind::KubeadmInit, M1, attrs([])),
            stored(Kind::Hostname, N1, attrs([("name", Value::text("node-1"))])),
            stored(Kind::Label, N1, attrs([("labels", Value::Map(labels))])),
            stored(
                Kind::Taint,
                N1,
                attrs([("taints", Value::List(vec!["a:NoSchedule".into(), "b:NoExecute".into()]))]),
            ),
        ] {
            state.resources.insert(r.address.clone(), r);
        }
        let mut tainted = stored(Kind::Hostname, M1, attrs([("name", Value::text("kept"))]));
        tainted.status = ResourceStatus::Tainted;
        state.resources.insert(tainted.address.clone(), tainted);
        p.refresh(&mut state).await.unwrap();
        let attr = |kind: Kind, ip: std::net::IpAddr, key: &str| {
            state.resources[&Address::new(kind, ip.to_string())].attributes[key].clone()
        };
        assert_eq!(attr(Kind::Hostname, N1, "name"), Value::text("renamed"));
        assert_eq!(attr(Kind::Hostname, M1, "name"), Value::text("kept"), "a tainted resource is not read");
        assert_eq!(attr(Kind::Label, N1, "labels"), Value::Map(BTreeMap::from([("disk".into(), "ssd".into())])));
        assert_eq!(attr(Kind::Taint, N1, "taints"), Value::List(vec!["a:NoSchedule".into()]));
        let listed = remote.calls().iter().filter(|c| c.contains("get nodes")).count();
        assert_eq!(listed, 1, "one node list for every label and taint: {:?}", remote.calls());
        let reads = remote.calls().into_iter().filter(|c| c.contains(": read ")).collect::<Vec<_>>();
        assert_eq!(reads.len(), 1, "N1's hostname only: {reads:?}");
        assert!(reads[0].starts_with(&format!("{N1}: read ")) && reads[0].contains("kernel/hostname"), "{reads:?}");
        // The records keep exactly their keys: a read adds none an older record lacks (the hostname's
        // `original`, the taint's `absent`), so a refresh-only plan shows drift and nothing else.
        let keys = |kind: Kind| state.resources[&Address::new(kind, N1.to_string())].attributes.len();
        assert_eq!((keys(Kind::Hostname), keys(Kind::Label), keys(Kind::Taint)), (1, 1, 1));
    }

    /// A hostname is read without a shell only where the refresh runs nothing else: not on the first master
    /// of a cluster that is up (the API's reads go there), nor on a host with a balancer to read.
    #[tokio::test]
    async fn only_a_host_that_has_nothing_else_to_read_reads_its_hostname_without_a_shell() {
        for (cluster_up, alone) in [(true, vec![M2]), (false, vec![M1, M2])] {
            let remote = Arc::new(Scripted::default().on("get nodes", r#"{"items":[]}"#));
            let (p, _logs) = provider(remote.clone());
            let mut state = State::empty("c");
            let mut records = vec![stored(Kind::Balancer, N1, attrs([]))];
            records.extend(cluster_up.then(|| stored(Kind::KubeadmInit, M1, attrs([]))));
            for ip in [M1, M2, N1] {
                records.push(stored(Kind::Hostname, ip, attrs([("name", Value::text("h"))])));
            }
            for r in records {
                state.resources.insert(r.address.clone(), r);
            }
            p.refresh(&mut state).await.unwrap();
            let hostname_reads = |prefix: &str| {
                let calls = remote.calls().into_iter().filter(|c| c.contains("kernel/hostname"));
                let mut hosts: Vec<_> = calls
                    .filter_map(|c| {
                        c.split_once(": ").filter(|(_, c)| c.starts_with(prefix)).map(|(h, _)| h.to_string())
                    })
                    .collect();
                hosts.sort();
                hosts
            };
            let mut shell =
                [M1, M2, N1].into_iter().filter(|ip| !alone.contains(ip)).map(|ip| ip.to_string()).collect::<Vec<_>>();
            shell.sort();
            assert_eq!(
                hostname_reads("read read "),
                alone.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
                "cluster up: {cluster_up}"
            );
            assert_eq!(hostname_reads("read -r"), shell, "cluster up: {cluster_up}");
        }
    }

    /// A recorded host the Clusterfile no longer has and that does not answer is named gone, its records
    /// kept; one the Clusterfile still has fails the refresh, naming it.
    #[tokio::test]
    async fn refresh_names_a_departed_host_that_does_not_answer_gone() {
        let remote = Arc::new(Scripted::default().down(M2).on("get nodes", r#"{"items":[]}"#));
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.hosts = vec![M1, N1];
        let p = super::ClusterProvider::new(ctx, remote.clone());
        let mut state = State::empty("c");
        for r in
            [stored(Kind::KubeadmInit, M1, attrs([])), stored(Kind::Hostname, M2, attrs([("name", Value::text("m1"))]))]
        {
            state.resources.insert(r.address.clone(), r);
        }
        let recorded = state.clone();
        let observed = p.refresh(&mut state).await.unwrap();
        assert_eq!(observed.gone, [M2].into());
        assert_eq!(state, recorded);

        let (p, _logs) = provider(remote);
        let error = p.refresh(&mut state).await.unwrap_err().to_string();
        assert!(error.contains("cannot reach `10.0.0.3:22`"), "{error}");
    }

    /// A component is as recorded while the cluster's `sealer-apps` entry says it is installed at that
    /// digest; a missing or failed entry is drift, read with one kubectl call per refresh.
    #[tokio::test]
    async fn components_whose_status_the_cluster_lost_or_failed_are_drift() {
        let apps = r#"{"data":{"guest":"{\"status\":\"installed\",\"digest\":\"sha256:g\",\"time\":1}",
            "app.web":"{\"status\":\"failed\",\"digest\":\"sha256:w\",\"time\":1}"}}"#;
        let remote =
            Arc::new(Scripted::default().on("get configmap sealer-apps", apps).on("get nodes", r#"{"items":[]}"#));
        let (p, _logs) = provider(remote.clone());
        let mut state = State::empty("c");
        let app = |name: &str, digest: &str| StoredResource {
            address: Address::new(Kind::App, name),
            host: Some(M1),
            status: ResourceStatus::Ready,
            attributes: attrs([("image", Value::text(format!("{name}:1"))), ("digest", Value::text(digest))]),
            depends_on: vec![],
        };
        for r in [
            stored(Kind::KubeadmInit, M1, attrs([])),
            stored(Kind::Guest, M1, attrs([("image_digest", Value::text("sha256:g"))])),
            app("web", "sha256:w"),
            app("db", "sha256:d"),
        ] {
            state.resources.insert(r.address.clone(), r);
        }
        p.refresh(&mut state).await.unwrap();
        let digest = |a: Address, key: &str| state.resources[&a].attributes[key].clone();
        assert_eq!(digest(Address::new(Kind::Guest, M1.to_string()), "image_digest"), Value::text("sha256:g"));
        assert_eq!(
            digest(Address::new(Kind::App, "web"), "digest"),
            Value::text("(failed in kube-system/sealer-apps)")
        );
        assert_eq!(
            digest(Address::new(Kind::App, "db"), "digest"),
            Value::text("(no status in kube-system/sealer-apps)")
        );
        assert_eq!(remote.calls().iter().filter(|c| c.contains("sealer-apps")).count(), 1);
    }
}

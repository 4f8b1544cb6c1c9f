//! `sealer exec`: one command on the cluster's hosts chosen by role, node label or address, over the same
//! SSH transport as `apply` (sudo for a non-root login, host keys pinned in the state), many hosts at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::error::bail;
use super::Result;
use futures_util::StreamExt as _;
use sealer_engine::clusterfile::Role;
use sealer_engine::{Clusterfile, State};
use sealer_providers::cluster::Remote as _;
use sealer_providers::ExecOutput;

use super::{hosts, Workspace};

/// Which hosts run the command: those matching every selector given (none given: every host).
#[derive(Debug, Default)]
pub struct Selection {
    pub roles: Vec<Role>,
    /// `key=value` node labels, as the cluster's API has them now.
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
}

pub struct ExecRequest {
    pub selection: Selection,
    /// Shell text, run by the host's shell as `ssh HOST CMD` would.
    pub command: String,
    pub parallelism: usize,
    pub timeout: Duration,
    pub strict_host_keys: bool,
}

/// How the command ended on one host: its output and status, or why it could not run there.
pub struct HostRun {
    pub ip: IpAddr,
    pub role: Role,
    pub outcome: Result<ExecOutput, sealer_providers::ProviderError>,
}

impl HostRun {
    /// The host's exit status; one the command never ran on counts as 255 (as `ssh` says it).
    pub fn status(&self) -> u32 {
        self.outcome.as_ref().map_or(255, |out| out.status)
    }
}

/// The hosts of `cf` that `selection` names, in the Clusterfile's order; an address that is not a host of
/// the cluster, and a selection that matches nothing, are errors.
fn select(ws: &Workspace, cf: &Clusterfile, state: &State, req: &ExecRequest) -> Result<Vec<(IpAddr, Role)>> {
    let sel = &req.selection;
    let unknown: Vec<String> =
        sel.ips.iter().filter(|ip| !cf.cluster.hosts.iter().any(|h| h.ip == **ip)).map(ToString::to_string).collect();
    if !unknown.is_empty() {
        bail!("not hosts of cluster `{}`: {}", cf.cluster.name, unknown.join(", "));
    }
    // Labels as the cluster's API has them now, by node address.
    let labelled: Option<BTreeMap<IpAddr, BTreeMap<String, String>>> = if sel.labels.is_empty() {
        None
    } else {
        let nodes = hosts::cluster_nodes(ws, cf, state, req.strict_host_keys)?;
        Some(nodes.into_iter().filter_map(|n| Some((n.internal_ip()?.parse().ok()?, n.metadata.labels))).collect())
    };
    let chosen: Vec<(IpAddr, Role)> = cf
        .cluster
        .hosts
        .iter()
        .filter(|h| sel.roles.is_empty() || sel.roles.contains(&h.role))
        .filter(|h| sel.ips.is_empty() || sel.ips.contains(&h.ip))
        .filter(|h| {
            labelled.as_ref().is_none_or(|nodes| {
                nodes.get(&h.ip).is_some_and(|labels| sel.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
        })
        .map(|h| (h.ip, h.role))
        .collect();
    if chosen.is_empty() {
        bail!("no host of cluster `{}` matches the selection", cf.cluster.name);
    }
    Ok(chosen)
}

/// Runs the command on the selected hosts, `parallelism` at a time; `done` sees each host as it finishes.
/// Returns every host's run, in the order they finished.
pub fn exec(
    ws: &Workspace,
    cf: &Clusterfile,
    req: &ExecRequest,
    mut done: impl FnMut(&HostRun),
) -> Result<Vec<HostRun>> {
    if req.command.trim().is_empty() {
        bail!("no command to run");
    }
    if req.command.contains('\0') {
        bail!("the command has a NUL byte, which no shell can run");
    }
    let state = super::recorded_state(ws, &cf.cluster.name)?;
    let chosen = select(ws, cf, &state, req)?;
    let targets = hosts::ssh_targets(ws, cf, &state, req.strict_host_keys)?;
    let remote = ws.remote(targets, req.timeout);
    ws.block_on(async {
        let runs = futures_util::stream::iter(chosen.into_iter().map(|(ip, role)| {
            let remote = remote.clone();
            async move {
                let outcome = remote.exec(ip, &req.command, b"").await;
                HostRun { ip, role, outcome }
            }
        }))
        .buffer_unordered(req.parallelism.max(1));
        futures_util::pin_mut!(runs);
        let mut all = Vec::new();
        while let Some(run) = runs.next().await {
            done(&run);
            all.push(run);
        }
        all
    })
}

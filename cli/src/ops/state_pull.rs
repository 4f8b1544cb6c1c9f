//! `state pull --from-cluster`: a lost local state rebuilt from the copy kept in the cluster, with its
//! lineage and serial, so that plans made elsewhere and plans here agree.

use std::net::IpAddr;

use anyhow::{bail, Context as _};
use sealer_engine::clusterfile::Role;
use sealer_engine::{Clusterfile, State};
use sealer_providers::cluster::STATE_CONFIGMAP;

use super::Workspace;

/// Imports the state kept by the cluster whose master is `ip`; returns it as imported.
pub fn pull(ws: &Workspace, cf: &Clusterfile, ip: IpAddr) -> anyhow::Result<State> {
    let name = cf.cluster.name.clone();
    if !cf.cluster.hosts.iter().any(|h| h.ip == ip && h.role == Role::Master) {
        bail!("`{ip}` is not a master of cluster `{name}`: the state copy is read with kubectl on a master");
    }
    if let Some(store) = ws.state.open_read_only()? {
        if store.load(&name)?.is_some() {
            bail!("the state `{}` already holds cluster `{name}`: pull only rebuilds a lost state", ws.state);
        }
    }
    let log_dir = std::env::temp_dir().join(format!("sealer-pull-{}", std::process::id()));
    let provider = super::hosts::api_provider(ws, cf, &State::empty(&name), false, ip, log_dir.clone())?;
    let read = super::runtime()?.block_on(provider.published_state());
    let _ = std::fs::remove_dir_all(&log_dir);
    let json =
        read.map_err(|e| anyhow::anyhow!("cannot read ConfigMap kube-system/{STATE_CONFIGMAP} on `{ip}`: {e}"))?;
    let state: State = serde_json::from_str(&json)
        .with_context(|| format!("ConfigMap kube-system/{STATE_CONFIGMAP} on `{ip}` is not a sealer state"))?;
    if state.cluster != name {
        bail!(
            "the cluster at `{ip}` keeps the state of cluster `{}`, the Clusterfile declares `{name}`",
            state.cluster
        );
    }
    let mut store = ws.state.open()?;
    let lock = store.lock(&name, &super::who(), std::process::id(), &super::command_line())?;
    let imported = store
        .import(&lock, &state, &[])
        .and_then(|()| store.record_history(&lock, &format!("state pulled from the cluster at {ip}")));
    store.unlock(&lock)?;
    imported?;
    Ok(state)
}

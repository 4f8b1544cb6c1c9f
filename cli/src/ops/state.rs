//! State operations beyond apply: a cluster's recorded state (`state list`, `state show`), `force-unlock`,
//! `state pull --from-cluster` (a lost local state rebuilt from the copy kept in the cluster) and `state
//! migrate` (to another backend), both keeping lineage and serial, so that saved plans and other working
//! copies stay valid.

use std::net::IpAddr;

use super::error::{bail, err, Context as _};
use super::Result;
use sealer_engine::clusterfile::Role;
use sealer_engine::{Clusterfile, State, StateStore};
use sealer_providers::cluster::STATE_CONFIGMAP;
use sealer_state::StateLocation;

use super::Workspace;

/// Imports the state kept by the cluster whose master is `ip`; returns it as imported.
pub fn pull(ws: &Workspace, cf: &Clusterfile, ip: IpAddr) -> Result<State> {
    let name = cf.cluster.name.clone();
    if !cf.cluster.hosts.iter().any(|h| h.ip == ip && h.role == Role::Master) {
        bail!("`{ip}` is not a master of cluster `{name}`: the state copy is read with kubectl on a master");
    }
    if let Some(store) = ws.state.open_read_only()? {
        if store.load(&name)?.is_some() {
            bail!("the state `{}` already holds cluster `{name}`: pull only rebuilds a lost state", ws.state);
        }
    }
    // A directory of its own with a name nobody can guess or plant a link at, removed when done.
    let logs = tempfile::Builder::new().prefix("sealer-pull-").tempdir()?;
    let provider = super::hosts::api_provider(ws, cf, &State::empty(&name), false, ip, logs.path().to_path_buf())?;
    let read = ws.block_on(provider.published_state())?;
    let json = read.map_err(|e| err!("cannot read ConfigMap kube-system/{STATE_CONFIGMAP} on `{ip}`: {e}"))?;
    let state: State = serde_json::from_str(&json)
        .with_context(|| format!("ConfigMap kube-system/{STATE_CONFIGMAP} on `{ip}` is not a sealer state"))?;
    // Anyone who may write ConfigMaps in kube-system could have edited it: checked like a Clusterfile.
    if let Err(problems) = state.check_imported() {
        bail!("the state kept at `{ip}` is refused: {}", problems.join("; "));
    }
    if state.cluster != name {
        bail!(
            "the cluster at `{ip}` keeps the state of cluster `{}`, the Clusterfile declares `{name}`",
            state.cluster
        );
    }
    let mut store = ws.open_state()?;
    let lock = store.lock(&name, &super::who(), std::process::id(), &super::command_line())?;
    super::say_replaced(&lock);
    let imported = store
        .import(&lock, &state, &[])
        .and_then(|()| store.record_history(&lock, &format!("state pulled from the cluster at {ip}")));
    store.unlock(&lock)?;
    imported?;
    Ok(state)
}

/// Copies every cluster of the workspace's state (or `only`) to `target` (a path or a `postgres://` URL)
/// under both locks; returns where that is, and each cluster's name and serial. The source is left as it
/// was.
pub fn migrate(ws: &Workspace, target: &str, only: Option<&str>) -> Result<(StateLocation, Vec<(String, u64)>)> {
    let target = StateLocation::parse(target);
    let migrated = migrate_to(ws, &target, only)?;
    Ok((target, migrated))
}

fn migrate_to(ws: &Workspace, target: &StateLocation, only: Option<&str>) -> Result<Vec<(String, u64)>> {
    if *target == ws.state {
        bail!("`--to {target}` is the state itself");
    }
    let mut source = match ws.state.open_read_only()? {
        Some(_) => ws.open_state()?,
        None => bail!("no state at `{}`: nothing to migrate", ws.state),
    };
    let clusters = match only {
        Some(name) => vec![name.to_string()],
        None => source.clusters()?,
    };
    if clusters.is_empty() {
        bail!("the state `{}` holds no cluster", ws.state);
    }
    let mut target = target.open()?;
    let command = super::command_line();
    let mut migrated = Vec::new();
    for name in clusters {
        let source_lock = source.lock(&name, &super::who(), std::process::id(), &command)?;
        super::say_replaced(&source_lock);
        let copied = copy_cluster(source.as_ref(), target.as_mut(), &name, &command);
        source.unlock(&source_lock)?;
        let serial = copied.with_context(|| format!("cluster `{name}` was not migrated"))?;
        migrated.push((name, serial));
    }
    Ok(migrated)
}

fn copy_cluster(source: &dyn StateStore, target: &mut dyn StateStore, name: &str, command: &str) -> Result<u64> {
    let state = source.load(name)?.with_context(|| format!("no cluster `{name}` in the state"))?;
    let history = source.history(name)?;
    let lock = target.lock(name, &super::who(), std::process::id(), command)?;
    let imported = target.import(&lock, &state, &history);
    target.unlock(&lock)?;
    imported?;
    Ok(state.serial)
}

/// The serial of `cluster`'s state (0 when there is none): it moves with every write, so a caller can tell
/// whether an apply changed anything.
pub fn serial(ws: &Workspace, cluster: &str) -> Result<u64> {
    Ok(match ws.state.open_read_only()? {
        Some(store) => store.load(cluster)?.map_or(0, |s| s.serial),
        None => 0,
    })
}

/// The recorded state of `cluster`, or of the only cluster the state holds.
pub fn load(ws: &Workspace, cluster: Option<&str>) -> Result<State> {
    let Some(store) = ws.state.open_read_only()? else {
        bail!("no state at `{}`: nothing was applied yet (or pass --state PATH|URL)", ws.state);
    };
    let name = match cluster {
        Some(name) => name.to_string(),
        None => {
            let mut names = store.clusters()?;
            match names.len() {
                0 => bail!("the state `{}` holds no cluster", ws.state),
                1 => names.remove(0),
                _ => bail!("the state holds several clusters ({}); choose one with --cluster", names.join(", ")),
            }
        }
    };
    store.load(&name)?.with_context(|| format!("no cluster `{name}` in the state"))
}

/// Releases the lock `id` whoever holds it (its holder is gone); returns what it was.
pub fn force_unlock(ws: &Workspace, id: &str) -> Result<sealer_engine::LockInfo> {
    if ws.state.open_read_only()?.is_none() {
        bail!("no state at `{}`", ws.state);
    }
    Ok(ws.state.open()?.force_unlock(id)?)
}

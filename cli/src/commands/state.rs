use std::io::BufRead;

use anyhow::{bail, Context as _};
use sealer_engine::{Address, StateStore};
use sealer_state::StateLocation;

use crate::args::{ClusterArg, ForceUnlockArgs, StateMigrateArgs, StatePullArgs, StateShowArgs};
use crate::{render, Context, Outcome};

fn open(location: &StateLocation) -> anyhow::Result<Box<dyn StateStore>> {
    match location.open_read_only()? {
        Some(store) => Ok(store),
        None => bail!("no state at `{location}`: nothing was applied yet (or pass --state PATH|URL)"),
    }
}

/// The cluster asked for, or the only one the state holds.
fn cluster(ctx: &Context, store: &dyn StateStore, arg: &ClusterArg) -> anyhow::Result<String> {
    if let Some(name) = &arg.cluster {
        return Ok(name.clone());
    }
    let mut names = store.clusters()?;
    match names.len() {
        0 => bail!("the state `{}` holds no cluster", ctx.state),
        1 => Ok(names.remove(0)),
        _ => bail!("the state holds several clusters ({}); choose one with --cluster", names.join(", ")),
    }
}

pub fn list(ctx: &Context, arg: ClusterArg) -> anyhow::Result<Outcome> {
    let store = open(&ctx.state)?;
    let name = cluster(ctx, store.as_ref(), &arg)?;
    let state = store.load(&name)?.with_context(|| format!("no cluster `{name}` in the state"))?;
    for address in state.resources.keys() {
        println!("{address}");
    }
    Ok(Outcome::Ok)
}

pub fn show(ctx: &Context, args: StateShowArgs) -> anyhow::Result<Outcome> {
    let address: Address = args.address.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let store = open(&ctx.state)?;
    let name = cluster(ctx, store.as_ref(), &args.cluster)?;
    let state = store.load(&name)?.with_context(|| format!("no cluster `{name}` in the state"))?;
    let Some(resource) = state.resources.get(&address) else {
        bail!("no resource `{address}` in the state of cluster `{name}`");
    };
    if args.json {
        println!("{}", render::json::stored_resource(resource)?);
    } else {
        print!("{}", render::human::stored_resource(resource));
    }
    Ok(Outcome::Ok)
}

pub fn force_unlock(ctx: &Context, args: ForceUnlockArgs) -> anyhow::Result<Outcome> {
    if !args.force {
        println!(
            "Do you really want to force-unlock lock `{}`?\nOnly do this when its holder is gone, or two applies may \
             corrupt the cluster. Only 'yes' will be accepted.\n  Enter a value: ",
            args.lock_id
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).context("cannot read the answer")?;
        if answer.trim() != "yes" {
            bail!("force-unlock cancelled");
        }
    }
    if ctx.state.open_read_only()?.is_none() {
        bail!("no state at `{}`", ctx.state);
    }
    let mut store = ctx.state.open()?;
    let released = store.force_unlock(&args.lock_id)?;
    println!("Released lock `{}` of cluster `{}`, held by {released}", released.id, released.cluster);
    Ok(Outcome::Ok)
}

/// Copies every cluster (or one) to another backend under both locks, keeping lineage and serial so that
/// saved plans and other working copies stay valid; the source is left as it was.
pub fn migrate(ctx: &Context, args: StateMigrateArgs) -> anyhow::Result<Outcome> {
    let target_location = StateLocation::parse(&args.to);
    if target_location == ctx.state {
        bail!("`--to {target_location}` is the state itself");
    }
    let mut source = match ctx.state.open_read_only()? {
        Some(_) => ctx.state.open()?,
        None => bail!("no state at `{}`: nothing to migrate", ctx.state),
    };
    let clusters = match &args.cluster {
        Some(name) => vec![name.clone()],
        None => source.clusters()?,
    };
    if clusters.is_empty() {
        bail!("the state `{}` holds no cluster", ctx.state);
    }
    let mut target = target_location.open()?;
    let command = super::command_line();
    for name in &clusters {
        let source_lock = source.lock(name, &super::who(), std::process::id(), &command)?;
        let copied = copy_cluster(source.as_ref(), target.as_mut(), name, &command);
        source.unlock(&source_lock)?;
        let serial = copied.with_context(|| format!("cluster `{name}` was not migrated"))?;
        println!("Migrated cluster `{name}` (serial {serial}) from {} to {target_location}", ctx.state);
    }
    println!("Use `--state {target_location}` (or SEALER_STATE) from now on; the old state was left unchanged.");
    Ok(Outcome::Ok)
}

fn copy_cluster(
    source: &dyn StateStore,
    target: &mut dyn StateStore,
    name: &str,
    command: &str,
) -> anyhow::Result<u64> {
    let state = source.load(name)?.with_context(|| format!("no cluster `{name}` in the state"))?;
    let history = source.history(name)?;
    let lock = target.lock(name, &super::who(), std::process::id(), command)?;
    let imported = target.import(&lock, &state, &history);
    target.unlock(&lock)?;
    imported?;
    Ok(state.serial)
}

/// Rebuilds the local state of the Clusterfile's cluster from the copy kept in the cluster, with its
/// lineage and serial, so that plans made elsewhere and `plan` here agree.
pub fn pull(ctx: &Context, args: StatePullArgs) -> anyhow::Result<Outcome> {
    use sealer_engine::clusterfile::Role;
    use sealer_providers::cluster::STATE_CONFIGMAP;

    let cf = super::load_clusterfile(&args.file)?;
    let name = cf.cluster.name.clone();
    let ip = args.from_cluster;
    if !cf.cluster.hosts.iter().any(|h| h.ip == ip && h.role == Role::Master) {
        bail!(
            "`{ip}` is not a master of cluster `{name}` in `{}`: the state copy is read with kubectl on a master",
            args.file.display()
        );
    }
    if let Some(store) = ctx.state.open_read_only()? {
        if store.load(&name)?.is_some() {
            bail!("the state `{}` already holds cluster `{name}`: pull only rebuilds a lost state", ctx.state);
        }
    }
    let log_dir = std::env::temp_dir().join(format!("sealer-pull-{}", std::process::id()));
    let provider = super::api_provider(&cf, &sealer_engine::State::empty(&name), false, ip, log_dir.clone())?;
    let read = super::runtime()?.block_on(provider.published_state());
    let _ = std::fs::remove_dir_all(&log_dir);
    let json =
        read.map_err(|e| anyhow::anyhow!("cannot read ConfigMap kube-system/{STATE_CONFIGMAP} on `{ip}`: {e}"))?;
    let state: sealer_engine::State = serde_json::from_str(&json)
        .with_context(|| format!("ConfigMap kube-system/{STATE_CONFIGMAP} on `{ip}` is not a sealer state"))?;
    if state.cluster != name {
        bail!(
            "the cluster at `{ip}` keeps the state of cluster `{}`, the Clusterfile declares `{name}`",
            state.cluster
        );
    }
    let mut store = ctx.state.open()?;
    let lock = store.lock(&name, &super::who(), std::process::id(), &super::command_line())?;
    let imported = store
        .import(&lock, &state, &[])
        .and_then(|()| store.record_history(&lock, &format!("state pulled from the cluster at {ip}")));
    store.unlock(&lock)?;
    imported?;
    println!(
        "Pulled the state of cluster `{name}` (serial {}, {} resources) from {ip} into {}",
        state.serial,
        state.resources.len(),
        ctx.state
    );
    Ok(Outcome::Ok)
}

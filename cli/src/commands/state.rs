use std::io::BufRead;

use anyhow::{bail, Context as _};
use sealer_cli::ops;
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
        0 => bail!("the state `{}` holds no cluster", ctx.ws.state),
        1 => Ok(names.remove(0)),
        _ => bail!("the state holds several clusters ({}); choose one with --cluster", names.join(", ")),
    }
}

pub fn list(ctx: &Context, arg: ClusterArg) -> anyhow::Result<Outcome> {
    let store = open(&ctx.ws.state)?;
    let name = cluster(ctx, store.as_ref(), &arg)?;
    let state = store.load(&name)?.with_context(|| format!("no cluster `{name}` in the state"))?;
    for address in state.resources.keys() {
        println!("{address}");
    }
    Ok(Outcome::Ok)
}

pub fn show(ctx: &Context, args: StateShowArgs) -> anyhow::Result<Outcome> {
    let address: Address = args.address.parse()?;
    let store = open(&ctx.ws.state)?;
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
    if ctx.ws.state.open_read_only()?.is_none() {
        bail!("no state at `{}`", ctx.ws.state);
    }
    let mut store = ctx.ws.state.open()?;
    let released = store.force_unlock(&args.lock_id)?;
    println!("Released lock `{}` of cluster `{}`, held by {released}", released.id, released.cluster);
    Ok(Outcome::Ok)
}

/// Copies every cluster (or one) to another backend, leaving the source as it was.
pub fn migrate(ctx: &Context, args: StateMigrateArgs) -> anyhow::Result<Outcome> {
    let target = StateLocation::parse(&args.to);
    for (name, serial) in ops::state::migrate(&ctx.ws, &target, args.cluster.as_deref())? {
        println!("Migrated cluster `{name}` (serial {serial}) from {} to {target}", ctx.ws.state);
    }
    println!("Use `--state {target}` (or SEALER_STATE) from now on; the old state was left unchanged.");
    Ok(Outcome::Ok)
}

/// Rebuilds the local state of the Clusterfile's cluster from the copy kept in the cluster.
pub fn pull(ctx: &Context, args: StatePullArgs) -> anyhow::Result<Outcome> {
    let cf = super::load_clusterfile(&args.file)?;
    let ip = args.from_cluster;
    let state = ops::state::pull(&ctx.ws, &cf, ip).with_context(|| format!("in `{}`", args.file.display()))?;
    println!(
        "Pulled the state of cluster `{}` (serial {}, {} resources) from {ip} into {}",
        state.cluster,
        state.serial,
        state.resources.len(),
        ctx.ws.state
    );
    Ok(Outcome::Ok)
}

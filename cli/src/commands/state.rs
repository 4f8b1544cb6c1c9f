use std::io::BufRead;

use anyhow::{bail, Context as _};
use sealer_cli::ops;
use sealer_engine::Address;

use crate::args::{ClusterArg, ForceUnlockArgs, StateMigrateArgs, StatePullArgs, StateShowArgs};
use crate::{render, Context, Outcome};

pub fn list(ctx: &Context, arg: ClusterArg) -> anyhow::Result<Outcome> {
    let state = ops::state::load(&ctx.ws, arg.cluster.as_deref())?;
    for address in state.resources.keys() {
        println!("{address}");
    }
    Ok(Outcome::Ok)
}

pub fn show(ctx: &Context, args: StateShowArgs) -> anyhow::Result<Outcome> {
    let address: Address = args.address.parse()?;
    let state = ops::state::load(&ctx.ws, args.cluster.cluster.as_deref())?;
    let Some(resource) = state.resources.get(&address) else {
        bail!("no resource `{address}` in the state of cluster `{}`", state.cluster);
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
    let released = ops::state::force_unlock(&ctx.ws, &args.lock_id)?;
    println!("Released lock `{}` of cluster `{}`, held by {released}", released.id, released.cluster);
    Ok(Outcome::Ok)
}

/// Copies every cluster (or one) to another backend, leaving the source as it was.
pub fn migrate(ctx: &Context, args: StateMigrateArgs) -> anyhow::Result<Outcome> {
    let (target, migrated) = ops::state::migrate(&ctx.ws, &args.to, args.cluster.as_deref())?;
    for (name, serial) in migrated {
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

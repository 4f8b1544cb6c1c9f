use std::io::BufRead;

use anyhow::{bail, Context as _};
use sealer_engine::{Address, StateStore};
use sealer_state::SqliteStore;

use crate::args::{ClusterArg, ForceUnlockArgs, StateShowArgs};
use crate::{render, Context, Outcome};

fn open(ctx: &Context) -> anyhow::Result<SqliteStore> {
    match SqliteStore::open_read_only(&ctx.state_path)? {
        Some(store) => Ok(store),
        None => bail!("no state at `{}`: nothing was applied yet (or pass --state PATH)", ctx.state_path.display()),
    }
}

/// The cluster asked for, or the only one the state holds.
fn cluster(store: &SqliteStore, arg: &ClusterArg) -> anyhow::Result<String> {
    if let Some(name) = &arg.cluster {
        return Ok(name.clone());
    }
    let mut names = store.clusters()?;
    match names.len() {
        0 => bail!("the state `{}` holds no cluster", store.path().display()),
        1 => Ok(names.remove(0)),
        _ => bail!("the state holds several clusters ({}); choose one with --cluster", names.join(", ")),
    }
}

pub fn list(ctx: &Context, arg: ClusterArg) -> anyhow::Result<Outcome> {
    let store = open(ctx)?;
    let name = cluster(&store, &arg)?;
    let state = store.load(&name)?.with_context(|| format!("no cluster `{name}` in the state"))?;
    for address in state.resources.keys() {
        println!("{address}");
    }
    Ok(Outcome::Ok)
}

pub fn show(ctx: &Context, args: StateShowArgs) -> anyhow::Result<Outcome> {
    let address: Address = args.address.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let store = open(ctx)?;
    let name = cluster(&store, &args.cluster)?;
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
    if !ctx.state_path.exists() {
        bail!("no state at `{}`", ctx.state_path.display());
    }
    let mut store = SqliteStore::open(&ctx.state_path)?;
    let released = store.force_unlock(&args.lock_id)?;
    println!("Released lock `{}` of cluster `{}`, held by {released}", released.id, released.cluster);
    Ok(Outcome::Ok)
}

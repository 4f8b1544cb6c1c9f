use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sealer_engine::{
    Action, Address, CancelFlag, Clusterfile, Completion, Executor, LockInfo, NodeOutcome, Plan, PlanOptions, Reporter,
    ResourceStatus, State, StateStore, StoredResource, Value,
};
use sealer_providers::cluster::{ClusterContext, ClusterProvider};
use sealer_providers::image::store::ImageStore;

use crate::args::ApplyArgs;
use crate::render::progress;
use crate::{render, sealer_home, Context, Outcome};

/// Applies the Clusterfile (or a saved plan); with `destroy`, deletes everything the state holds.
pub fn run(ctx: &Context, args: ApplyArgs, destroy: bool) -> anyhow::Result<Outcome> {
    let targets = super::parse_targets(&args.targets)?;
    let cf = super::load_clusterfile(&args.file)?;
    let mut store = ctx.state.open()?;
    let lock = store.lock(&cf.cluster.name, &super::who(), std::process::id(), &super::command_line())?;
    // Under the lock: a second apply is refused before it pulls or reads anything.
    let result = (|| {
        if !destroy {
            super::image::ensure_local(&cf.cluster.image)?;
        }
        let graph = sealer_engine::compile(&cf, &super::image_kubeadm(&cf)?)?;
        apply_locked(ctx, &args, &cf, &graph, PlanOptions { targets, destroy }, store.as_mut(), &lock)
    })();
    let unlocked = store.unlock(&lock);
    let outcome = result?;
    unlocked?;
    Ok(outcome)
}

fn apply_locked(
    ctx: &Context,
    args: &ApplyArgs,
    cf: &Clusterfile,
    graph: &sealer_engine::ResourceGraph,
    options: PlanOptions,
    store: &mut dyn StateStore,
    lock: &LockInfo,
) -> anyhow::Result<Outcome> {
    let mut state = store.load(&cf.cluster.name)?.unwrap_or_else(|| State::empty(&cf.cluster.name));
    let recorded = state.clone();
    if (args.refresh || args.refresh_only) && args.planfile.is_none() {
        super::refresh(cf, &mut state, args.strict_host_keys)?;
    }
    if args.refresh_only {
        return record_refresh(ctx, args, cf, &recorded, &state, store, lock);
    }
    let plan = match &args.planfile {
        Some(path) => {
            let plan = sealer_state::read_plan_file(path)?;
            check_not_stale(&plan, &state)?;
            plan
        }
        None => sealer_engine::plan(graph, &state, &options)?,
    };
    if args.json && !args.auto_approve && args.planfile.is_none() {
        bail!("--json needs --auto-approve (or a saved plan): there is no one to answer the confirmation");
    }
    let dangers = sealer_engine::dangerous_removals(&plan, &state);
    if !dangers.is_empty() && !args.force {
        bail!("refusing to apply without --force: {}", dangers.join("; "));
    }
    let sealing = sealing_key(cf)?;
    let resealed = reseal_changed_secrets(cf, sealing.as_ref(), &recorded, store, lock)?;
    if resealed > 0 && !args.json {
        println!("Recorded the changed ssh credentials of {resealed} host(s) (sealed).");
    }
    if !plan.has_changes() {
        if !args.json {
            println!("No changes. Cluster `{}` matches the Clusterfile.", cf.cluster.name);
        }
        return Ok(Outcome::Ok);
    }
    if args.planfile.is_none() && !args.json {
        print!("{}", render::human::plan(&plan, ctx.color));
        if !args.auto_approve && !confirm()? {
            bail!("apply cancelled");
        }
    }
    let image = ImageStore::new(&sealer_home()).get(&cf.cluster.image)?;
    let log_dir = new_log_dir(ctx);
    let first_master = cf.cluster.first_master().map(|h| h.ip).context("the cluster has no master")?;
    let provider = ClusterProvider::new(ClusterContext {
        cluster: cf.cluster.name.clone(),
        hosts: super::ssh_targets(cf, &state, args.strict_host_keys)?,
        first_master,
        masters: super::masters(cf),
        image: Some(image),
        prior: state.resources.iter().map(|(a, r)| (a.clone(), r.attributes.clone())).collect(),
        log_dir: log_dir.clone(),
        command_timeout: Duration::from_secs(600),
        restore_hostnames: args.restore_hostname,
    });
    let publisher = provider.clone();
    let runtime = super::runtime()?;
    let cancel = CancelFlag::default();
    let mut record_error = None;
    let report = runtime.block_on(async {
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: no new work starts; waiting for what runs, then saving the state");
                on_interrupt.cancel();
            }
        });
        let executor = Executor { parallelism: args.parallelism, drain: Duration::from_secs(60) };
        let total = plan.changes.iter().filter(|c| c.action != Action::NoOp).count();
        let reporter: Arc<dyn Reporter> = if args.json {
            Arc::new(progress::JsonLines)
        } else if !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Arc::new(progress::Bars::new(total))
        } else {
            Arc::new(progress::Lines)
        };
        executor
            .run(&plan, Arc::new(provider), reporter, cancel.clone(), |change, completion| {
                let (mut attributes, status) = match completion {
                    Completion::Done(attributes) => (attributes.cloned(), ResourceStatus::Ready),
                    Completion::FailedPartway => {
                        (Some(change.after.clone().unwrap_or_default()), ResourceStatus::Tainted)
                    }
                };
                if let (sealer_engine::Kind::Host, Some(a)) = (change.kind, attributes.as_mut()) {
                    super::seal_ssh_secrets(cf, sealing.as_ref(), &change.address, a)?;
                }
                let stored = attributes.map(|attributes| StoredResource {
                    address: change.address.clone(),
                    host: change.host,
                    status,
                    attributes,
                    depends_on: change.depends_on.clone(),
                });
                store.put_resource(lock, &change.address, stored.as_ref()).map(|_| ()).map_err(|e| {
                    let message = e.to_string();
                    record_error = Some(message.clone());
                    message
                })
            })
            .await
    });
    if !options.destroy {
        if let Err(e) = publish_state(&runtime, &publisher, store, &cf.cluster.name) {
            eprintln!("warning: the copy of the state in the cluster was not updated: {e}");
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    let applied = report.count(|o| *o == NodeOutcome::Applied);
    let failed: Vec<(Address, String)> = report.failed().map(|(a, e)| (a.clone(), e.clone())).collect();
    let skipped = report.count(|o| matches!(o, NodeOutcome::Skipped { .. }));
    let cancelled = report.count(|o| *o == NodeOutcome::Cancelled);
    let summary = format!("{applied} applied, {} failed, {skipped} skipped, {cancelled} cancelled", failed.len());
    store.record_history(lock, &summary)?;
    if !args.json {
        println!("\nLogs of every command: {}", log_dir.display());
    }
    if failed.is_empty() && skipped == 0 && cancelled == 0 {
        let s = plan.summary();
        if args.json {
            return Ok(Outcome::Ok);
        }
        println!(
            "Apply complete! Resources: {} added, {} changed, {} replaced, {} destroyed.",
            s.create, s.update, s.replace, s.delete
        );
        return Ok(Outcome::Ok);
    }
    for (address, error) in &failed {
        eprintln!("error: {address}: {error}");
    }
    if let Some(e) = record_error {
        eprintln!("error: the state could not be written: {e}");
    }
    bail!("apply incomplete: {summary}; run `sealer apply` again to finish")
}

/// The state key, when some host of the Clusterfile has an ssh secret to seal (created on first use).
fn sealing_key(cf: &Clusterfile) -> anyhow::Result<Option<sealer_state::SealingKey>> {
    let has_secrets = cf.cluster.hosts.iter().any(|h| super::ssh_secrets(&h.ssh).iter().any(|(_, s)| s.is_some()));
    Ok(if has_secrets { sealer_state::SealingKey::load(&sealer_home(), true)? } else { None })
}

/// A password changed in the Clusterfile plans no change (secrets compare as `(sensitive)`), but the
/// state must keep the one that works, for the day the host is removed: re-sealed in place, nothing
/// remote. Returns how many hosts' records changed.
fn reseal_changed_secrets(
    cf: &Clusterfile,
    key: Option<&sealer_state::SealingKey>,
    recorded: &State,
    store: &mut dyn StateStore,
    lock: &LockInfo,
) -> anyhow::Result<usize> {
    let Some(key) = key else { return Ok(0) };
    let mut changed = 0;
    for host in &cf.cluster.hosts {
        let address = Address::new(sealer_engine::Kind::Host, host.ip.to_string());
        let Some(stored) = recorded.resources.get(&address).filter(|r| r.status == ResourceStatus::Ready) else {
            continue;
        };
        let owner = address.to_string();
        let stale = super::ssh_secrets(&host.ssh).iter().any(|(attribute, secret)| {
            match (secret, stored.attributes.get(*attribute)) {
                (Some(secret), Some(Value::Sealed(sealed))) => {
                    key.open(&owner, sealed).ok().as_deref() != Some(*secret)
                }
                (Some(_), Some(Value::Sensitive)) => true,
                _ => false,
            }
        });
        if stale {
            let mut resource = stored.clone();
            super::seal_ssh_secrets(cf, Some(key), &address, &mut resource.attributes).map_err(anyhow::Error::msg)?;
            store.put_resource(lock, &address, Some(&resource))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Keeps the state's copy in the cluster current, once the cluster exists (see `sealer state pull`).
fn publish_state(
    runtime: &tokio::runtime::Runtime,
    provider: &ClusterProvider,
    store: &dyn StateStore,
    cluster: &str,
) -> anyhow::Result<()> {
    let Some(state) = store.load(cluster)? else { return Ok(()) };
    let cluster_up = state
        .resources
        .values()
        .any(|r| r.address.kind == sealer_engine::Kind::KubeadmInit && r.status == ResourceStatus::Ready);
    if !cluster_up {
        return Ok(());
    }
    let json = serde_json::to_string(&state.without_sealed_secrets())?;
    runtime.block_on(provider.publish_state(&json)).map_err(anyhow::Error::msg)
}

/// `--refresh-only`: what the hosts hold, recorded in the state; nothing remote changes.
fn record_refresh(
    ctx: &Context,
    args: &ApplyArgs,
    cf: &Clusterfile,
    recorded: &State,
    observed: &State,
    store: &mut dyn StateStore,
    lock: &LockInfo,
) -> anyhow::Result<Outcome> {
    let plan = sealer_engine::refresh_only_plan(recorded, observed);
    if !plan.has_changes() {
        println!("No changes. The state matches what the hosts hold.");
        return Ok(Outcome::Ok);
    }
    print!("{}", render::human::plan(&plan, ctx.color));
    if !args.auto_approve && !confirm()? {
        bail!("refresh cancelled");
    }
    for change in &plan.changes {
        if let Some(resource) = observed.resources.get(&change.address) {
            store.put_resource(lock, &change.address, Some(resource))?;
        }
    }
    store.record_history(lock, &format!("refresh-only: {} resource(s) updated", plan.changes.len()))?;
    println!("Refresh complete: {} resource(s) updated in the state.", plan.changes.len());
    if let Some(first_master) = cf.cluster.first_master().map(|h| h.ip) {
        let publisher = super::api_provider(cf, observed, args.strict_host_keys, first_master, new_log_dir(ctx))?;
        if let Err(e) = publish_state(&super::runtime()?, &publisher, store, &cf.cluster.name) {
            eprintln!("warning: the copy of the state in the cluster was not updated: {e}");
        }
    }
    Ok(Outcome::Ok)
}

/// `.sealer/logs/<apply-id>` (beside the state) for this run's per-host command logs.
fn new_log_dir(ctx: &Context) -> std::path::PathBuf {
    let apply_id = format!(
        "{}-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        std::process::id()
    );
    ctx.state.local_dir().join("logs").join(apply_id)
}

/// A saved plan applies only to the state it was made from (Terraform's "stale plan" rule).
fn check_not_stale(plan: &Plan, state: &State) -> anyhow::Result<()> {
    if plan.cluster != state.cluster {
        bail!("saved plan is for cluster `{}`, the Clusterfile declares `{}`", plan.cluster, state.cluster);
    }
    if plan.lineage.is_some() && plan.lineage != state.lineage {
        bail!(
            "saved plan is stale: it was made for another state (lineage `{}`)",
            plan.lineage.as_deref().unwrap_or_default()
        );
    }
    if plan.prior_serial != state.serial {
        bail!(
            "saved plan is stale: the state moved from serial {} to {} since it was made; plan again",
            plan.prior_serial,
            state.serial
        );
    }
    Ok(())
}

fn confirm() -> anyhow::Result<bool> {
    println!("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("cannot read the answer")?;
    Ok(answer.trim() == "yes")
}

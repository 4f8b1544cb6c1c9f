//! `apply` and `destroy`: a [`Session`] holds the state lock from the first read to the last write. It
//! plans (or reads a saved plan), then, once the caller confirmed, executes the plan over SSH, recording
//! every finished resource in its own transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Context as _, Error};
use super::Result;
use sealer_engine::schema::{self, Schema};
use sealer_engine::{
    Address, ApplyReport, CancelFlag, Clusterfile, Completion, Executor, Kind, LockInfo, Plan, PlanOptions, Reporter,
    ResourceChange, ResourceStatus, ResourceWrite, State, StateStore, StoredResource,
};
use sealer_providers::cluster::{
    recorded_schedules, recorded_watches, ClusterContext, ClusterProvider, CopyProgress, Distribution, ScheduledHook,
    WatchedHook,
};
use sealer_providers::image::oci::Pulled;
use sealer_providers::image::TransferProgress;
use sealer_state::SealingKey;

use super::reconcile::{HookRun, Watches};
use super::{hosts, Workspace};

#[derive(Clone, Debug)]
pub struct ApplyRequest {
    pub targets: Vec<Address>,
    pub destroy: bool,
    pub refresh: bool,
    /// Record what the hosts hold; change nothing remote.
    pub refresh_only: bool,
    /// A plan saved by `sealer plan --out`.
    pub planfile: Option<PathBuf>,
    pub strict_host_keys: bool,
    /// Apply even a plan that removes the first master or more than half of the masters.
    pub force: bool,
    pub restore_hostname: bool,
    pub parallelism: usize,
    /// Nodes upgraded at once in a Kubernetes upgrade.
    pub max_unavailable: usize,
}

/// One apply under the state lock, released when the session ends.
pub struct Session<'a> {
    ws: &'a Workspace,
    cf: &'a Clusterfile,
    req: ApplyRequest,
    store: Box<dyn StateStore>,
    lock: Option<LockInfo>,
    recorded: State,
    observed: State,
    plan: Plan,
    /// The cluster image, when the store lacked it and this session pulled it.
    pub pulled: Option<Pulled>,
    /// What the plan's user should know (label selectors that match no host).
    pub warnings: Vec<sealer_engine::Diagnostic>,
}

/// What an execution did.
/// Where an apply reports: each resource as it starts and ends, and the image's copies.
#[derive(Clone)]
pub struct Progress {
    pub resources: Arc<dyn Reporter>,
    pub copies: Arc<dyn CopyProgress>,
}

impl Progress {
    /// One renderer for both.
    pub fn of<T: Reporter + CopyProgress + 'static>(renderer: T) -> Progress {
        let renderer = Arc::new(renderer);
        Progress { resources: renderer.clone(), copies: renderer }
    }
}

pub struct Applied {
    pub report: ApplyReport,
    pub log_dir: PathBuf,
    /// The state could not record a finished resource (the walk stopped there).
    pub record_error: Option<String>,
    /// The cluster's copy of the state could not be updated.
    pub publish_error: Option<String>,
    /// Hosts whose image relay could not be stopped (it exits on its own once idle), with why.
    pub relay_errors: Vec<String>,
}

impl Applied {
    pub fn complete(&self) -> bool {
        self.report.succeeded()
    }
}

impl<'a> Session<'a> {
    /// Takes the lock (a second apply is refused before it pulls or reads anything), then plans.
    pub fn begin(
        ws: &'a Workspace,
        cf: &'a Clusterfile,
        req: ApplyRequest,
        progress: &dyn TransferProgress,
    ) -> Result<Session<'a>> {
        let mut store = ws.open_state()?;
        let lock = store.lock(&cf.cluster.name, &super::who(), std::process::id(), &super::command_line())?;
        super::say_replaced(&lock);
        let mut session = Session {
            ws,
            cf,
            req,
            store,
            lock: Some(lock),
            recorded: State::empty(&cf.cluster.name),
            observed: State::empty(&cf.cluster.name),
            plan: Plan::against(&State::empty(&cf.cluster.name), Vec::new()),
            pulled: None,
            warnings: Vec::new(),
        };
        session.prepare(progress)?;
        Ok(session)
    }

    fn prepare(&mut self, progress: &dyn TransferProgress) -> Result<()> {
        let (ws, cf, req) = (self.ws, self.cf, &self.req);
        if !req.destroy {
            self.pulled = super::images::ensure_local(ws, &cf.cluster.image, progress)?;
            for app in &cf.cluster.apps {
                super::images::ensure_local(ws, app, progress)?;
            }
        }
        // Made before planning: the plan compares secrets by digests under this key.
        hosts::sealing_key(ws, cf)?;
        self.recorded = self.store.load(&cf.cluster.name)?.unwrap_or_else(|| State::empty(&cf.cluster.name));
        self.observed = self.recorded.clone();
        let live = if (req.refresh || req.refresh_only) && req.planfile.is_none() {
            hosts::refresh(ws, cf, &mut self.observed, req.strict_host_keys)?
        } else {
            Default::default()
        };
        let compiled = super::plan::compile(ws, cf, &live)?;
        self.warnings = compiled.warnings;
        self.plan = if req.refresh_only {
            sealer_engine::refresh_only_plan(&self.recorded, &self.observed)
        } else if let Some(path) = &req.planfile {
            let plan = super::plan::read(path)?;
            plan.check_applicable(&self.observed)?;
            // What the providers take from outside the plan (the image from the store by name, a secret
            // Config's data from the Clusterfile) must still be what the plan showed.
            plan.check_matches(&compiled.graph)?;
            plan
        } else {
            let options = PlanOptions {
                targets: req.targets.clone(),
                destroy: req.destroy,
                max_unavailable: req.max_unavailable,
            };
            let mut plan = sealer_engine::plan(&compiled.graph, &self.observed, &options)?;
            super::images::note_image_changes(ws, cf, &mut plan);
            super::plan::note_plugin_origins(&mut plan, &compiled.plugin_origins);
            super::plan::note_gone_hosts(&mut plan, &live.gone);
            plan
        };
        let dangers = sealer_engine::dangerous_removals(&self.plan, &self.observed);
        if !dangers.is_empty() && !req.force {
            return Err(Error::Refused(dangers));
        }
        Ok(())
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn lock(&self) -> Result<&LockInfo> {
        self.lock.as_ref().context("the state lock was released")
    }

    /// Re-seals ssh secrets changed in the Clusterfile into the state (they plan no change). Call it once
    /// the user confirmed, or when there is nothing to apply. Returns how many hosts' records changed.
    pub fn reseal(&mut self) -> Result<usize> {
        let key = hosts::sealing_key(self.ws, self.cf)?;
        let lock = self.lock.clone().context("the state lock was released")?;
        hosts::reseal_changed_secrets(self.cf, key.as_ref(), &self.recorded, self.store.as_mut(), &lock)
    }

    /// `--refresh-only`: records what the hosts hold for every change of the plan; returns how many, and
    /// why the cluster's copy of the state could not be updated, if it could not.
    pub fn record_refresh(&mut self) -> Result<(usize, Option<String>)> {
        let lock = self.lock()?.clone();
        for change in &self.plan.changes {
            if let Some(resource) = self.observed.resources.get(&change.address) {
                self.store.put_resource(&lock, &change.address, Some(resource))?;
            }
        }
        let count = self.plan.changes.len();
        self.store.record_history(&lock, &format!("refresh-only: {count} resource(s) updated"))?;
        if self.cf.cluster.first_master().is_some() {
            let publisher = self.api_provider()?;
            let published = self.ws.block_on(publish_state(&publisher, self.store.as_ref(), &self.cf.cluster.name))?;
            return Ok((count, published.err().map(|e| e.to_string())));
        }
        Ok((count, None))
    }

    /// Runs the plan; `cancel` stops new work (running work finishes, then the state is saved).
    pub fn execute(&mut self, progress: Progress, cancel: CancelFlag) -> Result<Applied> {
        let Progress { resources: reporter, copies } = progress;
        let (ws, cf) = (self.ws, self.cf);
        let lock = self.lock()?.clone();
        // A destroy needs no image: nothing is copied.
        let image = match ws.images().get(&cf.cluster.image) {
            Ok(image) => Some(image),
            Err(_) if self.req.destroy => None,
            Err(e) => return Err(e.into()),
        };
        let log_dir = ws.new_log_dir();
        let first_master = cf.cluster.first_master().map(|h| h.ip).context("the cluster has no master")?;
        let remote =
            ws.remote(hosts::ssh_targets(ws, cf, &self.observed, self.req.strict_host_keys)?, Duration::from_secs(600));
        let route =
            image.as_ref().map(|i| super::images::planned_route(&self.plan, &i.config.digest)).unwrap_or_default();
        let provider = ClusterProvider::new(
            ClusterContext {
                cluster: cf.cluster.name.clone(),
                first_master,
                masters: super::masters(cf),
                image,
                prior: self.observed.resources.iter().map(|(a, r)| (a.clone(), r.attributes.clone())).collect(),
                log_dir: log_dir.clone(),
                restore_hostnames: self.req.restore_hostname,
                secret_configs: hosts::secret_configs(cf),
                apps: cf.cluster.apps.iter().filter_map(|a| Some((a.clone(), ws.images().get(a).ok()?))).collect(),
                hosts: cf.cluster.hosts.iter().map(|h| h.ip).collect(),
                distribution: Distribution {
                    helper: Some(super::images::relay_helper()),
                    seeds: route.seeds,
                    relays: route.relays,
                    progress: copies,
                    corrupt_first_relay: std::env::var_os("SEALER_TEST_CORRUPT_RELAY").is_some_and(|v| v == "1"),
                },
                forgotten: self.plan.forgotten.clone(),
            },
            remote,
        );
        let sealing = hosts::sealing_key(ws, cf)?;
        let executor = Executor { parallelism: self.req.parallelism, drain: Duration::from_secs(60) };
        let mut record_error = None;
        let store = self.store.as_mut();
        let (destroy, cluster) = (self.req.destroy, cf.cluster.name.clone());
        // One runtime for the apply and the copy of the state: the connections live on it.
        let (report, publish_error, relay_errors) = ws.block_on(async {
            let report = executor
                .run(&self.plan, Arc::new(provider.clone()), reporter, cancel, |batch| {
                    record_batch(&mut *store, &lock, cf, sealing.as_ref(), batch, &mut record_error)
                })
                .await;
            // Whatever the outcome: no relay outlives the apply.
            let relay_errors = provider.stop_relays().await.into_iter().map(|(h, e)| format!("{h}: {e}")).collect();
            let published = if destroy { Ok(()) } else { publish_state(&provider, &*store, &cluster).await };
            (report, published.err().map(|e| e.to_string()), relay_errors)
        })?;
        let summary = summary(&report);
        self.store.record_history(&lock, &summary)?;
        Ok(Applied { report, log_dir, record_error, publish_error, relay_errors })
    }

    /// Runs scheduled hooks on the first master (`sealer reconcile`), recording each run in the state's
    /// history. Returns each hook with its outcome.
    pub fn run_hooks(&mut self, due: &[ScheduledHook]) -> Result<Vec<HookRun>> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let provider = self.api_provider()?;
        // One runtime for every hook: the connection lives on it.
        let runs = self.ws.block_on(async {
            let mut runs = Vec::new();
            for hook in due {
                let (outcome, metrics) = split(provider.run_hook(hook).await);
                let (path, binding, allow_failure) = (hook.path.clone(), hook.name.clone(), hook.allow_failure);
                runs.push(HookRun { path, binding, event: None, allow_failure, outcome, metrics });
            }
            runs
        })?;
        self.record_runs(&runs)?;
        Ok(runs)
    }

    /// Looks at what every `kubernetes` binding the state records watches (`watches` keeps where each
    /// resumes) and runs its hook once per binding context: `Synchronization` first, then each event.
    pub fn run_watches(&mut self, watches: &mut Watches) -> Result<Vec<HookRun>> {
        let bound: Vec<WatchedHook> = self.recorded_hooks()?.iter().flat_map(recorded_watches).collect();
        // A binding is what it declares: one that changes with a new image is synchronised again.
        let key = |h: &WatchedHook| serde_json::to_string(h).unwrap_or_default();
        watches.retain(|k, _| bound.iter().any(|h| key(h) == *k));
        if bound.is_empty() {
            return Ok(Vec::new());
        }
        let provider = self.api_provider()?;
        let runs = self.ws.block_on(async {
            let mut runs = Vec::new();
            for hook in &bound {
                let watching = watches.entry(key(hook)).or_default();
                let run = |event: String, outcome, metrics| HookRun {
                    path: hook.path.clone(),
                    binding: hook.name.clone(),
                    event: Some(event),
                    allow_failure: hook.allow_failure,
                    outcome,
                    metrics,
                };
                match provider.look(hook, watching.as_ref()).await {
                    Err(e) => runs.push(run("watch".into(), Err(e), Vec::new())),
                    Ok(look) => {
                        // As shell-operator: a context whose run fails (without allowFailure) is given again
                        // on the next tick, and the ones after it wait for it.
                        let mut taken = true;
                        for context in look.contexts {
                            let ran = provider.run_bound_hook(&hook.path, &context.value).await;
                            let (outcome, metrics) = split(ran);
                            let failed = outcome.is_err() && !hook.allow_failure;
                            runs.push(run(describe(&context.value), outcome, metrics));
                            if failed {
                                taken = false;
                                break;
                            }
                            *watching = context.then;
                        }
                        if taken {
                            *watching = look.then;
                        }
                    }
                }
            }
            runs
        })?;
        self.record_runs(&runs)?;
        Ok(runs)
    }

    fn record_runs(&mut self, runs: &[HookRun]) -> Result<()> {
        let lock = self.lock()?.clone();
        for run in runs {
            self.store.record_history(&lock, &run.line())?;
        }
        Ok(())
    }

    /// A provider that talks to the cluster's API on the first master, with the hosts as observed.
    fn api_provider(&self) -> Result<ClusterProvider> {
        let first_master = self.cf.cluster.first_master().map(|h| h.ip).context("the cluster has no master")?;
        let log_dir = self.ws.new_log_dir();
        hosts::api_provider(self.ws, self.cf, &self.observed, self.req.strict_host_keys, first_master, log_dir)
    }

    /// The hook schedules the state records for this cluster.
    pub fn schedules(&self) -> Result<Vec<ScheduledHook>> {
        Ok(self.recorded_hooks()?.iter().flat_map(recorded_schedules).collect())
    }

    /// The `hooks.*` records of the state; one that does not read as the kind is an error.
    fn recorded_hooks(&self) -> Result<Vec<schema::Hooks>, schema::SchemaError> {
        self.observed
            .resources
            .values()
            .filter(|r| r.address.kind == Kind::Hooks)
            .map(|r| schema::Hooks::from_attributes(&r.attributes))
            .collect()
    }

    /// Releases the lock; an error here means the lock may still be held.
    pub fn finish(mut self) -> Result<()> {
        match self.lock.take() {
            Some(lock) => Ok(self.store.unlock(&lock)?),
            None => Ok(()),
        }
    }
}

impl Drop for Session<'_> {
    /// A session abandoned on an error still releases its lock.
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = self.store.unlock(&lock);
        }
    }
}

/// Records the changes that finished together in one state write: each host's SSH secrets sealed, and a
/// promoted master's join record removed in the same write that records it as first. A write the state
/// refused is also kept in `write_error` (the apply says the state could not be written).
fn record_batch(
    store: &mut dyn StateStore,
    lock: &LockInfo,
    cf: &Clusterfile,
    sealing: Option<&SealingKey>,
    batch: &[(&ResourceChange, Completion<'_>)],
    write_error: &mut Option<String>,
) -> Result<(), sealer_engine::BoxError> {
    let mut stored = Vec::with_capacity(batch.len());
    for (change, completion) in batch {
        let mut s = StoredResource::from_completion(change, *completion);
        if let Some(s) = s.as_mut().filter(|s| s.address.kind == Kind::Host) {
            hosts::seal_ssh_secrets(cf, sealing, &s.address, &mut s.attributes)?;
        }
        stored.push(s);
    }
    let writes: Vec<ResourceWrite<'_>> = batch
        .iter()
        .zip(&stored)
        .map(|((change, _), s)| ResourceWrite {
            from: change.previous_address.as_ref().filter(|_| s.is_some()),
            address: &change.address,
            resource: s.as_ref(),
        })
        .collect();
    store.write_resources(lock, &writes).map(|_| ()).map_err(|e| {
        *write_error = Some(e.to_string());
        e.into()
    })
}

/// `N applied, N failed, N skipped, N cancelled`, as the history records an apply.
pub fn summary(report: &ApplyReport) -> String {
    let applied = report.count(|o| *o == sealer_engine::NodeOutcome::Applied);
    let failed = report.failed().count();
    let skipped = report.count(|o| matches!(o, sealer_engine::NodeOutcome::Skipped { .. }));
    let cancelled = report.count(|o| *o == sealer_engine::NodeOutcome::Cancelled);
    format!("{applied} applied, {failed} failed, {skipped} skipped, {cancelled} cancelled")
}

/// Keeps the state's copy in the cluster current, once the cluster exists (see `sealer state pull`).
async fn publish_state(provider: &ClusterProvider, store: &dyn StateStore, cluster: &str) -> Result<()> {
    let Some(state) = store.load(cluster)? else { return Ok(()) };
    let cluster_up =
        state.resources.values().any(|r| r.address.kind == Kind::KubeadmInit && r.status == ResourceStatus::Ready);
    if !cluster_up {
        return Ok(());
    }
    let json = serde_json::to_string(&state.without_sealed_secrets())?;
    Ok(provider.publish_state(&json).await?)
}

/// A hook run's outcome and metrics.
fn split(
    run: Result<Vec<String>, sealer_providers::ProviderError>,
) -> (Result<(), sealer_providers::ProviderError>, Vec<String>) {
    match run {
        Ok(metrics) => (Ok(()), metrics),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// A binding context in a few words: `Synchronization (2 objects)`, `Added configmap/x`.
fn describe(context: &serde_json::Value) -> String {
    let c = &context[0];
    match c["type"].as_str() {
        Some("Event") => format!(
            "{} {}/{}",
            c["watchEvent"].as_str().unwrap_or_default(),
            c["object"]["kind"].as_str().unwrap_or_default().to_lowercase(),
            c["object"]["metadata"]["name"].as_str().unwrap_or_default()
        ),
        _ => format!("Synchronization ({} objects)", c["objects"].as_array().map_or(0, Vec::len)),
    }
}

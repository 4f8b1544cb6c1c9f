//! `sealer reconcile`: one tick = (optionally) pull the Clusterfile's git working copy, take the lock (or
//! skip the tick, saying who holds it), refresh, plan, and with `apply` apply a plan that has changes and
//! nothing dangerous in it (the refusals of `apply` without `--force` stand: such a plan is reported with
//! its drift, never applied; without `apply` it is drift like any other), then run the hooks that are due.
//! The loop, signals and output are the command's; metrics are [`super::metrics`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sealer_engine::{Action, CancelFlag, Kind, Plan, State, StateError};
use sealer_providers::cluster::ScheduledHook;
use sealer_providers::image::Quiet;

use super::apply::Progress;
use super::apply::{ApplyRequest, Session};
use super::error::{Error, Result};
use super::Workspace;

#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    pub file: PathBuf,
    /// Apply a plan with changes (else drift is only reported).
    pub apply: bool,
    /// `git pull --ff-only` the working copy that holds the Clusterfile first.
    pub git_pull: bool,
    pub parallelism: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickResult {
    NoChanges,
    /// Changes found and reported (no `--apply`), those `apply` would refuse too.
    Drift,
    Applied,
    Failed,
    /// With `--apply`, changes found that `apply` refuses without `--force`: reported, not applied.
    Refused,
    /// Another run holds the state lock: the tick was skipped.
    Locked,
    /// The Clusterfile does not read.
    Invalid,
}

impl TickResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TickResult::NoChanges => "no_changes",
            TickResult::Drift => "drift",
            TickResult::Applied => "applied",
            TickResult::Failed => "failed",
            TickResult::Refused => "refused",
            TickResult::Locked => "locked",
            TickResult::Invalid => "invalid",
        }
    }

    /// The tick ended as it should (a success for `sealer_reconcile_last_success_timestamp_seconds`).
    pub fn succeeded(self) -> bool {
        matches!(self, TickResult::NoChanges | TickResult::Drift | TickResult::Applied)
    }
}

/// One run of a hook: which, what ran it, how it ended, and the metrics it wrote (shell-operator's JSON
/// lines, for `--metrics-addr`).
pub struct HookRun {
    pub path: String,
    /// The binding's name: a schedule's, or a `kubernetes` binding's.
    pub binding: String,
    /// For a `kubernetes` binding: `Synchronization`, or the event and its object (`Added configmap/x`).
    pub event: Option<String>,
    pub allow_failure: bool,
    pub outcome: Result<(), sealer_providers::ProviderError>,
    pub metrics: Vec<String>,
}

impl HookRun {
    /// How the run reads in the output and the state's history.
    pub fn line(&self) -> String {
        let event = self.event.as_ref().map(|e| format!(" {e}")).unwrap_or_default();
        match &self.outcome {
            Ok(()) => format!("hook {} ({}{event}): ok", self.path, self.binding),
            Err(e) => format!("hook {} ({}{event}): failed: {e}", self.path, self.binding),
        }
    }
}

/// What `sealer reconcile` keeps of each `kubernetes` binding from tick to tick (by hook path and binding
/// name): where its watch resumes. A binding first seen gets its `Synchronization`.
pub type Watches = BTreeMap<String, Option<sealer_providers::cluster::Watching>>;

pub struct Tick {
    pub result: TickResult,
    pub hook_runs: Vec<HookRun>,
    pub cluster: Option<String>,
    /// What the plan would change, by kind.
    pub drift: BTreeMap<Kind, usize>,
    pub message: String,
    pub apply_seconds: Option<f64>,
    /// The tick got as far as the hooks due in its window; when not (the file, the plan or the apply
    /// failed first), the next tick's window starts where this one did, so a crontab minute is not lost.
    pub hooks_checked: bool,
}

impl Tick {
    fn new(result: TickResult, message: impl Into<String>) -> Tick {
        Tick {
            result,
            hook_runs: Vec::new(),
            cluster: None,
            drift: BTreeMap::new(),
            message: message.into(),
            apply_seconds: None,
            hooks_checked: false,
        }
    }
}

/// Why `--git-pull` could not bring the working copy up to date.
#[derive(Debug, thiserror::Error)]
enum GitPullError {
    #[error("cannot run git: {0}")]
    Run(std::io::Error),
    #[error("git pull failed: {0}")]
    Failed(String),
}

fn git_pull(file: &std::path::Path) -> Result<(), GitPullError> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let out = std::process::Command::new("git")
        .args(["pull", "--ff-only", "--quiet"])
        .current_dir(dir)
        .output()
        .map_err(GitPullError::Run)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(GitPullError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// The scheduled hooks whose crontab fell in `(since, now]`.
pub fn due(schedules: &[ScheduledHook], since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<ScheduledHook> {
    schedules
        .iter()
        .filter(|s| {
            s.crontab
                .parse::<croner::Cron>()
                .ok()
                .and_then(|cron| cron.find_next_occurrence(&since, false).ok())
                .is_some_and(|next| next <= now)
        })
        .cloned()
        .collect()
}

/// One tick; the hooks scheduled in `window` run after the plan (and apply). `cancel` stops an apply
/// after the resources that run.
pub fn tick(
    ws: &Workspace,
    opts: &ReconcileOptions,
    window: (DateTime<Utc>, DateTime<Utc>),
    watches: &mut Watches,
    progress: Progress,
    cancel: CancelFlag,
) -> Tick {
    // Every tick tries every host afresh: a host the last tick could not reach may be back.
    sealer_providers::cluster::forget_unreachable_hosts();
    let mut notes = Vec::new();
    if opts.git_pull {
        if let Err(e) = git_pull(&opts.file) {
            notes.push(e.to_string());
        }
    }
    let file = opts.file.display().to_string();
    let text = match std::fs::read_to_string(&opts.file) {
        Ok(text) => text,
        Err(e) => return Tick::new(TickResult::Invalid, format!("cannot read `{file}`: {e}")),
    };
    let cf = match sealer_engine::parse(&file, &text) {
        Ok(parsed) => parsed.clusterfile,
        Err(d) => {
            let first: Vec<String> = d.errors().take(3).map(ToString::to_string).collect();
            return Tick::new(TickResult::Invalid, first.join("; "));
        }
    };
    let request = ApplyRequest {
        targets: Vec::new(),
        destroy: false,
        refresh: true,
        refresh_only: false,
        planfile: None,
        strict_host_keys: false,
        // The session must not refuse the plan before the tick has its drift: the tick refuses to apply a
        // dangerous plan itself ([`assess`]).
        force: true,
        restore_hostname: false,
        parallelism: opts.parallelism,
        max_unavailable: 1,
    };
    let mut tick = match run(ws, &cf, request, opts.apply, HookTurn { window, watches }, progress, cancel) {
        Ok(tick) => tick,
        Err(e) => {
            // A plan sealer refuses whatever the flags (a host that cannot become the first master) is a
            // refused tick, as a dangerous one is: nothing failed, the Clusterfile asks for what is not done.
            let (result, message) = match e.root() {
                Error::State(StateError::Locked { .. }) => (TickResult::Locked, e.chain()),
                Error::Plan(sealer_engine::PlanError::FirstMaster { .. }) => {
                    (TickResult::Refused, format!("refusing to apply: {}", e.chain()))
                }
                _ => (TickResult::Failed, e.chain()),
            };
            Tick::new(result, message)
        }
    };
    tick.cluster = Some(cf.cluster.name.clone());
    notes.push(std::mem::take(&mut tick.message));
    tick.message = notes.into_iter().filter(|n| !n.is_empty()).collect::<Vec<_>>().join("; ");
    tick
}

/// What a tick's hooks go by: the crontab window of the schedules, the watches of the `kubernetes` bindings.
struct HookTurn<'a> {
    window: (DateTime<Utc>, DateTime<Utc>),
    watches: &'a mut Watches,
}

fn run(
    ws: &Workspace,
    cf: &sealer_engine::Clusterfile,
    request: ApplyRequest,
    apply: bool,
    hooks: HookTurn<'_>,
    progress: Progress,
    cancel: CancelFlag,
) -> Result<Tick> {
    let mut session = Session::begin(ws, cf, request, &Quiet)?;
    let plan = session.plan().clone();
    let Assessment { drift, next } = assess(&plan, apply, || recorded_state(ws, &cf.cluster.name))?;
    let changes: usize = drift.values().sum();
    let mut tick = Tick { drift, ..Tick::new(TickResult::NoChanges, "") };
    match next {
        Next::Report(result, message) => {
            // Re-sealing comes with an apply's go-ahead; a plan with nothing to do needs none.
            if result == TickResult::NoChanges {
                session.reseal()?;
            }
            tick.result = result;
            tick.message = message;
        }
        Next::Apply => {
            session.reseal()?;
            let started = std::time::Instant::now();
            let applied = session.execute(progress, cancel)?;
            tick.apply_seconds = Some(started.elapsed().as_secs_f64());
            if applied.complete() {
                tick.result = TickResult::Applied;
                tick.message = format!("{changes} change(s) applied");
            } else {
                tick.result = TickResult::Failed;
                let failed: Vec<String> = applied.report.failed().map(|(a, e)| format!("{a}: {e}")).collect();
                tick.message = format!("{}; {}", super::apply::summary(&applied.report), failed.join("; "));
            }
        }
    }
    let due = due(&session.schedules()?, hooks.window.0, hooks.window.1);
    let mut runs = session.run_hooks(&due)?;
    runs.extend(session.run_watches(hooks.watches)?);
    for run in runs {
        if let Err(e) = &run.outcome {
            // A failed hook fails a tick that went well; a failed or refused tick keeps saying why.
            if !run.allow_failure && tick.result.succeeded() {
                tick.result = TickResult::Failed;
                tick.message = format!("hook {} ({}) failed: {e}", run.path, run.binding);
            }
        }
        tick.hook_runs.push(run);
    }
    tick.hooks_checked = true;
    session.finish()?;
    Ok(tick)
}

/// What a tick makes of its plan: the drift by kind, and what to do about it.
#[derive(Debug, PartialEq, Eq)]
pub struct Assessment {
    pub drift: BTreeMap<Kind, usize>,
    pub next: Next,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The tick applies nothing: it ends with this result and message.
    Report(TickResult, String),
    Apply,
}

/// Without `apply`, every change is drift, one that `sealer apply` would refuse too: reporting changes
/// nothing. With `apply`, a plan that `sealer apply` refuses without `--force` (checked against the state
/// `recorded` gives, asked for only then) is refused, and its drift reported all the same.
pub fn assess(plan: &Plan, apply: bool, recorded: impl FnOnce() -> Result<State>) -> Result<Assessment> {
    let mut drift = BTreeMap::new();
    for change in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        *drift.entry(change.kind).or_insert(0) += 1;
    }
    let changes: usize = drift.values().sum();
    let next = if changes == 0 {
        Next::Report(TickResult::NoChanges, String::new())
    } else if !apply {
        Next::Report(TickResult::Drift, format!("{changes} change(s) found, not applied (no --apply)"))
    } else {
        let dangers = sealer_engine::dangerous_removals(plan, &recorded()?);
        if dangers.is_empty() {
            Next::Apply
        } else {
            Next::Report(TickResult::Refused, format!("{changes} change(s) found: {}", Error::Refused(dangers)))
        }
    };
    Ok(Assessment { drift, next })
}

/// The state as recorded, for the check of a plan's removals: the session's refresh reads no `kubeadm-*`
/// record, the only ones the check reads, so these are the records the plan was made from.
fn recorded_state(ws: &Workspace, cluster: &str) -> Result<State> {
    let Some(store) = ws.state.open_read_only()? else { return Ok(State::empty(cluster)) };
    Ok(store.load(cluster)?.unwrap_or_else(|| State::empty(cluster)))
}

/// The resources of `cluster`'s state by kind and status, for `sealer_resources`.
pub fn resource_counts(ws: &Workspace, cluster: &str) -> Result<BTreeMap<(Kind, String), i64>> {
    let mut counts = BTreeMap::new();
    let Some(store) = ws.state.open_read_only()? else { return Ok(counts) };
    let Some(state) = store.load(cluster)? else { return Ok(counts) };
    for r in state.resources.values() {
        let status = serde_json::to_value(r.status)?.as_str().unwrap_or_default().to_string();
        *counts.entry((r.address.kind, status)).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Why text is not an interval.
#[derive(Debug, thiserror::Error)]
pub enum IntervalError {
    #[error("`{0}` is not an interval such as 30s, 5m or 1h")]
    NotAnInterval(String),
    #[error("`{0}`: the unit is ms, s, m or h")]
    Unit(String),
    #[error("the interval must be more than 0")]
    Zero,
}

/// `5m`, `2s`, `1h`, `500ms`: the interval between ticks.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, IntervalError> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| IntervalError::NotAnInterval(text.to_string()))?;
    let millis = match unit {
        "ms" => n,
        "s" | "" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(IntervalError::Unit(text.to_string())),
    };
    if millis == 0 {
        return Err(IntervalError::Zero);
    }
    Ok(std::time::Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use sealer_engine::{Kind, PlanOptions, ResourceStatus, State, StoredResource};

    use super::{assess, Assessment, Next, TickResult};

    #[test]
    fn a_hook_is_due_when_its_crontab_falls_in_the_window() {
        use chrono::TimeZone as _;
        let hook = |crontab: &str| super::ScheduledHook {
            path: "hooks/h".into(),
            name: "n".into(),
            crontab: crontab.into(),
            allow_failure: false,
        };
        let at = |h, m, s| chrono::Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap();
        let hooks = [hook("* * * * *"), hook("0 3 * * *"), hook("not a crontab")];
        let due = super::due(&hooks, at(10, 0, 30), at(10, 1, 2));
        assert_eq!(due.len(), 1, "every minute: 10:01:00 is in the window");
        assert!(super::due(&hooks, at(10, 1, 2), at(10, 1, 40)).is_empty(), "no minute boundary");
        assert_eq!(super::due(&hooks, at(2, 59, 59), at(3, 0, 1)).len(), 2);
    }

    fn clusterfile(masters: &str) -> String {
        format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: k:v1.22.15\n  hosts:\n    \
             - ips: [{masters}]\n      roles: [master]\n    - ips: [10.0.0.5]\n      roles: [node]\n"
        )
    }

    fn graph(text: &str) -> sealer_engine::ResourceGraph {
        let cf = sealer_engine::parse("Clusterfile", text).unwrap().clusterfile;
        sealer_engine::compile(&cf, &sealer_engine::ImageFacts::default()).unwrap()
    }

    /// The state of the cluster `text` describes, once applied.
    fn applied(text: &str) -> State {
        let graph = graph(text);
        let mut state = State::empty("c");
        for r in graph.in_dependency_order() {
            let stored = StoredResource {
                address: r.address.clone(),
                host: r.host,
                status: ResourceStatus::Ready,
                attributes: r.attributes.clone(),
                depends_on: graph.depends_on(&r.address),
            };
            state.resources.insert(r.address.clone(), stored);
        }
        state
    }

    fn plan(text: &str, state: &State) -> sealer_engine::Plan {
        sealer_engine::plan(&graph(text), state, &PlanOptions::default()).unwrap()
    }

    #[test]
    fn a_plan_that_drops_the_first_master_is_drift_without_apply_and_refused_with_its_drift_with_apply() {
        let state = applied(&clusterfile("10.0.0.2, 10.0.0.3"));
        let dangerous = plan(&clusterfile("10.0.0.3"), &state);
        let not_asked = || Err(crate::ops::error::err!("the state is read only to refuse an apply"));
        let Assessment { drift, next } = assess(&dangerous, false, not_asked).unwrap();
        assert_eq!(
            next,
            Next::Report(
                TickResult::Drift,
                format!("{} change(s) found, not applied (no --apply)", drift.values().sum::<usize>())
            )
        );
        // The first master's `kubeadm-init` goes, the second's comes; the second's `kubeadm-join` goes.
        assert_eq!(drift.get(&Kind::KubeadmInit), Some(&2), "{drift:?}");
        assert_eq!(drift.get(&Kind::KubeadmJoin), Some(&1), "{drift:?}");

        let refused = assess(&dangerous, true, || Ok(state.clone())).unwrap();
        assert_eq!(refused.drift, drift, "a refused plan's drift is reported as well");
        let Next::Report(TickResult::Refused, message) = refused.next else { panic!("{:?}", refused.next) };
        assert!(
            message.contains("refusing to apply without --force: `kubeadm-init.10.0.0.2` removes the first master"),
            "{message}"
        );
        assert!(!message.contains("would leave"), "one master of two leaves, not both: {message}");
    }

    #[test]
    fn a_safe_plan_is_applied_and_an_unchanged_cluster_is_left_alone() {
        let text = clusterfile("10.0.0.2, 10.0.0.3");
        let state = applied(&text);
        let unchanged = assess(&plan(&text, &state), true, || Ok(state.clone())).unwrap();
        assert_eq!(
            unchanged,
            Assessment { drift: Default::default(), next: Next::Report(TickResult::NoChanges, String::new()) }
        );
        let grown =
            assess(&plan(&clusterfile("10.0.0.2, 10.0.0.3, 10.0.0.4"), &state), true, || Ok(state.clone())).unwrap();
        assert_eq!(grown.next, Next::Apply);
    }

    #[test]
    fn intervals_read_as_people_write_them() {
        use std::time::Duration;
        assert_eq!(super::parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(super::parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(super::parse_interval("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "m", "5x", "0s", "-1s"] {
            assert!(super::parse_interval(bad).is_err(), "{bad}");
        }
    }
}

//! `sealer reconcile`: one tick = (optionally) pull the Clusterfile's git working copy, take the lock (or
//! skip the tick, saying who holds it), refresh, plan, and with `apply` apply a plan that has changes and
//! nothing dangerous in it (the refusals of `apply` without `--force` stand: such a plan is reported, never
//! applied). The loop, signals and output are the command's; metrics are [`super::metrics`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sealer_engine::{Action, CancelFlag, Kind, StateError};
use sealer_providers::cluster::ScheduledHook;
use sealer_providers::image::Quiet;

use super::apply::Progress;
use super::apply::{ApplyRequest, Refused, Session};
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
    /// Changes found and reported (no `--apply`).
    Drift,
    Applied,
    Failed,
    /// Changes found that `apply` refuses without `--force`: reported, not applied.
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

/// One run of a scheduled hook: which, and how it ended.
pub struct HookRun {
    pub hook: ScheduledHook,
    pub outcome: Result<(), String>,
}

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

fn git_pull(file: &std::path::Path) -> Result<(), String> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let out = std::process::Command::new("git")
        .args(["pull", "--ff-only", "--quiet"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("git pull failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
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
    progress: Progress,
    cancel: CancelFlag,
) -> Tick {
    let mut notes = Vec::new();
    if opts.git_pull {
        if let Err(e) = git_pull(&opts.file) {
            notes.push(e);
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
        force: false,
        restore_hostname: false,
        parallelism: opts.parallelism,
        max_unavailable: 1,
    };
    let mut tick = match run(ws, &cf, request, opts.apply, window, progress, cancel) {
        Ok(tick) => tick,
        Err(e) => {
            let result = if e.downcast_ref::<Refused>().is_some() {
                TickResult::Refused
            } else if matches!(e.downcast_ref::<StateError>(), Some(StateError::Locked { .. })) {
                TickResult::Locked
            } else {
                TickResult::Failed
            };
            Tick::new(result, format!("{e:#}"))
        }
    };
    tick.cluster = Some(cf.cluster.name.clone());
    notes.push(std::mem::take(&mut tick.message));
    tick.message = notes.into_iter().filter(|n| !n.is_empty()).collect::<Vec<_>>().join("; ");
    tick
}

fn run(
    ws: &Workspace,
    cf: &sealer_engine::Clusterfile,
    request: ApplyRequest,
    apply: bool,
    window: (DateTime<Utc>, DateTime<Utc>),
    progress: Progress,
    cancel: CancelFlag,
) -> anyhow::Result<Tick> {
    let mut session = Session::begin(ws, cf, request, &Quiet)?;
    let plan = session.plan().clone();
    let mut drift = BTreeMap::new();
    for change in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        *drift.entry(change.kind).or_insert(0) += 1;
    }
    let changes: usize = drift.values().sum();
    let mut tick = Tick { drift, ..Tick::new(TickResult::NoChanges, "") };
    if changes == 0 {
        session.reseal()?;
    } else if !apply {
        tick.result = TickResult::Drift;
        tick.message = format!("{changes} change(s) found, not applied (no --apply)");
    } else {
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
    let due = due(&session.schedules(), window.0, window.1);
    for (hook, outcome) in session.run_hooks(&due)? {
        if let Err(e) = &outcome {
            if !hook.allow_failure && tick.result != TickResult::Failed {
                tick.result = TickResult::Failed;
                tick.message = format!("hook {} ({}) failed: {e}", hook.path, hook.name);
            }
        }
        tick.hook_runs.push(HookRun { hook, outcome });
    }
    tick.hooks_checked = true;
    session.finish()?;
    Ok(tick)
}

/// The resources of `cluster`'s state by kind and status, for `sealer_resources`.
pub fn resource_counts(ws: &Workspace, cluster: &str) -> anyhow::Result<BTreeMap<(Kind, String), i64>> {
    let mut counts = BTreeMap::new();
    let Some(store) = ws.state.open_read_only()? else { return Ok(counts) };
    let Some(state) = store.load(cluster)? else { return Ok(counts) };
    for r in state.resources.values() {
        let status = serde_json::to_value(r.status)?.as_str().unwrap_or_default().to_string();
        *counts.entry((r.address.kind, status)).or_insert(0) += 1;
    }
    Ok(counts)
}

/// `5m`, `2s`, `1h`, `500ms`: the interval between ticks.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not an interval such as 30s, 5m or 1h"))?;
    let millis = match unit {
        "ms" => n,
        "s" | "" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("`{text}`: the unit is ms, s, m or h")),
    };
    if millis == 0 {
        return Err("the interval must be more than 0".into());
    }
    Ok(std::time::Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
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

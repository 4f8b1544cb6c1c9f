//! `sealer reconcile`: ticks every `--interval` until SIGTERM or Ctrl-C (which stop an apply after the
//! resources that run, then release the lock), with Prometheus metrics on `--metrics-addr`.

use std::sync::Arc;

use sealer_cli::ops::apply::Progress;
use sealer_cli::ops::metrics::Metrics;
use sealer_cli::ops::reconcile::{self, ReconcileOptions, TickResult};
use sealer_cli::ops::{Connections, Workspace};
use sealer_engine::CancelFlag;

use crate::args::ReconcileArgs;
use crate::render::progress;
use crate::{Context, Outcome};

pub fn run(ctx: &Context, args: ReconcileArgs) -> anyhow::Result<Outcome> {
    // The hosts' SSH connections stay open from tick to tick: a tick with nothing to do costs one command
    // per host, not one handshake.
    let ws =
        Workspace { state: ctx.ws.state.clone(), home: ctx.ws.home.clone(), connections: Some(Connections::new()?) };
    let interval = reconcile::parse_interval(&args.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let metrics = Arc::new(Metrics::new()?);
    if let Some(addr) = args.metrics_addr {
        let bound = metrics.serve(addr)?;
        if !args.json {
            println!("metrics on http://{bound}/metrics");
        }
    }
    let stop = stop_on_signals();
    let opts = ReconcileOptions {
        file: args.file.clone(),
        apply: args.apply,
        git_pull: args.git_pull,
        parallelism: args.parallelism,
    };
    let reporter = if args.json { Progress::of(progress::JsonLines) } else { Progress::of(progress::Lines) };
    let mut kinds_seen = std::collections::BTreeSet::new();
    // Hooks run for the crontab minutes that pass while reconcile runs, none from before it started; a
    // minute that passed during failed ticks runs its hooks once, on the first tick that gets to them.
    let mut since = chrono::Utc::now();
    // The `kubernetes` bindings' watches resume from tick to tick; a binding first seen is synchronised.
    let mut watches = reconcile::Watches::new();
    loop {
        let now = chrono::Utc::now();
        let started = std::time::Instant::now();
        let tick = reconcile::tick(&ws, &opts, (since, now), &mut watches, reporter.clone(), stop.clone());
        let seconds = started.elapsed().as_secs_f64();
        if tick.hooks_checked {
            since = now;
        }
        metrics.record_tick(&tick, &mut kinds_seen);
        if let Some(cluster) = &tick.cluster {
            if let Ok(counts) = reconcile::resource_counts(&ws, cluster) {
                metrics.resources.reset();
                for ((kind, status), n) in counts {
                    metrics.resources.with_label_values(&[kind.as_str(), status.as_str()]).set(n);
                }
            }
        }
        report(&tick, seconds, args.json);
        if args.once || stop.is_cancelled() {
            return match tick.result {
                r if r.succeeded() && r != TickResult::Drift => Ok(Outcome::Ok),
                TickResult::Drift => Ok(Outcome::Changes),
                r => Err(anyhow::anyhow!("reconcile: {}: {}", r.as_str(), tick.message)),
            };
        }
        let until = std::time::Instant::now() + interval;
        while std::time::Instant::now() < until && !stop.is_cancelled() {
            std::thread::sleep(std::time::Duration::from_millis(100).min(until - std::time::Instant::now()));
        }
        if stop.is_cancelled() {
            return Ok(Outcome::Ok);
        }
    }
}

fn report(tick: &reconcile::Tick, seconds: f64, json: bool) {
    let drift: std::collections::BTreeMap<&str, usize> = tick.drift.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    if json {
        let hooks: Vec<serde_json::Value> = tick
            .hook_runs
            .iter()
            .map(|r| {
                let binding = if r.event.is_some() { "binding" } else { "schedule" };
                serde_json::json!({"hook": r.path, binding: r.binding, "event": r.event, "ok": r.outcome.is_ok(), "error": r.outcome.as_ref().err().map(ToString::to_string)})
            })
            .collect();
        let event = serde_json::json!({
            "event": "reconcile", "result": tick.result.as_str(), "cluster": tick.cluster, "drift": drift,
            "message": tick.message, "apply_seconds": tick.apply_seconds, "hooks": hooks, "seconds": seconds,
        });
        println!("{event}");
    } else {
        let drift: Vec<String> = drift.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let drift = if drift.is_empty() { String::new() } else { format!(" [{}]", drift.join(" ")) };
        println!("reconcile: {}{drift} in {seconds:.2}s {}", tick.result.as_str(), tick.message);
        for r in &tick.hook_runs {
            println!("{}", r.line());
        }
    }
}

/// SIGTERM or Ctrl-C: no new work starts, what runs finishes, the lock is released, the loop ends.
fn stop_on_signals() -> CancelFlag {
    let cancel = CancelFlag::default();
    let flag = cancel.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async move {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!("stopping: no new work starts; waiting for what runs, then releasing the lock");
            flag.cancel();
        });
    });
    cancel
}

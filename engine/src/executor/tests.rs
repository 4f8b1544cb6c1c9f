use std::sync::Mutex;

use super::*;
use crate::plan::Reason;
use crate::resource::Kind;

fn change(key: &str, action: Action, deps: &[&str]) -> ResourceChange {
    ResourceChange {
        address: Address::new(Kind::Host, key),
        kind: Kind::Host,
        host: None,
        action,
        reason: Reason::CreateBecauseNotInState,
        before: None,
        after: Some(Attributes::new()),
        replace_paths: vec![],
        previous_address: None,
        depends_on: deps.iter().map(|d| Address::new(Kind::Host, *d)).collect(),
    }
}

fn plan(changes: Vec<ResourceChange>) -> Plan {
    Plan::against(&crate::State::empty("c"), changes)
}

/// Sleeps 10 ms per change, fails the keys in `failing`, and logs starts, ends and the peak concurrency.
#[derive(Default)]
struct Fake {
    failing: Vec<String>,
    log: Mutex<Vec<String>>,
    running: Mutex<(usize, usize)>,
}

struct Shared(Arc<Fake>);

impl Provider for Shared {
    fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture {
        let fake = self.0.clone();
        Box::pin(async move {
            let key = change.address.key.clone();
            {
                let mut r = fake.running.lock().unwrap();
                r.0 += 1;
                r.1 = r.1.max(r.0);
            }
            fake.log.lock().unwrap().push(format!("start {key}"));
            tokio::time::sleep(Duration::from_millis(10)).await;
            fake.log.lock().unwrap().push(format!("end {key}"));
            fake.running.lock().unwrap().0 -= 1;
            if fake.failing.contains(&key) {
                Err(format!("{key} broke").into())
            } else {
                Ok(Some(Attributes::new()))
            }
        })
    }
}

struct Quiet;
impl Reporter for Quiet {
    fn event(&self, _: &ApplyEvent) {}
}

async fn run(p: &Plan, fake: Arc<Fake>, parallelism: usize, cancel: CancelFlag) -> (ApplyReport, Vec<String>) {
    let mut recorded = Vec::new();
    let report = Executor { parallelism, drain: Duration::from_secs(30) }
        .run(p, Arc::new(Shared(fake)), Arc::new(Quiet), cancel, |batch: &[(&ResourceChange, Completion<'_>)]| {
            for &(c, completion) in batch {
                if let Completion::Done(_) = completion {
                    recorded.push(c.address.key.clone());
                }
            }
            Ok(())
        })
        .await;
    (report, recorded)
}

#[tokio::test(start_paused = true)]
async fn dependencies_finish_before_dependents_start() {
    let p = plan(vec![
        change("a", Action::Create, &[]),
        change("b", Action::Create, &["a"]),
        change("c", Action::Update, &["b"]),
    ]);
    let fake = Arc::new(Fake::default());
    let (report, recorded) = run(&p, fake.clone(), 10, CancelFlag::default()).await;
    assert!(report.succeeded());
    assert_eq!(recorded, ["a", "b", "c"]);
    assert_eq!(*fake.log.lock().unwrap(), ["start a", "end a", "start b", "end b", "start c", "end c"]);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_resource_still_orders_what_it_sits_between() {
    // An imported init (nothing to do) between the image it needs and the guest that needs it.
    let p = plan(vec![
        change("image", Action::Create, &[]),
        change("init", Action::NoOp, &["image"]),
        change("kept", Action::NoOp, &["init"]),
        change("guest", Action::Create, &["kept"]),
    ]);
    let fake = Arc::new(Fake::default());
    let (report, recorded) = run(&p, fake.clone(), 10, CancelFlag::default()).await;
    assert!(report.succeeded());
    assert_eq!(recorded, ["image", "guest"]);
    assert_eq!(*fake.log.lock().unwrap(), ["start image", "end image", "start guest", "end guest"]);
}

#[tokio::test(start_paused = true)]
async fn parallelism_is_bounded() {
    let p = plan((0..20).map(|i| change(&i.to_string(), Action::Create, &[])).collect());
    let fake = Arc::new(Fake::default());
    let (report, _) = run(&p, fake.clone(), 3, CancelFlag::default()).await;
    assert_eq!(report.count(|o| *o == NodeOutcome::Applied), 20);
    assert_eq!(fake.running.lock().unwrap().1, 3);
}

#[tokio::test(start_paused = true)]
async fn failed_creates_are_recorded_tainted_and_failed_updates_keep_their_record() {
    let p = plan(vec![
        change("new", Action::Create, &[]),
        change("swap", Action::Replace, &[]),
        change("edit", Action::Update, &[]),
        change("gone", Action::Delete, &[]),
    ]);
    let fake = Arc::new(Fake {
        failing: vec!["new".into(), "swap".into(), "edit".into(), "gone".into()],
        ..Default::default()
    });
    let mut tainted = Vec::new();
    let report = Executor { parallelism: 4, drain: Duration::from_secs(30) }
        .run(
            &p,
            Arc::new(Shared(fake)),
            Arc::new(Quiet),
            CancelFlag::default(),
            |batch: &[(&ResourceChange, Completion<'_>)]| {
                for &(c, completion) in batch {
                    assert_eq!(completion, Completion::FailedPartway, "{}", c.address);
                    tainted.push(c.address.key.clone());
                }
                Ok(())
            },
        )
        .await;
    tainted.sort();
    assert_eq!(tainted, ["new", "swap"]);
    assert_eq!(report.failed().count(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_failure_skips_its_dependents_once_and_independent_work_goes_on() {
    let p = plan(vec![
        change("a", Action::Create, &[]),
        change("b", Action::Create, &["a"]),
        change("c", Action::Create, &["b"]),
        change("x", Action::Create, &[]),
        change("y", Action::Create, &["x"]),
    ]);
    let fake = Arc::new(Fake { failing: vec!["a".into()], ..Default::default() });
    let (report, recorded) = run(&p, fake, 2, CancelFlag::default()).await;
    assert_eq!(recorded, ["x", "y"]);
    let a = Address::new(Kind::Host, "a");
    assert_eq!(report.outcomes[&a], NodeOutcome::Failed("a broke".into()));
    for k in ["b", "c"] {
        assert_eq!(report.outcomes[&Address::new(Kind::Host, k)], NodeOutcome::Skipped { because: a.clone() });
    }
}

#[tokio::test(start_paused = true)]
async fn deletes_run_after_creates_dependents_first() {
    let p = plan(vec![
        change("new", Action::Create, &[]),
        change("join", Action::Delete, &["host"]),
        change("host", Action::Delete, &[]),
    ]);
    let fake = Arc::new(Fake::default());
    let (_, recorded) = run(&p, fake, 10, CancelFlag::default()).await;
    assert_eq!(recorded, ["new", "join", "host"]);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_new_work_and_keeps_what_finished() {
    let p = plan(vec![change("a", Action::Create, &[]), change("b", Action::Create, &["a"])]);
    let cancel = CancelFlag::default();
    let mut recorded = Vec::new();
    let report = Executor { parallelism: 4, drain: Duration::from_secs(30) }
        .run(
            &p,
            Arc::new(Shared(Arc::new(Fake::default()))),
            Arc::new(Quiet),
            cancel.clone(),
            |batch: &[(&ResourceChange, Completion<'_>)]| {
                for &(c, completion) in batch {
                    assert!(matches!(completion, Completion::Done(_)));
                    recorded.push(c.address.key.clone());
                    cancel.cancel();
                }
                Ok(())
            },
        )
        .await;
    assert_eq!(recorded, ["a"]);
    assert_eq!(report.outcomes[&Address::new(Kind::Host, "b")], NodeOutcome::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_fails_its_resource_and_skips_its_dependents() {
    struct Panics;
    impl Provider for Panics {
        fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture {
            Box::pin(async move {
                assert!(change.address.key != "a", "provider bug");
                Ok(None)
            })
        }
    }
    let p = plan(vec![
        change("a", Action::Create, &[]),
        change("b", Action::Create, &["a"]),
        change("x", Action::Create, &[]),
    ]);
    let report = Executor { parallelism: 2, drain: Duration::from_secs(5) }
        .run(
            &p,
            Arc::new(Panics),
            Arc::new(Quiet),
            CancelFlag::default(),
            |_: &[(&ResourceChange, Completion<'_>)]| Ok(()),
        )
        .await;
    let a = Address::new(Kind::Host, "a");
    assert!(
        matches!(&report.outcomes[&a], NodeOutcome::Failed(e) if e.contains("internal error")),
        "{:?}",
        report.outcomes
    );
    assert_eq!(report.outcomes[&Address::new(Kind::Host, "b")], NodeOutcome::Skipped { because: a });
    assert_eq!(report.outcomes[&Address::new(Kind::Host, "x")], NodeOutcome::Applied);
}

/// Work that outlives the drain bound after a cancellation is abandoned, not recorded.
#[tokio::test(start_paused = true)]
async fn running_work_is_abandoned_after_the_drain_bound() {
    struct Slow;
    impl Provider for Slow {
        fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture {
            assert_eq!(change.address.key, "slow", "nothing starts after the cancellation");
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(None)
            })
        }
    }
    // Three independent creates, one at a time: the first blocks, the two queued behind it never start.
    let p = plan(vec![
        change("slow", Action::Create, &[]),
        change("queued-1", Action::Create, &[]),
        change("queued-2", Action::Create, &[]),
    ]);
    let cancel = CancelFlag::default();
    let flag = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        flag.cancel();
    });
    let mut recorded = Vec::new();
    let started = tokio::time::Instant::now();
    let report = Executor { parallelism: 1, drain: Duration::from_secs(5) }
        .run(&p, Arc::new(Slow), Arc::new(Quiet), cancel, |batch: &[(&ResourceChange, Completion<'_>)]| {
            for &(c, completion) in batch {
                recorded.push((c.address.key.clone(), completion == Completion::FailedPartway));
            }
            Ok(())
        })
        .await;
    assert_eq!(
        recorded,
        [("slow".to_string(), true)],
        "abandoned after it started: tainted, never done; what never started: not recorded at all"
    );
    for key in ["slow", "queued-1", "queued-2"] {
        assert_eq!(report.outcomes[&Address::new(Kind::Host, key)], NodeOutcome::Cancelled);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn upgrade_steps_run_at_most_max_unavailable_at_once() {
    for max_unavailable in [1, 2] {
        let changes: Vec<ResourceChange> = (0..6).map(|i| change(&i.to_string(), Action::Update, &[])).collect();
        let steps = changes[..4]
            .iter()
            .map(|c| crate::plan::RolloutStep { address: c.address.clone(), from: "v1".into(), to: "v2".into() })
            .collect();
        let mut p = plan(changes);
        p.rollout = Some(crate::plan::Rollout { steps, max_unavailable });
        let fake = Arc::new(Fake::default());
        let (report, _) = run(&p, fake.clone(), 10, CancelFlag::default()).await;
        assert!(report.succeeded());
        let log = fake.log.lock().unwrap().clone();
        // The four steps overlap at most `max_unavailable` deep; the two others are free.
        let mut running = 0usize;
        let mut peak = 0usize;
        for line in &log {
            let key: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
            if key < 4 {
                running = if line.starts_with("start") { running + 1 } else { running - 1 };
                peak = peak.max(running);
            }
        }
        assert_eq!(peak, max_unavailable, "{log:?}");
    }
}

/// Chains every change whose key starts with `c`, and logs each chain it is handed.
struct Chains(Arc<Fake>);

impl Provider for Chains {
    fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture {
        Shared(self.0.clone()).apply(change)
    }

    fn chain_key(&self, change: &ResourceChange) -> Option<String> {
        change.address.key.starts_with('c').then(|| "host".to_string())
    }

    fn apply_chain(&self, changes: Vec<Arc<ResourceChange>>, progress: ChainProgress) -> ChainFuture {
        let keys: Vec<&str> = changes.iter().map(|c| c.address.key.as_str()).collect();
        self.0.log.lock().unwrap().push(format!("chain {}", keys.join(" ")));
        let fake = self.0.clone();
        Box::pin(async move {
            for (k, change) in changes.into_iter().enumerate() {
                progress.started(k);
                let key = change.address.key.clone();
                let result = if fake.failing.contains(&key) { Err(format!("{key} broke").into()) } else { Ok(None) };
                let failed = result.is_err();
                progress.done(k, result);
                if failed {
                    return;
                }
            }
        })
    }
}

async fn run_chains(p: &Plan, fake: Arc<Fake>) -> (ApplyReport, Vec<Vec<String>>) {
    let mut batches = Vec::new();
    let report = Executor { parallelism: 4, drain: Duration::from_secs(30) }
        .run(
            p,
            Arc::new(Chains(fake)),
            Arc::new(Quiet),
            CancelFlag::default(),
            |batch: &[(&ResourceChange, Completion<'_>)]| {
                batches.push(batch.iter().map(|(c, _)| c.address.key.clone()).collect());
                Ok(())
            },
        )
        .await;
    (report, batches)
}

#[tokio::test]
async fn a_hosts_ready_short_changes_and_their_dependents_run_as_one_chain_recorded_each() {
    let p = plan(vec![
        change("a", Action::Create, &[]),
        change("c1", Action::Create, &["a"]),
        change("c2", Action::Create, &["a"]),
        change("c3", Action::Create, &["c1", "c2"]),
        change("c4", Action::Create, &["c3", "b"]),
        change("b", Action::Create, &["a"]),
    ]);
    let fake = Arc::new(Fake::default());
    let (report, batches) = run_chains(&p, fake.clone()).await;
    assert!(report.succeeded(), "{report:?}");
    let log = fake.log.lock().unwrap().clone();
    // c4 also waits for `b`, outside the chain: it cannot join it.
    assert!(log.contains(&"chain c1 c2 c3".to_string()), "{log:?}");
    let recorded: Vec<String> = batches.concat();
    assert_eq!(recorded.len(), 6, "each change recorded once: {batches:?}");
    assert!(recorded.iter().position(|k| k == "c3") > recorded.iter().position(|k| k == "c1"));
}

#[tokio::test]
async fn a_failure_stops_the_chain_its_dependents_are_skipped_and_the_rest_runs_after() {
    let p = plan(vec![
        change("c1", Action::Create, &[]),
        change("c2", Action::Create, &[]),
        change("c3", Action::Create, &["c2"]),
        change("c4", Action::Create, &[]),
    ]);
    let fake = Arc::new(Fake { failing: vec!["c2".into()], ..Fake::default() });
    let (report, batches) = run_chains(&p, fake.clone()).await;
    let outcome = |k: &str| report.outcomes[&Address::new(Kind::Host, k)].clone();
    assert_eq!(outcome("c1"), NodeOutcome::Applied);
    assert_eq!(outcome("c2"), NodeOutcome::Failed("c2 broke".into()));
    assert_eq!(outcome("c3"), NodeOutcome::Skipped { because: Address::new(Kind::Host, "c2") });
    assert_eq!(outcome("c4"), NodeOutcome::Applied, "independent of the failure: run in a chain of its own");
    let log = fake.log.lock().unwrap().clone();
    assert_eq!(log, ["chain c1 c2 c4 c3", "start c4", "end c4"], "alone, c4 runs as a change of its own");
    // The failed create is recorded tainted; c3 never started, so it is not recorded at all.
    let recorded: Vec<String> = batches.concat();
    assert_eq!(recorded, ["c1", "c2", "c4"]);
}

/// Ctrl-C during a chain: the change under way finishes and is recorded; the rest of the chain never
/// starts, and is neither recorded nor failed.
#[tokio::test]
async fn a_cancelled_chain_finishes_its_current_change_and_starts_no_more() {
    struct CancelsOnFirst(CancelFlag);
    impl Provider for CancelsOnFirst {
        fn apply(&self, _: Arc<ResourceChange>) -> ProviderFuture {
            let cancel = self.0.clone();
            Box::pin(async move {
                cancel.cancel();
                Ok(Some(Attributes::new()))
            })
        }
        fn chain_key(&self, _: &ResourceChange) -> Option<String> {
            Some("host".into())
        }
    }
    let p = plan(vec![
        change("c1", Action::Create, &[]),
        change("c2", Action::Create, &[]),
        change("c3", Action::Create, &[]),
    ]);
    let cancel = CancelFlag::default();
    let mut recorded = Vec::new();
    let report = Executor { parallelism: 4, drain: Duration::from_secs(30) }
        .run(
            &p,
            Arc::new(CancelsOnFirst(cancel.clone())),
            Arc::new(Quiet),
            cancel,
            |batch: &[(&ResourceChange, Completion<'_>)]| {
                recorded
                    .extend(batch.iter().map(|(c, done)| (c.address.key.clone(), matches!(done, Completion::Done(_)))));
                Ok(())
            },
        )
        .await;
    let outcome = |k: &str| report.outcomes[&Address::new(Kind::Host, k)].clone();
    assert_eq!(outcome("c1"), NodeOutcome::Applied);
    assert_eq!((outcome("c2"), outcome("c3")), (NodeOutcome::Cancelled, NodeOutcome::Cancelled));
    assert_eq!(recorded, [("c1".to_string(), true)]);
}

/// A chain's events reach the reporter in the order they happened, even when they arrive together: each
/// change starts after the one before it finished.
#[tokio::test]
async fn a_chains_starts_and_ends_are_reported_in_order() {
    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);
    impl Reporter for Events {
        fn event(&self, event: &ApplyEvent) {
            let line = match event {
                ApplyEvent::Started { address, .. } => format!("start {}", address.key),
                ApplyEvent::Finished { address, .. } => format!("end {}", address.key),
            };
            self.0.lock().unwrap().push(line);
        }
    }
    let p = plan(vec![
        change("c1", Action::Create, &[]),
        change("c2", Action::Create, &[]),
        change("c3", Action::Create, &[]),
    ]);
    let events = Arc::new(Events::default());
    Executor { parallelism: 4, drain: Duration::from_secs(30) }
        .run(
            &p,
            Arc::new(Chains(Arc::new(Fake::default()))),
            events.clone(),
            CancelFlag::default(),
            |_: &[(&ResourceChange, Completion<'_>)]| Ok(()),
        )
        .await;
    assert_eq!(*events.0.lock().unwrap(), ["start c1", "end c1", "start c2", "end c2", "start c3", "end c3"]);
}

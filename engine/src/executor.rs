//! The apply walk: changes of a plan run in dependency order, at most `parallelism` at a time. The walk
//! is separate from the work (the [`Provider`]) and from recording it (the `record` callback, which the
//! CLI points at the state store, one transaction per finished resource).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::BoxError;
use crate::plan::{Action, Plan, ResourceChange};
use crate::resource::{Address, Attributes};

pub type ProviderFuture = Pin<Box<dyn Future<Output = Result<Option<Attributes>, BoxError>> + Send + 'static>>;

/// Does the remote work of one change. Returns the attributes to record (`None` after a delete).
pub trait Provider: Send + Sync + 'static {
    fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    Applied,
    Failed(String),
    /// Not started because a dependency failed; names the root cause once.
    Skipped {
        because: Address,
    },
    /// Not started because the apply was interrupted.
    Cancelled,
}

#[derive(Clone, Debug)]
pub enum ApplyEvent {
    Started { address: Address, action: Action },
    Finished { address: Address, action: Action, outcome: NodeOutcome, elapsed: Duration },
}

/// Receives apply events; the CLI renders them as progress.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &ApplyEvent);
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub outcomes: BTreeMap<Address, NodeOutcome>,
}

impl ApplyReport {
    pub fn failed(&self) -> impl Iterator<Item = (&Address, &String)> {
        self.outcomes.iter().filter_map(|(a, o)| match o {
            NodeOutcome::Failed(e) => Some((a, e)),
            _ => None,
        })
    }

    pub fn count(&self, f: impl Fn(&NodeOutcome) -> bool) -> usize {
        self.outcomes.values().filter(|o| f(o)).count()
    }

    pub fn succeeded(&self) -> bool {
        self.outcomes.values().all(|o| *o == NodeOutcome::Applied)
    }
}

/// Set to stop starting new work (Ctrl-C); running work finishes.
#[derive(Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a change ended, as the state records it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Completion<'a> {
    /// Applied: keep these attributes (`None` for a deletion).
    Done(Option<&'a Attributes>),
    /// A create (or the create half of a replace) failed or was abandoned after it started: the host may
    /// hold part of it, so it is recorded tainted and replaced by the next apply, never assumed done.
    FailedPartway,
}

/// A change's provider result and how long it took; `None` in its place when it never started.
type Ran = (Result<Option<Attributes>, BoxError>, Duration);

pub struct Executor {
    pub parallelism: usize,
    /// After a cancellation, how long running work may still finish before it is abandoned (and its
    /// resources left unrecorded, so the next apply redoes them).
    pub drain: Duration,
}

struct Node {
    change: Arc<ResourceChange>,
    waiting_on: usize,
    dependents: Vec<usize>,
    is_delete: bool,
}

impl Executor {
    /// Runs every change of `plan` that is not a no-op. `record` is called once per finished change, in
    /// completion order, with the attributes to keep, and once per create that failed part-way; an error
    /// from it stops the walk (state must not fall behind the hosts).
    pub async fn run(
        &self,
        plan: &Plan,
        provider: Arc<dyn Provider>,
        reporter: Arc<dyn Reporter>,
        cancel: CancelFlag,
        mut record: impl FnMut(&ResourceChange, Completion<'_>) -> Result<(), BoxError>,
    ) -> ApplyReport {
        let creates = |c: &ResourceChange| matches!(c.action, Action::Create | Action::Replace);
        let mut nodes: Vec<Node> = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .map(|c| Node {
                change: Arc::new(c.clone()),
                waiting_on: 0,
                dependents: Vec::new(),
                is_delete: c.action == Action::Delete,
            })
            .collect();
        let index: HashMap<&Address, usize> = plan
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .enumerate()
            .map(|(i, c)| (&c.address, i))
            .collect();
        // Creates and updates wait for their dependencies; a delete waits for the deletion of whatever
        // depended on it.
        let mut edges = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            for dep in &node.change.depends_on {
                if let Some(&j) = index.get(dep) {
                    match (node.is_delete, nodes[j].is_delete) {
                        (false, false) => edges.push((j, i)),
                        (true, true) => edges.push((i, j)),
                        _ => {}
                    }
                }
            }
        }
        for (before, after) in edges {
            nodes[before].dependents.push(after);
            nodes[after].waiting_on += 1;
        }
        let mut creates_left = nodes.iter().filter(|n| !n.is_delete).count();
        let mut report = ApplyReport::default();
        let mut ready: VecDeque<usize> =
            nodes.iter().enumerate().filter(|(_, n)| n.waiting_on == 0 && !n.is_delete).map(|(i, _)| i).collect();
        let mut held_deletes: Vec<usize> =
            nodes.iter().enumerate().filter(|(_, n)| n.waiting_on == 0 && n.is_delete).map(|(i, _)| i).collect();
        if creates_left == 0 {
            ready.extend(held_deletes.drain(..));
        }
        let semaphore = Arc::new(Semaphore::new(self.parallelism.max(1)));
        // The changes whose provider was called: only those can be half-done.
        let started_set: Arc<std::sync::Mutex<std::collections::HashSet<usize>>> = Arc::default();
        // Upgrade steps drain their host: at most `max_unavailable` at once, whatever the parallelism.
        let rolling = Arc::new(Semaphore::new(plan.rollout.as_ref().map_or(1, |r| r.max_unavailable.max(1))));
        let mut running: JoinSet<(usize, Option<Ran>)> = JoinSet::new();
        let mut stopped = false;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut tasks: HashMap<tokio::task::Id, usize> = HashMap::new();
        loop {
            while let Some(i) = ready.pop_front() {
                if stopped || cancel.is_cancelled() {
                    report.outcomes.insert(nodes[i].change.address.clone(), NodeOutcome::Cancelled);
                    continue;
                }
                let change = nodes[i].change.clone();
                let provider = provider.clone();
                let semaphore = semaphore.clone();
                let reporter = reporter.clone();
                let rolling =
                    plan.rollout.as_ref().is_some_and(|r| r.contains(&change.address)).then(|| rolling.clone());
                let (cancel, started_set) = (cancel.clone(), started_set.clone());
                let handle = running.spawn(async move {
                    // The rollout's permit first, so that waiting steps hold no general permit.
                    let _rolling = match rolling {
                        Some(r) => Some(r.acquire_owned().await),
                        None => None,
                    };
                    let _permit = semaphore.acquire_owned().await;
                    // Work that waited for its permit past a cancellation never starts.
                    if cancel.is_cancelled() {
                        return (i, None);
                    }
                    started_set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(i);
                    reporter.event(&ApplyEvent::Started { address: change.address.clone(), action: change.action });
                    let started = Instant::now();
                    let result = provider.apply(change).await;
                    (i, Some((result, started.elapsed())))
                });
                tasks.insert(handle.id(), i);
            }
            // Wake up now and then to notice a cancellation; after one, running work gets `drain` to finish.
            let next = loop {
                if cancel.is_cancelled() {
                    let deadline = *drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.drain);
                    match tokio::time::timeout_at(deadline, running.join_next_with_id()).await {
                        Ok(next) => break next,
                        Err(_) => {
                            running.abort_all();
                            break None;
                        }
                    }
                }
                if let Ok(next) = tokio::time::timeout(Duration::from_millis(200), running.join_next_with_id()).await {
                    break next;
                }
            };
            let Some(joined) = next else { break };
            // A provider that panicked fails its own resource like any other error; its dependents are skipped.
            let (i, result, elapsed) = match joined {
                Ok((_, (i, Some((result, elapsed))))) => (i, result, elapsed),
                Ok((_, (i, None))) => {
                    report.outcomes.insert(nodes[i].change.address.clone(), NodeOutcome::Cancelled);
                    continue;
                }
                Err(e) => match tasks.get(&e.id()) {
                    Some(&i) => (i, Err(format!("internal error in the provider: {e}").into()), Duration::ZERO),
                    None => continue,
                },
            };
            let change = nodes[i].change.clone();
            let outcome = match result {
                Ok(attributes) => match record(&change, Completion::Done(attributes.as_ref())) {
                    Ok(()) => NodeOutcome::Applied,
                    Err(e) => {
                        stopped = true;
                        NodeOutcome::Failed(format!("applied, but the state could not record it: {e}"))
                    }
                },
                Err(e) if creates(&change) => match record(&change, Completion::FailedPartway) {
                    Ok(()) => NodeOutcome::Failed(e.to_string()),
                    Err(r) => {
                        stopped = true;
                        NodeOutcome::Failed(format!("{e}; and the state could not mark it tainted: {r}"))
                    }
                },
                Err(e) => NodeOutcome::Failed(e.to_string()),
            };
            reporter.event(&ApplyEvent::Finished {
                address: change.address.clone(),
                action: change.action,
                outcome: outcome.clone(),
                elapsed,
            });
            let succeeded = outcome == NodeOutcome::Applied;
            report.outcomes.insert(change.address.clone(), outcome);
            if !nodes[i].is_delete {
                creates_left -= 1;
            }
            if succeeded {
                for d in nodes[i].dependents.clone() {
                    nodes[d].waiting_on -= 1;
                    if nodes[d].waiting_on == 0 {
                        if nodes[d].is_delete && creates_left > 0 {
                            held_deletes.push(d);
                        } else {
                            ready.push_back(d);
                        }
                    }
                }
            } else {
                let skipped = skip_dependents(&nodes, i, &mut report);
                for d in skipped {
                    if !nodes[d].is_delete {
                        creates_left -= 1;
                    }
                    reporter.event(&ApplyEvent::Finished {
                        address: nodes[d].change.address.clone(),
                        action: nodes[d].change.action,
                        outcome: NodeOutcome::Skipped { because: change.address.clone() },
                        elapsed: Duration::ZERO,
                    });
                }
            }
            if creates_left == 0 {
                ready.extend(held_deletes.drain(..));
            }
        }
        // Work abandoned after the drain bound: only what had started may have touched its host.
        let started = started_set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for &i in tasks.values().filter(|i| started.contains(i)) {
            let change = &nodes[i].change;
            if !report.outcomes.contains_key(&change.address) && creates(change) {
                let _ = record(change, Completion::FailedPartway);
            }
        }
        for node in &nodes {
            report.outcomes.entry(node.change.address.clone()).or_insert(NodeOutcome::Cancelled);
        }
        report
    }
}

/// Marks everything downstream of `failed` as skipped (once each), returning what was marked.
fn skip_dependents(nodes: &[Node], failed: usize, report: &mut ApplyReport) -> Vec<usize> {
    let because = nodes[failed].change.address.clone();
    let mut stack = nodes[failed].dependents.clone();
    let mut marked = Vec::new();
    while let Some(d) = stack.pop() {
        let address = &nodes[d].change.address;
        if report.outcomes.contains_key(address) {
            continue;
        }
        report.outcomes.insert(address.clone(), NodeOutcome::Skipped { because: because.clone() });
        marked.push(d);
        stack.extend(nodes[d].dependents.iter().copied());
    }
    marked
}

#[cfg(test)]
mod tests {
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
            .run(p, Arc::new(Shared(fake)), Arc::new(Quiet), cancel, |c, completion| {
                if let Completion::Done(_) = completion {
                    recorded.push(c.address.key.clone());
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
            .run(&p, Arc::new(Shared(fake)), Arc::new(Quiet), CancelFlag::default(), |c, completion| {
                assert_eq!(completion, Completion::FailedPartway, "{}", c.address);
                tainted.push(c.address.key.clone());
                Ok(())
            })
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
            .run(&p, Arc::new(Shared(Arc::new(Fake::default()))), Arc::new(Quiet), cancel.clone(), |c, completion| {
                assert!(matches!(completion, Completion::Done(_)));
                recorded.push(c.address.key.clone());
                cancel.cancel();
                Ok(())
            })
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
            .run(&p, Arc::new(Panics), Arc::new(Quiet), CancelFlag::default(), |_, _| Ok(()))
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
            .run(&p, Arc::new(Slow), Arc::new(Quiet), cancel, |c, completion| {
                recorded.push((c.address.key.clone(), completion == Completion::FailedPartway));
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
}

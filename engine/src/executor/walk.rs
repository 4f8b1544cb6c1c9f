//! The walk itself: the graph of a plan's changes, what is ready, what runs, and what each ending
//! releases or skips.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{
    ApplyEvent, ApplyReport, CancelFlag, ChainProgress, Completion, Executor, Message, NodeOutcome, Provider, Record,
    Reporter,
};
use crate::error::BoxError;
use crate::plan::{Action, Plan, ResourceChange};
use crate::resource::{Address, Attributes};

/// The longest chain one round trip carries.
const MAX_CHAIN: usize = 64;

/// How often a walk waiting for work looks at the cancel flag.
const TICK: Duration = Duration::from_millis(200);

struct Node {
    change: Arc<ResourceChange>,
    /// Dependencies not applied yet.
    waiting_on: usize,
    dependents: Vec<usize>,
    dependencies: Vec<usize>,
    is_delete: bool,
    /// Its chain key, when it may run in a chain.
    chain: Option<String>,
    /// Part of the rollout: it waits for the rollout's permit, and runs alone.
    rolling: bool,
    /// Handed to running work (alone or in a chain).
    assigned: bool,
    started: Option<Instant>,
}

impl Node {
    fn creates(&self) -> bool {
        matches!(self.change.action, Action::Create | Action::Replace)
    }
}

type Finished = (usize, Result<Option<Attributes>, BoxError>, Instant);

pub(super) struct Walk {
    nodes: Vec<Node>,
    ready: VecDeque<usize>,
    /// Deletes whose dependents are gone, held until every create and update ended.
    held_deletes: Vec<usize>,
    creates_left: usize,
    report: ApplyReport,
    /// The state could not record something: nothing more starts.
    stopped: bool,
    /// Set with `stopped`, for the chains under way.
    halt: Arc<std::sync::atomic::AtomicBool>,
    provider: Arc<dyn Provider>,
    reporter: Arc<dyn Reporter>,
    cancel: CancelFlag,
    permits: Arc<Semaphore>,
    /// Upgrade steps drain their host: at most `max_unavailable` at once, whatever the parallelism.
    rolling: Arc<Semaphore>,
    drain: Duration,
    sink: UnboundedSender<Message>,
    messages: UnboundedReceiver<Message>,
    running: JoinSet<()>,
    /// The nodes each running task was handed.
    tasks: HashMap<tokio::task::Id, Vec<usize>>,
}

/// The changes among `deps` and, through every unchanged resource among them, what it depends on: a
/// resource with nothing to do still orders what it sits between (a guest after an imported init still
/// waits for the image the init depended on).
fn through_unchanged(
    deps: &[Address],
    index: &HashMap<&Address, usize>,
    unchanged: &HashMap<&Address, &ResourceChange>,
) -> Vec<usize> {
    let mut found = Vec::new();
    let mut seen: std::collections::HashSet<&Address> = std::collections::HashSet::new();
    let mut stack: Vec<&Address> = deps.iter().collect();
    while let Some(dep) = stack.pop() {
        if !seen.insert(dep) {
            continue;
        }
        if let Some(&j) = index.get(dep) {
            found.push(j);
        } else if let Some(change) = unchanged.get(dep) {
            stack.extend(change.depends_on.iter());
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

impl Walk {
    pub(super) fn new(
        plan: &Plan,
        provider: Arc<dyn Provider>,
        reporter: Arc<dyn Reporter>,
        cancel: CancelFlag,
        executor: &Executor,
    ) -> Self {
        let changes: Vec<&ResourceChange> = plan.changes.iter().filter(|c| c.action != Action::NoOp).collect();
        let mut nodes: Vec<Node> = changes
            .iter()
            .map(|c| Node {
                change: Arc::new((*c).clone()),
                waiting_on: 0,
                dependents: Vec::new(),
                dependencies: Vec::new(),
                is_delete: c.action == Action::Delete,
                chain: if c.action == Action::Delete { None } else { provider.chain_key(c) },
                rolling: plan.rollout.as_ref().is_some_and(|r| r.contains(&c.address)),
                assigned: false,
                started: None,
            })
            .collect();
        let index: HashMap<_, usize> = changes.iter().enumerate().map(|(i, c)| (&c.address, i)).collect();
        let unchanged: HashMap<_, &ResourceChange> =
            plan.changes.iter().filter(|c| c.action == Action::NoOp).map(|c| (&c.address, c)).collect();
        // Creates and updates wait for their dependencies; a delete waits for the deletion of whatever
        // depended on it.
        let mut edges = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            for j in through_unchanged(&node.change.depends_on, &index, &unchanged) {
                match (node.is_delete, nodes[j].is_delete) {
                    (false, false) => edges.push((j, i)),
                    (true, true) => edges.push((i, j)),
                    _ => {}
                }
            }
        }
        for (before, after) in edges {
            nodes[before].dependents.push(after);
            nodes[after].dependencies.push(before);
            nodes[after].waiting_on += 1;
        }
        let creates_left = nodes.iter().filter(|n| !n.is_delete).count();
        let free = |want_delete: bool| {
            nodes
                .iter()
                .enumerate()
                .filter(move |(_, n)| n.waiting_on == 0 && n.is_delete == want_delete)
                .map(|(i, _)| i)
        };
        let ready: VecDeque<usize> = free(false).collect();
        let held_deletes: Vec<usize> = free(true).collect();
        let (sink, messages) = mpsc::unbounded_channel();
        let max_unavailable = plan.rollout.as_ref().map_or(1, |r| r.max_unavailable.max(1));
        let mut walk = Walk {
            nodes,
            ready,
            held_deletes,
            creates_left,
            report: ApplyReport::default(),
            stopped: false,
            halt: Arc::default(),
            provider,
            reporter,
            cancel,
            permits: Arc::new(Semaphore::new(executor.parallelism.max(1))),
            rolling: Arc::new(Semaphore::new(max_unavailable)),
            drain: executor.drain,
            sink,
            messages,
            running: JoinSet::new(),
            tasks: HashMap::new(),
        };
        walk.release_deletes();
        walk
    }

    pub(super) async fn run(mut self, record: &mut Record<'_>) -> ApplyReport {
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            self.dispatch();
            if self.running.is_empty() {
                break;
            }
            // After a cancellation, running work gets `drain` to finish.
            let wake = match (self.cancel.is_cancelled(), drain_deadline) {
                (true, None) => *drain_deadline.insert(tokio::time::Instant::now() + self.drain),
                (true, Some(deadline)) => deadline,
                (false, _) => tokio::time::Instant::now() + TICK,
            };
            tokio::select! {
                // Messages first: a task's messages are all sent before it ends.
                biased;
                Some(message) = self.messages.recv() => self.receive(message, record),
                Some(joined) = self.running.join_next_with_id() => {
                    self.receive_pending(record);
                    self.task_ended(joined, record);
                }
                _ = tokio::time::sleep_until(wake) => {
                    if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        self.running.abort_all();
                        self.receive_pending(record);
                        break;
                    }
                }
            }
        }
        self.finish(record)
    }

    /// Starts everything ready: alone, or with the ready changes (and their dependents) of its chain.
    fn dispatch(&mut self) {
        while let Some(i) = self.ready.pop_front() {
            if self.stopped || self.cancel.is_cancelled() {
                self.report.outcomes.insert(self.nodes[i].change.address.clone(), NodeOutcome::Cancelled);
                continue;
            }
            let members = self.chain_from(i);
            for &m in &members {
                self.nodes[m].assigned = true;
            }
            let handle = if members.len() == 1 { self.spawn_one(i) } else { self.spawn_chain(members.clone()) };
            self.tasks.insert(handle.id(), members);
        }
    }

    /// `first` and what may run after it in the same round trip: the ready changes of its chain key, then
    /// dependents of the chain whose every unfinished dependency is in it, in plan order.
    fn chain_from(&mut self, first: usize) -> Vec<usize> {
        let mut members = vec![first];
        let Some(key) = self.nodes[first].chain.clone().filter(|_| !self.nodes[first].rolling) else {
            return members;
        };
        let nodes = &self.nodes;
        let joins = |j: usize| !nodes[j].rolling && nodes[j].chain.as_ref() == Some(&key);
        self.ready.retain(|&j| {
            let take = members.len() < MAX_CHAIN && joins(j);
            if take {
                members.push(j);
            }
            !take
        });
        let mut k = 0;
        while k < members.len() && members.len() < MAX_CHAIN {
            for &d in &nodes[members[k]].dependents {
                let settled = |x: &usize| {
                    members.contains(x)
                        || self.report.outcomes.get(&nodes[*x].change.address) == Some(&NodeOutcome::Applied)
                };
                if joins(d) && !nodes[d].assigned && !members.contains(&d) && nodes[d].dependencies.iter().all(settled)
                {
                    members.push(d);
                }
            }
            k += 1;
        }
        members.truncate(MAX_CHAIN);
        members
    }

    fn spawn_one(&mut self, i: usize) -> tokio::task::AbortHandle {
        let node = &self.nodes[i];
        let (change, provider, sink) = (node.change.clone(), self.provider.clone(), self.sink.clone());
        let (permits, cancel) = (self.permits.clone(), self.cancel.clone());
        let rolling = node.rolling.then(|| self.rolling.clone());
        self.running.spawn(async move {
            // The rollout's permit first, so that waiting steps hold no general permit.
            let _rolling = match rolling {
                Some(r) => Some(r.acquire_owned().await),
                None => None,
            };
            let _permit = permits.acquire_owned().await;
            // Work that waited for its permit past a cancellation never starts.
            if cancel.is_cancelled() {
                return;
            }
            let _ = sink.send(Message::Started(i, Instant::now()));
            let result = provider.apply(change).await;
            let _ = sink.send(Message::Done(i, result, Instant::now()));
        })
    }

    fn spawn_chain(&mut self, members: Vec<usize>) -> tokio::task::AbortHandle {
        let changes: Vec<_> = members.iter().map(|&m| self.nodes[m].change.clone()).collect();
        let progress =
            ChainProgress { members, sink: self.sink.clone(), cancel: self.cancel.clone(), halt: self.halt.clone() };
        let (permits, provider) = (self.permits.clone(), self.provider.clone());
        self.running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if progress.cancelled() {
                return;
            }
            provider.apply_chain(changes, progress).await;
        })
    }

    /// Takes `first` and every message already waiting, records what finished in one write, then reports
    /// the starts and ends in the order they happened (a chain's next change starts after the one before
    /// it ended).
    fn receive(&mut self, first: Message, record: &mut Record<'_>) {
        let (mut finished, mut order) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Started(i, at) => {
                    self.nodes[i].started = Some(at);
                    order.push((i, true));
                }
                Message::Done(i, result, at) => {
                    finished.push((i, result, at));
                    order.push((i, false));
                }
            }
            next = self.messages.try_recv().ok();
        }
        let mut ended: HashMap<usize, (NodeOutcome, Duration)> =
            self.record_batch(finished, record).into_iter().map(|(i, o, e)| (i, (o, e))).collect();
        for (i, start) in order {
            if start {
                let change = &self.nodes[i].change;
                self.reporter.event(&ApplyEvent::Started { address: change.address.clone(), action: change.action });
            } else if let Some((outcome, elapsed)) = ended.remove(&i) {
                self.conclude(i, outcome, elapsed);
            }
        }
        self.release_deletes();
    }

    fn receive_pending(&mut self, record: &mut Record<'_>) {
        if let Ok(first) = self.messages.try_recv() {
            self.receive(first, record);
        }
    }

    /// A task ended: what it was handed and never reported either failed with it (it started) or goes back
    /// to waiting (it did not: a chain stopped early, or the apply was interrupted).
    fn task_ended(&mut self, joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>, record: &mut Record<'_>) {
        let (id, error) = match joined {
            Ok((id, ())) => (id, None),
            // A provider that panicked fails its own resource like any other error.
            Err(e) => (e.id(), Some(format!("internal error in the provider: {e}"))),
        };
        let members = self.tasks.remove(&id).unwrap_or_default();
        // A task that ended without starting anything, uninterrupted, would only be handed it again.
        let went_on = self.cancel.is_cancelled() || members.iter().any(|&i| self.nodes[i].started.is_some());
        let mut failed = Vec::new();
        for i in members {
            self.nodes[i].assigned = false;
            if self.report.outcomes.contains_key(&self.nodes[i].change.address) {
                continue;
            }
            if self.nodes[i].started.is_some() || !went_on {
                let why = error.clone().unwrap_or_else(|| "the provider ended without saying how it went".into());
                failed.push((i, Err(why.into()), Instant::now()));
            } else if self.nodes[i].waiting_on == 0 {
                if self.nodes[i].is_delete {
                    self.held_deletes.push(i);
                } else {
                    self.ready.push_back(i);
                }
            }
        }
        self.settle(failed, record);
        self.release_deletes();
    }

    /// Records `finished` in one write, then reports each and releases (or skips) what waited for it.
    fn settle(&mut self, finished: Vec<Finished>, record: &mut Record<'_>) {
        for (i, outcome, elapsed) in self.record_batch(finished, record) {
            self.conclude(i, outcome, elapsed);
        }
        self.release_deletes();
    }

    /// Records `finished` in one write; returns each one's outcome and time, in the same order.
    fn record_batch(
        &mut self,
        finished: Vec<Finished>,
        record: &mut Record<'_>,
    ) -> Vec<(usize, NodeOutcome, Duration)> {
        // A late word on a change that already ended (skipped meanwhile) changes nothing.
        let finished: Vec<Finished> = finished
            .into_iter()
            .filter(|(i, _, _)| !self.report.outcomes.contains_key(&self.nodes[*i].change.address))
            .collect();
        let batch: Vec<(&ResourceChange, Completion<'_>)> = finished
            .iter()
            .filter_map(|(i, result, _)| {
                let node = &self.nodes[*i];
                match result {
                    Ok(attributes) => Some((&*node.change, Completion::Done(attributes.as_ref()))),
                    Err(_) if node.creates() => Some((&*node.change, Completion::FailedPartway)),
                    Err(_) => None,
                }
            })
            .collect();
        let recorded = if batch.is_empty() { Ok(()) } else { record(&batch).map_err(|e| e.to_string()) };
        drop(batch);
        if recorded.is_err() {
            self.stopped = true;
            // Chains under way start nothing more either: it could not be recorded.
            self.halt.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        finished
            .into_iter()
            .map(|(i, result, at)| {
                let node = &self.nodes[i];
                let outcome = match (result, &recorded) {
                    (Ok(_), Ok(())) => NodeOutcome::Applied,
                    (Ok(_), Err(r)) => NodeOutcome::Failed(format!("applied, but the state could not record it: {r}")),
                    (Err(e), Err(r)) if node.creates() => {
                        NodeOutcome::Failed(format!("{e}; and the state could not mark it tainted: {r}"))
                    }
                    (Err(e), _) => NodeOutcome::Failed(e.to_string()),
                };
                (i, outcome, node.started.map_or(Duration::ZERO, |s| at.saturating_duration_since(s)))
            })
            .collect()
    }

    /// Reports `i`'s outcome and passes it on: dependents get closer to ready, or are skipped.
    fn conclude(&mut self, i: usize, outcome: NodeOutcome, elapsed: Duration) {
        let change = self.nodes[i].change.clone();
        self.reporter.event(&ApplyEvent::Finished {
            address: change.address.clone(),
            action: change.action,
            outcome: outcome.clone(),
            elapsed,
        });
        let succeeded = outcome == NodeOutcome::Applied;
        self.report.outcomes.insert(change.address.clone(), outcome);
        if !self.nodes[i].is_delete {
            self.creates_left -= 1;
        }
        if succeeded {
            for d in self.nodes[i].dependents.clone() {
                self.nodes[d].waiting_on -= 1;
                if self.nodes[d].waiting_on > 0 || self.nodes[d].assigned {
                    continue;
                }
                if self.nodes[d].is_delete {
                    self.held_deletes.push(d);
                } else {
                    self.ready.push_back(d);
                }
            }
        } else {
            self.skip_dependents(i);
        }
    }

    /// Marks everything downstream of `failed` as skipped (once each).
    fn skip_dependents(&mut self, failed: usize) {
        let because = self.nodes[failed].change.address.clone();
        let mut stack = self.nodes[failed].dependents.clone();
        while let Some(d) = stack.pop() {
            let node = &self.nodes[d];
            if self.report.outcomes.contains_key(&node.change.address) {
                continue;
            }
            let outcome = NodeOutcome::Skipped { because: because.clone() };
            self.reporter.event(&ApplyEvent::Finished {
                address: node.change.address.clone(),
                action: node.change.action,
                outcome: outcome.clone(),
                elapsed: Duration::ZERO,
            });
            self.report.outcomes.insert(node.change.address.clone(), outcome);
            if !node.is_delete {
                self.creates_left -= 1;
            }
            stack.extend(node.dependents.iter().copied());
        }
    }

    /// Deletes run once every create and update ended.
    fn release_deletes(&mut self) {
        if self.creates_left == 0 {
            self.ready.extend(self.held_deletes.drain(..));
        }
    }

    /// Work abandoned after the drain bound: what had started may have touched its host, so its creates
    /// are recorded tainted; everything without an outcome is cancelled.
    fn finish(mut self, record: &mut Record<'_>) -> ApplyReport {
        let abandoned: Vec<(&ResourceChange, Completion<'_>)> = self
            .nodes
            .iter()
            .filter(|n| n.started.is_some() && n.creates() && !self.report.outcomes.contains_key(&n.change.address))
            .map(|n| (&*n.change, Completion::FailedPartway))
            .collect();
        if !abandoned.is_empty() {
            let _ = record(&abandoned);
        }
        drop(abandoned);
        for node in &self.nodes {
            self.report.outcomes.entry(node.change.address.clone()).or_insert(NodeOutcome::Cancelled);
        }
        self.report
    }
}

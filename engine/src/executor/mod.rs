//! The apply walk: changes of a plan run in dependency order, at most `parallelism` at a time. The walk
//! is separate from the work (the [`Provider`]) and from recording it (the `record` callback, which the
//! CLI points at the state store, one transaction per batch of changes that finished together).
//!
//! A host's short changes that are ready together (or become ready as the ones before them finish) run as
//! one *chain*: the provider does them one after another in one round trip, and reports each as it ends,
//! so each is recorded on its own and a failure stops the chain there. A chain counts as one unit of
//! `parallelism`: it does one thing at a time.

mod walk;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::error::BoxError;
use crate::plan::{Action, Plan, ResourceChange};
use crate::resource::{Address, Attributes};

pub type ProviderFuture = Pin<Box<dyn Future<Output = Result<Option<Attributes>, BoxError>> + Send + 'static>>;
pub type ChainFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Does the remote work of changes.
pub trait Provider: Send + Sync + 'static {
    /// Does one change. Returns the attributes to record (`None` after a delete).
    fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture;

    /// The key of the chains `change` may join (its host, say), or `None` when it runs alone. Only
    /// changes that are short and need nothing from the workstation between them should have one.
    fn chain_key(&self, _change: &ResourceChange) -> Option<String> {
        None
    }

    /// Does `changes` in order: says when each starts and how it ended through `progress`, and starts none
    /// after one failed. The default applies them one after another.
    fn apply_chain(&self, changes: Vec<Arc<ResourceChange>>, progress: ChainProgress) -> ChainFuture {
        let work: Vec<ProviderFuture> = changes.into_iter().map(|c| self.apply(c)).collect();
        Box::pin(async move {
            for (k, work) in work.into_iter().enumerate() {
                if progress.cancelled() {
                    return;
                }
                progress.started(k);
                let result = work.await;
                let failed = result.is_err();
                progress.done(k, result);
                if failed {
                    return;
                }
            }
        })
    }
}

/// What a chain's provider says of its changes, by their position in the chain.
pub struct ChainProgress {
    members: Vec<usize>,
    sink: UnboundedSender<Message>,
    cancel: CancelFlag,
    /// Set when the state could not record a change: nothing more may start.
    halt: Arc<AtomicBool>,
}

impl ChainProgress {
    /// The change at `position` started (its host may hold part of it from now on).
    pub fn started(&self, position: usize) {
        if let Some(&i) = self.members.get(position) {
            let _ = self.sink.send(Message::Started(i, Instant::now()));
        }
    }

    /// The change at `position` ended with `result`.
    pub fn done(&self, position: usize, result: Result<Option<Attributes>, BoxError>) {
        if let Some(&i) = self.members.get(position) {
            let _ = self.sink.send(Message::Done(i, result, Instant::now()));
        }
    }

    /// The apply was interrupted (or its state cannot record any more): start nothing more.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.halt.load(Ordering::SeqCst)
    }
}

/// What running work tells the walk.
enum Message {
    Started(usize, Instant),
    Done(usize, Result<Option<Attributes>, BoxError>, Instant),
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
    pub outcomes: std::collections::BTreeMap<Address, NodeOutcome>,
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

/// Records a batch of finished changes, all or none; an error stops the walk.
pub type Record<'r> = dyn FnMut(&[(&ResourceChange, Completion<'_>)]) -> Result<(), BoxError> + 'r;

pub struct Executor {
    pub parallelism: usize,
    /// After a cancellation, how long running work may still finish before it is abandoned (and its
    /// resources left unrecorded, so the next apply redoes them).
    pub drain: Duration,
}

impl Executor {
    /// Runs every change of `plan` that is not a no-op. `record` is called with the changes that finished
    /// together (in completion order, with the attributes to keep, and the creates that failed part-way)
    /// before any of them is reported; an error from it stops the walk (state must not fall behind the
    /// hosts).
    pub async fn run(
        &self,
        plan: &Plan,
        provider: Arc<dyn Provider>,
        reporter: Arc<dyn Reporter>,
        cancel: CancelFlag,
        mut record: impl FnMut(&[(&ResourceChange, Completion<'_>)]) -> Result<(), BoxError>,
    ) -> ApplyReport {
        walk::Walk::new(plan, provider, reporter, cancel, self).run(&mut record).await
    }
}

#[cfg(test)]
mod tests;

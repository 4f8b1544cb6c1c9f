//! sealer's core: the Clusterfile model and its validation, the resource graph, and the planner.
//!
//! Architecture invariant: this crate does no I/O. It reaches hosts and storage only through the traits
//! it defines ([`StateStore`]), and it never names an SSH, database, registry or terminal crate.

pub mod clusterfile;
mod compile;
mod diagnostic;
mod error;
mod executor;
mod graph;
pub mod kubeadm;
mod plan;
mod resource;
pub mod schema;
mod source_map;
mod state;
pub mod template;

pub use clusterfile::{parse, Clusterfile, Parsed};
pub use compile::{compile, ImageFacts};
pub use diagnostic::{Diagnostic, Diagnostics, Location, Severity};
pub use error::{BoxError, GraphError, KubeadmError, PlanError, StateError};
pub use executor::{
    ApplyEvent, ApplyReport, CancelFlag, ChainFuture, ChainProgress, Completion, Executor, NodeOutcome, Provider,
    ProviderFuture, Reporter,
};
pub use graph::{GraphBuilder, ResourceGraph};
pub use plan::{
    dangerous_removals, decide_action, plan, refresh_only_plan, Action, Decision, Plan, PlanOptions, Reason,
    ResourceChange, Rollout, RolloutStep, Summary, PLAN_FORMAT_VERSION,
};
pub use resource::{Address, AddressError, Attributes, Kind, Resource, Value};
pub use state::{
    HistoryEntry, LockInfo, RecordedLogin, ResourceStatus, ResourceWrite, State, StateStore, StoredResource,
};

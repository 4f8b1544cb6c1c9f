//! Errors of the engine. Input problems are [`crate::Diagnostics`]; these are the rest.

use thiserror::Error;

/// A graph the compiler should never build; reaching one is a bug in sealer, not in the Clusterfile.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("internal error: resource `{0}` compiled twice")]
    Duplicate(String),
    #[error("internal error: `{from}` depends on `{to}`, which is not in the graph")]
    Dangling { from: String, to: String },
    #[error("internal error: dependency cycle through `{0}`")]
    Cycle(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("target `{0}` is neither in the Clusterfile nor in the state")]
    UnknownTarget(String),
    #[error("saved plan is for cluster `{plan}`, the Clusterfile declares `{state}`")]
    OtherCluster { plan: String, state: String },
    #[error("saved plan is stale: it was made for another state (lineage `{0}`)")]
    OtherLineage(String),
    #[error("saved plan is stale: the state moved from serial {planned} to {now} since it was made; plan again")]
    Stale { planned: u64, now: u64 },
    #[error(
        "saved plan is stale: what it applies changed since it was made (an image rebuilt under the same name, \
         a Config's data, the Clusterfile): {}; plan again",
        .0.join("; ")
    )]
    Moved(Vec<String>),
    #[error("`{address}` cannot go from Kubernetes {from} to {to}: {why}")]
    Upgrade { address: String, from: String, to: String, why: crate::kubeadm::UpgradeRefusal },
    #[error("`{host}` cannot become the first master: {why}")]
    FirstMaster { host: String, why: String },
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state is locked by {holder} (lock id `{id}`); wait for it to finish, or run `sealer force-unlock {id}` if it died")]
    Locked { id: String, holder: String },
    #[error("no lock with id `{0}` is held")]
    NoSuchLock(String),
    #[error("no cluster `{0}` in the state")]
    NoSuchCluster(String),
    #[error("state backend: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// A kubeadm configuration document that cannot be read (the image's `etc/kubeadm.yml`, or a merged one).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KubeadmError {
    #[error("document {document}: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {document}: `{kind}` is not a kubeadm configuration kind")]
    UnknownKind { document: usize, kind: String },
}

/// What a provider or the state recorder reports when a change failed: any error, shown with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

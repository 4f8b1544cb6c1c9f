//! What the engine knows of the world between runs, and the trait through which it is stored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::resource::{Address, Attributes, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceStatus {
    /// Applied completely.
    Ready,
    /// An apply failed half-way through it: it is replaced, never assumed done.
    Tainted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResource {
    pub address: Address,
    pub host: Option<IpAddr>,
    pub status: ResourceStatus,
    pub attributes: Attributes,
    /// Dependencies when it was applied, so that it is deleted in the right order once the Clusterfile no
    /// longer has it.
    pub depends_on: Vec<Address>,
}

/// The recorded state of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub cluster: String,
    /// Set once when the state is created; a plan made against another lineage is refused.
    pub lineage: Option<String>,
    /// Incremented by every write.
    pub serial: u64,
    pub resources: BTreeMap<Address, StoredResource>,
}

impl State {
    pub fn empty(cluster: &str) -> Self {
        State { cluster: cluster.to_string(), ..Default::default() }
    }

    /// The state as it may leave the workstation (the copy kept in the cluster): sealed secrets become
    /// `Sensitive`, without a value.
    pub fn without_sealed_secrets(mut self) -> Self {
        for value in self.resources.values_mut().flat_map(|r| r.attributes.values_mut()) {
            if let Value::Sealed(_) = value {
                *value = Value::Sensitive;
            }
        }
        self
    }
}

/// Who holds a state lock, shown to whoever is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub cluster: String,
    /// `user@host`
    pub who: String,
    pub pid: u32,
    pub command: String,
    /// RFC 3339, UTC.
    pub created: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}, `{}`, since {})", self.who, self.pid, self.command, self.created)
    }
}

/// One apply (or other write) as recorded in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub serial: u64,
    pub command: String,
    pub who: String,
    pub at: String,
    pub summary: String,
}

/// Storage of [`State`]. Reads never create or change anything; writes happen under a lock, each in one
/// transaction that bumps the serial.
pub trait StateStore {
    /// The state of `cluster`, or `None` when it was never written.
    fn load(&self, cluster: &str) -> Result<Option<State>, StateError>;
    /// Names of the clusters held.
    fn clusters(&self) -> Result<Vec<String>, StateError>;
    /// Takes the lock of `cluster`, or says who holds it.
    fn lock(&mut self, cluster: &str, who: &str, pid: u32, command: &str) -> Result<LockInfo, StateError>;
    fn unlock(&mut self, lock: &LockInfo) -> Result<(), StateError>;
    /// Releases a lock whatever its holder (the holder died); returns what was released.
    fn force_unlock(&mut self, lock_id: &str) -> Result<LockInfo, StateError>;
    /// Records one resource (or its deletion with `None`) and returns the new serial.
    fn put_resource(
        &mut self,
        lock: &LockInfo,
        address: &Address,
        resource: Option<&StoredResource>,
    ) -> Result<u64, StateError>;
    fn record_history(&mut self, lock: &LockInfo, summary: &str) -> Result<(), StateError>;
    fn history(&self, cluster: &str) -> Result<Vec<HistoryEntry>, StateError>;
    /// Writes a whole state with its history into a store that does not hold that cluster yet, keeping its
    /// lineage and serial, so that saved plans and other working copies see the same state after a move
    /// between backends (`sealer state migrate`).
    fn import(&mut self, lock: &LockInfo, state: &State, history: &[HistoryEntry]) -> Result<(), StateError>;
}

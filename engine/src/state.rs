//! What the engine knows of the world between runs, and the trait through which it is stored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::executor::Completion;
use crate::plan::ResourceChange;
use crate::resource::{Address, Attributes, Kind, Value};
use crate::schema::{self, Schema};

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

impl StoredResource {
    /// What the state keeps once `change` finished as `completion`: the attributes the provider returned
    /// (nothing after a delete), or, for a create that failed part-way, the attributes it was going for,
    /// tainted so that the next apply replaces it.
    pub fn from_completion(change: &ResourceChange, completion: Completion<'_>) -> Option<StoredResource> {
        let (attributes, status) = match completion {
            Completion::Done(attributes) => (attributes?.clone(), ResourceStatus::Ready),
            Completion::FailedPartway => (change.after.clone().unwrap_or_default(), ResourceStatus::Tainted),
        };
        Some(StoredResource {
            address: change.address.clone(),
            host: change.host,
            status,
            attributes,
            depends_on: change.depends_on.clone(),
        })
    }

    /// How the host of a recorded `host.IP` logged in at its last apply, for reaching it once the
    /// Clusterfile no longer lists it (it is being removed).
    pub fn recorded_login(&self) -> Result<Option<RecordedLogin>, schema::SchemaError> {
        if self.address.kind != Kind::Host {
            return Ok(None);
        }
        let host = schema::Host::from_attributes(&self.attributes)?;
        let sealed = |s: Option<schema::Secret>| match s {
            Some(schema::Secret::Sealed(s)) => Some(s),
            _ => None,
        };
        Ok(Some(RecordedLogin {
            user: Some(host.ssh_user).filter(|u| !u.is_empty()),
            port: u16::try_from(host.ssh_port).ok().filter(|p| *p != 0),
            password_only: host.ssh_private_key.is_none() && host.ssh_auth == "password",
            private_key: host.ssh_private_key,
            sealed_password: sealed(host.ssh_password),
            sealed_key_passphrase: sealed(host.ssh_key_passphrase),
        }))
    }
}

/// A removed host's login as the state recorded it; what is not recorded falls back to the cluster-wide
/// `spec.ssh`. Secrets stay sealed here: only the holder of the state key opens them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordedLogin {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub private_key: Option<String>,
    /// It logged in with its password only: the cluster-wide key must not be offered.
    pub password_only: bool,
    pub sealed_password: Option<String>,
    pub sealed_key_passphrase: Option<String>,
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
        for resource in self.resources.values_mut() {
            resource.attributes = without_sealed(&resource.attributes);
        }
        self
    }
}

/// Attributes as they may leave the state (a plan, a plan file, the cluster's copy): a secret the state
/// keeps sealed is `Sensitive`, so no ciphertext goes along (hosts being removed are reached from the
/// state itself).
pub(crate) fn without_sealed(attributes: &Attributes) -> Attributes {
    let mut shown = attributes.clone();
    for value in shown.values_mut() {
        if let Value::Sealed(_) = value {
            *value = Value::Sensitive;
        }
    }
    shown
}

impl State {
    /// Checks a state that comes from outside the workstation (the cluster's copy, which anyone who may
    /// write ConfigMaps in kube-system could edit) the way Clusterfile input is checked, before any of it
    /// can reach a host: names, paths, plugin types, env names, labels and taints. Returns every problem.
    pub fn check_imported(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (key, r) in &self.resources {
            if r.address != *key {
                problems.push(format!("`{key}`: its record names another address, `{}`", r.address));
            }
            problems
                .extend(schema::problems(r.address.kind, &r.attributes).into_iter().map(|p| format!("`{key}`: {p}")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
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
    /// The lock this one replaced: one of a process of this machine that is gone (killed), shown so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
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

/// One record of [`StateStore::write_resources`]: `resource` under `address` (its deletion with `None`),
/// and the record at `from` removed (a resource the plan moved: see
/// [`crate::ResourceChange::previous_address`]).
#[derive(Clone, Copy, Debug)]
pub struct ResourceWrite<'a> {
    pub from: Option<&'a Address>,
    pub address: &'a Address,
    pub resource: Option<&'a StoredResource>,
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
    /// Records every write of `writes` in one transaction that bumps the serial once; returns the new
    /// serial. An apply records the resources that finished together in one write (one commit, one sync of
    /// the journal), and reports none of them before that write returned.
    fn write_resources(&mut self, lock: &LockInfo, writes: &[ResourceWrite<'_>]) -> Result<u64, StateError>;
    /// Records one resource (or its deletion with `None`) and returns the new serial.
    fn put_resource(
        &mut self,
        lock: &LockInfo,
        address: &Address,
        resource: Option<&StoredResource>,
    ) -> Result<u64, StateError> {
        self.write_resources(lock, &[ResourceWrite { from: None, address, resource }])
    }
    /// Records `resource` under `address` and removes the record at `from`, in one write.
    fn move_resource(
        &mut self,
        lock: &LockInfo,
        from: &Address,
        address: &Address,
        resource: &StoredResource,
    ) -> Result<u64, StateError> {
        self.write_resources(lock, &[ResourceWrite { from: Some(from), address, resource: Some(resource) }])
    }
    fn record_history(&mut self, lock: &LockInfo, summary: &str) -> Result<(), StateError>;
    fn history(&self, cluster: &str) -> Result<Vec<HistoryEntry>, StateError>;
    /// Writes a whole state with its history into a store that does not hold that cluster yet, keeping its
    /// lineage and serial, so that saved plans and other working copies see the same state after a move
    /// between backends (`sealer state migrate`).
    fn import(&mut self, lock: &LockInfo, state: &State, history: &[HistoryEntry]) -> Result<(), StateError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Reason};

    #[test]
    fn an_imported_state_is_checked_like_clusterfile_input() {
        let mut state = State::empty("c");
        let put = |state: &mut State, kind: Kind, key: &str, attrs: &[(&str, Value)]| {
            let r = StoredResource {
                address: Address::new(kind, key),
                host: None,
                status: ResourceStatus::Ready,
                attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                depends_on: vec![],
            };
            state.resources.insert(r.address.clone(), r);
        };
        put(
            &mut state,
            Kind::Hostname,
            "10.0.0.2",
            &[("name", Value::text("master-0")), ("original", Value::text("Box.local"))],
        );
        put(
            &mut state,
            Kind::Plugin,
            "p.PreClean.10.0.0.2",
            &[("type", Value::text("SHELL")), ("phase", Value::text("PreClean"))],
        );
        assert_eq!(state.check_imported(), Ok(()));
        put(&mut state, Kind::Hostname, "10.0.0.3", &[("name", Value::text("x; reboot"))]);
        put(
            &mut state,
            Kind::Plugin,
            "q.PreClean.10.0.0.2",
            &[("type", Value::text("../../bin/sh")), ("phase", Value::text("Later"))],
        );
        put(&mut state, Kind::Config, "c.10.0.0.2", &[("path", Value::text("/etc/shadow"))]);
        put(
            &mut state,
            Kind::Plugin,
            "e.PreClean.10.0.0.2",
            &[("type", Value::text("SHELL")), ("env", Value::Map([("A=B".to_string(), "x".to_string())].into()))],
        );
        let problems = state.check_imported().unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].contains("`hostname.10.0.0.3`: `name` `x; reboot` is not a hostname"), "{problems:?}");
    }

    fn change(action: Action, after: Option<Attributes>) -> ResourceChange {
        ResourceChange {
            address: Address::new(Kind::Host, "10.0.0.2"),
            kind: Kind::Host,
            host: "10.0.0.2".parse().ok(),
            action,
            reason: Reason::CreateBecauseNotInState,
            before: None,
            after,
            replace_paths: vec![],
            previous_address: None,
            depends_on: vec![Address::new(Kind::Host, "10.0.0.1")],
        }
    }

    #[test]
    fn a_finished_change_is_stored_as_the_provider_returned_it() {
        let returned: Attributes = [("arch".to_string(), Value::text("x86_64"))].into();
        let c = change(Action::Create, Some(Attributes::new()));
        let stored = StoredResource::from_completion(&c, Completion::Done(Some(&returned))).unwrap();
        assert_eq!((stored.status, &stored.attributes), (ResourceStatus::Ready, &returned));
        assert_eq!(stored.depends_on, c.depends_on);
        assert_eq!(StoredResource::from_completion(&change(Action::Delete, None), Completion::Done(None)), None);
    }

    #[test]
    fn a_create_that_failed_partway_is_stored_tainted_with_what_it_was_going_for() {
        let wanted: Attributes = [("role".to_string(), Value::text("master"))].into();
        let stored =
            StoredResource::from_completion(&change(Action::Create, Some(wanted.clone())), Completion::FailedPartway);
        let stored = stored.unwrap();
        assert_eq!((stored.status, stored.attributes), (ResourceStatus::Tainted, wanted));
    }

    #[test]
    fn removed_hosts_log_in_as_recorded() {
        let mut r = StoredResource::from_completion(&change(Action::Create, None), Completion::FailedPartway).unwrap();
        r.attributes = [
            ("ssh_user".to_string(), Value::text("ops")),
            ("ssh_port".to_string(), Value::Int(2222)),
            ("ssh_auth".to_string(), Value::text("password")),
            ("ssh_password".to_string(), Value::Sealed("sealed!".into())),
        ]
        .into();
        let login = r.recorded_login().unwrap().unwrap();
        assert_eq!(login.user.as_deref(), Some("ops"));
        assert_eq!(login.port, Some(2222));
        assert!(login.password_only);
        assert_eq!(login.sealed_password.as_deref(), Some("sealed!"));
        assert_eq!(login.sealed_key_passphrase, None);
        r.attributes.insert("ssh_private_key".into(), Value::text("/k"));
        let login = r.recorded_login().unwrap().unwrap();
        assert!(!login.password_only, "a key was recorded: it is offered");
        assert_eq!(login.private_key.as_deref(), Some("/k"));
        r.address = Address::new(Kind::Hostname, "10.0.0.2");
        assert_eq!(r.recorded_login(), Ok(None));
        // A record edited into another type is an error, not a host reached with the cluster's login.
        r.address = Address::new(Kind::Host, "10.0.0.2");
        r.attributes.insert("ssh_port".into(), Value::text("2222"));
        assert!(r.recorded_login().is_err());
    }
}

//! The planner: a pure function of the desired graph and the prior state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::graph::ResourceGraph;
use crate::resource::{Address, Attributes, Kind, Value};
use crate::schema::{self, Schema};
use crate::state::{without_sealed, ResourceStatus, State, StoredResource};

pub const PLAN_FORMAT_VERSION: &str = "1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    /// Delete, then create again.
    Replace,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NoOpBecauseUpToDate,
    CreateBecauseNotInState,
    UpdateBecauseAttributesChanged,
    ReplaceBecauseCannotUpdate,
    ReplaceBecauseTainted,
    DeleteBecauseNoResourceConfig,
    DeleteBecauseDestroy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoOpBecauseUpToDate => "no_op_because_up_to_date",
            Reason::CreateBecauseNotInState => "create_because_not_in_state",
            Reason::UpdateBecauseAttributesChanged => "update_because_attributes_changed",
            Reason::ReplaceBecauseCannotUpdate => "replace_because_cannot_update",
            Reason::ReplaceBecauseTainted => "replace_because_tainted",
            Reason::DeleteBecauseNoResourceConfig => "delete_because_no_resource_config",
            Reason::DeleteBecauseDestroy => "delete_because_destroy",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: Address,
    pub kind: Kind,
    pub host: Option<IpAddr>,
    pub action: Action,
    pub reason: Reason,
    pub before: Option<Attributes>,
    pub after: Option<Attributes>,
    /// Attributes whose change forces the replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_paths: Vec<String>,
    pub depends_on: Vec<Address>,
    /// The address the state records this resource under until the change is applied (Terraform's
    /// `previous_address`): a master promoted to first is recorded as `kubeadm-join.IP` before and
    /// `kubeadm-init.IP` after, in one state write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<Address>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    #[serde(rename = "no-op")]
    pub no_op: usize,
}

/// An immutable plan: what apply will do, and against which state it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub cluster: String,
    pub lineage: Option<String>,
    pub prior_serial: u64,
    pub destroy: bool,
    pub targets: Vec<Address>,
    /// Creates, updates and no-ops in dependency order, then deletes in reverse dependency order.
    pub changes: Vec<ResourceChange>,
    /// What the planner's caller learned about some changes beyond their attributes (how many files a
    /// new image digest changes), shown beside them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<Address, String>,
    /// A Kubernetes upgrade among the changes, and the order its steps run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Hosts that left the Clusterfile and did not answer the refresh (dead machines): their resources are
    /// forgotten, not cleaned up on them; only `--force` applies such a plan.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub forgotten: BTreeSet<IpAddr>,
}

impl Plan {
    /// A plan of `changes` made against `state`, whose lineage and serial it keeps so that applying it
    /// later can tell whether the state moved on.
    pub fn against(state: &State, changes: Vec<ResourceChange>) -> Plan {
        Plan {
            format_version: PLAN_FORMAT_VERSION.to_string(),
            cluster: state.cluster.clone(),
            lineage: state.lineage.clone(),
            prior_serial: state.serial,
            destroy: false,
            targets: Vec::new(),
            changes,
            notes: BTreeMap::new(),
            rollout: None,
            forgotten: BTreeSet::new(),
        }
    }

    /// A saved plan applies only to the state it was made from (Terraform's "stale plan" rule): the same
    /// cluster, the same lineage, and no write since.
    pub fn check_applicable(&self, state: &State) -> Result<(), PlanError> {
        if self.cluster != state.cluster {
            return Err(PlanError::OtherCluster { plan: self.cluster.clone(), state: state.cluster.clone() });
        }
        if let Some(lineage) = self.lineage.as_ref().filter(|l| Some(*l) != state.lineage.as_ref()) {
            return Err(PlanError::OtherLineage(lineage.clone()));
        }
        if self.prior_serial != state.serial {
            return Err(PlanError::Stale { planned: self.prior_serial, now: state.serial });
        }
        Ok(())
    }

    /// A saved plan applies exactly what it showed: every planned attribute must still be what the
    /// Clusterfile and the local images compile to now (an image's digest, a Config's data or its keyed
    /// digest, a plugin's script), because providers take the image from the store by name and a secret
    /// Config's data from the Clusterfile. Attributes unknown on either side are not compared.
    pub fn check_matches(&self, graph: &ResourceGraph) -> Result<(), PlanError> {
        let mut moved = Vec::new();
        for change in &self.changes {
            let Some(after) = &change.after else { continue };
            let Some(now) = graph.get(&change.address) else {
                // A plugin chosen by the labels refresh read is missing from a compile without refresh;
                // anything else is gone from the Clusterfile, and its provider would find nothing there.
                if change.kind != Kind::Plugin {
                    moved.push(format!("`{}`: no longer in the Clusterfile", change.address));
                }
                continue;
            };
            let keys: BTreeSet<&String> = after.keys().chain(now.attributes.keys()).collect();
            for key in keys {
                let (planned, current) = (after.get(key), now.attributes.get(key));
                let unknown = |v: Option<&Value>| v == Some(&Value::Unknown);
                // "Known after apply" in the plan (an image a new cluster's plan did not pull, a digest
                // under a state key apply creates) is what apply learns; unknown now changes nothing.
                if !unknown(planned) && !unknown(current) && planned != current {
                    moved.push(format!(
                        "`{}` {key}: planned {}, now {}",
                        change.address,
                        shown(planned),
                        shown(current)
                    ));
                }
            }
        }
        if moved.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Moved(moved))
        }
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::NoOp => s.no_op += 1,
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }
}

#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Only these addresses and what they depend on (for deletes: what depends on them).
    pub targets: Vec<Address>,
    /// Plan the deletion of everything in the state.
    pub destroy: bool,
    /// Nodes upgraded at once in a Kubernetes upgrade (0 counts as 1); masters go one at a time.
    pub max_unavailable: usize,
}

/// One member's step of a Kubernetes upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStep {
    /// `kubeadm-init.IP` (`kubeadm upgrade apply`) or `kubeadm-join.IP` (`kubeadm upgrade node`).
    pub address: Address,
    pub from: String,
    pub to: String,
}

/// A change of Kubernetes version, rolled out member by member: the first master, the other masters one
/// at a time, then the nodes, at most `max_unavailable` of them drained at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// In the order they run.
    pub steps: Vec<RolloutStep>,
    pub max_unavailable: usize,
}

impl Rollout {
    /// The upgrade steps among `changes` (in their order), each checked against kubeadm's rules.
    fn of(changes: &[ResourceChange], max_unavailable: usize) -> Result<Option<Rollout>, PlanError> {
        let version = |kind: Kind, a: &Option<Attributes>| {
            let a = a.as_ref()?;
            let v = match kind {
                Kind::KubeadmInit => schema::KubeadmInit::from_attributes(a).ok()?.kubernetes_version,
                _ => schema::KubeadmJoin::from_attributes(a).ok()?.kubernetes_version,
            };
            (!v.is_empty()).then_some(v)
        };
        let mut steps = Vec::new();
        for c in changes {
            if c.action != Action::Update || !matches!(c.kind, Kind::KubeadmInit | Kind::KubeadmJoin) {
                continue;
            }
            let (Some(from), Some(to)) = (version(c.kind, &c.before), version(c.kind, &c.after)) else { continue };
            if from == to {
                continue;
            }
            crate::kubeadm::check_upgrade(&from, &to).map_err(|why| PlanError::Upgrade {
                address: c.address.to_string(),
                from: from.clone(),
                to: to.clone(),
                why,
            })?;
            steps.push(RolloutStep { address: c.address.clone(), from, to });
        }
        Ok((!steps.is_empty()).then(|| Rollout { steps, max_unavailable: max_unavailable.max(1) }))
    }

    pub fn contains(&self, address: &Address) -> bool {
        self.steps.iter().any(|s| s.address == *address)
    }
}

/// The decision for one address: what to do, why, and which attributes force a replacement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
    pub replace_paths: Vec<String>,
}

/// `Unknown` (known after apply) equals whatever the record holds. A record that lacks the attribute (written
/// before its kind had it) is updated once, so that the apply learns it (`hooks.watches`, `host.kernel`).
fn equal_or_unknown(desired: Option<&Value>, prior: Option<&Value>) -> bool {
    match (desired, prior) {
        (Some(Value::Unknown), Some(_)) => true,
        (Some(Value::Sensitive | Value::Sealed(_)), Some(Value::Sensitive | Value::Sealed(_))) => true,
        (d, p) => d == p,
    }
}

/// Whether the desired and the recorded value of attribute `key` of a `kind` resource ask for the same:
/// by the kind's own rule when it has one (a kubeadm `config` compares as kubeadm reads it, so records
/// written before the planned text was tidied do not update every member), else by value.
fn same_value(kind: Kind, key: &str, desired: &Attributes, prior: &Attributes) -> bool {
    let (d, p) = (desired.get(key), prior.get(key));
    if d.is_some() && p.is_some() {
        if let Some(same) = schema::same_value(kind, key, desired, prior) {
            return same;
        }
    }
    equal_or_unknown(d, p)
}

/// The one place where an action is chosen. Only what the state has and the Clusterfile lacks is deleted.
pub fn decide_action(kind: Kind, desired: Option<&Attributes>, prior: Option<&StoredResource>) -> Decision {
    let decision = |action, reason| Decision { action, reason, replace_paths: Vec::new() };
    match (desired, prior) {
        (None, None) => decision(Action::NoOp, Reason::NoOpBecauseUpToDate),
        (Some(_), None) => decision(Action::Create, Reason::CreateBecauseNotInState),
        (None, Some(_)) => decision(Action::Delete, Reason::DeleteBecauseNoResourceConfig),
        (Some(_), Some(p)) if p.status == ResourceStatus::Tainted => {
            decision(Action::Replace, Reason::ReplaceBecauseTainted)
        }
        (Some(d), Some(p)) => {
            let keys: BTreeSet<&String> = d.keys().chain(p.attributes.keys()).collect();
            let changed: Vec<&String> = keys.into_iter().filter(|k| !same_value(kind, k, d, &p.attributes)).collect();
            let replace_paths: Vec<String> =
                changed.iter().filter(|k| kind.forces_replacement(k)).map(|k| k.to_string()).collect();
            if changed.is_empty() {
                decision(Action::NoOp, Reason::NoOpBecauseUpToDate)
            } else if !replace_paths.is_empty() {
                Decision { action: Action::Replace, reason: Reason::ReplaceBecauseCannotUpdate, replace_paths }
            } else {
                decision(Action::Update, Reason::UpdateBecauseAttributesChanged)
            }
        }
    }
}

/// Desired attributes, with the values only apply learns taken from the prior state where it has them.
/// A value in a stale-plan message: a short text as it is, anything else (a Config's data, a kubeadm
/// configuration) only as changed, and never a secret (those are `Sensitive` here already).
fn shown(value: Option<&Value>) -> String {
    match value {
        None => "(none)".into(),
        Some(Value::Text(t)) if t.len() <= 80 && !t.contains('\n') => format!("`{t}`"),
        Some(_) => "(another value)".into(),
    }
}

fn resolve_unknowns(desired: &Attributes, prior: Option<&StoredResource>) -> Attributes {
    let mut after = desired.clone();
    if let Some(prior) = prior {
        for (k, v) in after.iter_mut() {
            if *v == Value::Unknown {
                if let Some(known) = prior.attributes.get(k) {
                    *v = known.clone();
                }
            }
        }
    }
    after
}

/// Stored resources in reverse dependency order (dependents first), ties by address.
fn reverse_dependency_order<'s>(state: &'s State, selected: &BTreeSet<&Address>) -> Vec<&'s StoredResource> {
    let mut dependents: BTreeMap<&Address, usize> = selected.iter().map(|a| (*a, 0)).collect();
    for a in selected {
        for dep in &state.resources[*a].depends_on {
            if let Some(n) = dependents.get_mut(dep) {
                *n += 1;
            }
        }
    }
    let mut ready: BTreeSet<&Address> = dependents.iter().filter(|(_, n)| **n == 0).map(|(a, _)| *a).collect();
    let mut out = Vec::with_capacity(selected.len());
    while let Some(a) = ready.pop_first() {
        let r = &state.resources[a];
        out.push(r);
        for dep in &r.depends_on {
            if let Some(n) = dependents.get_mut(dep) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(dep);
                }
            }
        }
    }
    // A cycle in stored dependencies cannot come from a compiled graph; keep the rest rather than lose it.
    let placed: BTreeSet<&Address> = out.iter().map(|r| &r.address).collect();
    out.extend(selected.iter().filter(|a| !placed.contains(*a)).map(|a| &state.resources[*a]));
    out
}

/// Everything in the state that depends, transitively, on one of `targets`, with the targets.
fn stored_dependents<'s>(state: &'s State, targets: &[Address]) -> BTreeSet<&'s Address> {
    let mut out: BTreeSet<&Address> =
        targets.iter().filter_map(|t| state.resources.get_key_value(t).map(|(k, _)| k)).collect();
    loop {
        let before = out.len();
        for (a, r) in &state.resources {
            if r.depends_on.iter().any(|d| out.contains(d)) {
                out.insert(a);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Records written before an attribute existed, given the value they had (see
/// [`schema::complete_older_record`]), so upgrading sealer plans no change for them.
fn with_older_records_completed(state: &State) -> Option<State> {
    let init = state.resources.keys().find(|a| a.kind == Kind::KubeadmInit)?;
    let mut completed = state.clone();
    let mut any = false;
    for r in completed.resources.values_mut() {
        any |= schema::complete_older_record(r.address.kind, &mut r.attributes, &init.key);
    }
    any.then_some(completed)
}

pub fn plan(graph: &ResourceGraph, state: &State, options: &PlanOptions) -> Result<Plan, PlanError> {
    let completed = with_older_records_completed(state);
    let state = completed.as_ref().unwrap_or(state);
    for t in &options.targets {
        if graph.get(t).is_none() && !state.resources.contains_key(t) {
            return Err(PlanError::UnknownTarget(t.to_string()));
        }
    }
    let targeted = !options.targets.is_empty();
    let mut changes = Vec::new();
    let deletions: BTreeSet<&Address> = if options.destroy {
        if targeted {
            stored_dependents(state, &options.targets)
        } else {
            state.resources.keys().collect()
        }
    } else {
        let selected = graph.with_dependencies(&options.targets);
        for resource in graph.in_dependency_order() {
            if targeted && !selected.contains(&resource.address) {
                continue;
            }
            let prior = state.resources.get(&resource.address);
            let d = decide_action(resource.address.kind, Some(&resource.attributes), prior);
            changes.push(ResourceChange {
                address: resource.address.clone(),
                kind: resource.address.kind,
                host: resource.host,
                action: d.action,
                reason: d.reason,
                before: prior.map(|p| without_sealed(&p.attributes)),
                after: Some(resolve_unknowns(&resource.attributes, prior)),
                replace_paths: d.replace_paths,
                depends_on: graph.depends_on(&resource.address),
                previous_address: None,
            });
        }
        let orphans = state.resources.keys().filter(|a| graph.get(a).is_none());
        if targeted {
            // A targeted delete takes what depends on it (as with --destroy --target).
            let wanted = stored_dependents(state, &options.targets);
            orphans.filter(|a| wanted.contains(a)).collect()
        } else {
            orphans.collect()
        }
    };
    let reason = if options.destroy { Reason::DeleteBecauseDestroy } else { Reason::DeleteBecauseNoResourceConfig };
    for stored in reverse_dependency_order(state, &deletions) {
        changes.push(ResourceChange {
            address: stored.address.clone(),
            kind: stored.address.kind,
            host: stored.host,
            action: Action::Delete,
            reason,
            before: Some(without_sealed(&stored.attributes)),
            after: None,
            replace_paths: Vec::new(),
            depends_on: stored.depends_on.clone(),
            previous_address: None,
        });
    }
    let promoted = if options.destroy { None } else { promote_first_master(state, &mut changes)? };
    let rollout = Rollout::of(&changes, options.max_unavailable)?;
    let mut plan =
        Plan { destroy: options.destroy, targets: options.targets.clone(), rollout, ..Plan::against(state, changes) };
    if let Some((promoted, leaving)) = promoted {
        let leaving = leaving.map_or_else(|| "the first master".to_string(), |ip| ip.to_string());
        plan.notes.insert(
            promoted.clone(),
            format!(
                "{} becomes the first master in place of {leaving}: it is a control-plane member already and is \
                 not initialised again; the cluster's registry starts there from its own copy of the image, \
                 `sea.hub` is pointed at it on every host, and the cluster's copy of the state is written through it",
                promoted.key
            ),
        );
    }
    Ok(plan)
}

/// A Clusterfile whose first master is gone names another master first: compiled, that is a new
/// `kubeadm-init.B` and, against the state, the deletion of `kubeadm-join.B`; applied as such it would reset
/// a running control-plane member and initialise a second cluster on it. It is one in-place change of the
/// member instead, moved from its join record (whether or not the plan deletes that record: a targeted
/// plan may not), and the cluster image's `guest` and `hooks` records move with it, so their CMDs and
/// `onStartup` hooks do not run again. A host that is no master of the cluster cannot become the first,
/// and a first master that stays in the cluster cannot step down (sealer does not move the control
/// plane's seat between live hosts). Returns the promoted address and the host it replaces.
fn promote_first_master(
    state: &State,
    changes: &mut Vec<ResourceChange>,
) -> Result<Option<(Address, Option<IpAddr>)>, PlanError> {
    let Some(at) = changes.iter().position(|c| c.kind == Kind::KubeadmInit && c.action != Action::Delete) else {
        return Ok(None);
    };
    let new = changes[at].address.key.clone();
    let join = Address::new(Kind::KubeadmJoin, new.clone());
    // Promoted already (the old first master's records may still be going).
    if state.resources.contains_key(&changes[at].address) && !state.resources.contains_key(&join) {
        return Ok(None);
    }
    let Some(old) = state.resources.keys().find(|a| a.kind == Kind::KubeadmInit && a.key != new).map(|a| a.key.clone())
    else {
        return Ok(None);
    };
    let refused = |why: String| PlanError::FirstMaster { host: new.clone(), why };
    let Some(joined) = state.resources.get(&join).filter(|r| is_master_join(&r.attributes)) else {
        return Err(refused(format!(
            "the cluster was initialised on `{old}` and `{new}` is not one of its masters; list a master of the \
             cluster first"
        )));
    };
    let stays = |c: &ResourceChange| c.kind == Kind::KubeadmJoin && c.address.key == old && c.action != Action::Delete;
    if changes.iter().any(stays) {
        return Err(refused(format!(
            "`{old}` stays in the cluster, and sealer does not move the first master between live hosts; list \
             `{old}` first again, or remove it from the Clusterfile"
        )));
    }
    let leaving =
        changes.iter().find(|c| c.kind == Kind::KubeadmInit && c.action == Action::Delete).and_then(|c| c.host);
    let moves = [(join, joined.attributes.clone())].into_iter().chain(
        [Kind::Guest, Kind::Hooks].into_iter().filter_map(|kind| {
            let from = Address::new(kind, old.clone());
            let stored = state.resources.get(&from)?;
            Some((from, stored.attributes.clone()))
        }),
    );
    for (from, before) in moves.collect::<Vec<_>>() {
        let to = Address::new(if from.kind == Kind::KubeadmJoin { Kind::KubeadmInit } else { from.kind }, new.clone());
        changes.retain(|c| !(c.address == from && c.action == Action::Delete));
        if let Some(change) = changes.iter_mut().find(|c| c.address == to && c.action != Action::Delete) {
            change.action = Action::Update;
            change.reason = Reason::UpdateBecauseAttributesChanged;
            change.before = Some(without_sealed(&before));
            change.previous_address = Some(from);
        }
    }
    Ok(Some((Address::new(Kind::KubeadmInit, new), leaving)))
}

/// Whether a `kubeadm-join` record is a master's.
fn is_master_join(a: &Attributes) -> bool {
    schema::KubeadmJoin::from_attributes(a).is_ok_and(|j| j.is_master())
}

/// Why a plan must not run without `--force`: it removes the first master (the cluster's own control plane
/// and etcd seed) or more than half of the masters at once (etcd would lose quorum). Empty when it may run.
pub fn dangerous_removals(plan: &Plan, state: &State) -> Vec<String> {
    if plan.destroy {
        return Vec::new();
    }
    let removed = |c: &ResourceChange| matches!(c.action, Action::Delete | Action::Replace);
    let is_master_record =
        |kind: Kind, a: &Attributes| kind == Kind::KubeadmInit || (kind == Kind::KubeadmJoin && is_master_join(a));
    let mut reasons: Vec<String> = plan
        .forgotten
        .iter()
        .map(|ip| format!("`{ip}` does not answer: its resources would be forgotten, not cleaned up on it"))
        .collect();
    // A tainted `kubeadm-init` is one whose create failed: no cluster finished there, its replacement
    // (reset, then init again) removes no first master.
    let tainted = |c: &ResourceChange| c.reason == Reason::ReplaceBecauseTainted;
    for c in plan.changes.iter().filter(|c| c.kind == Kind::KubeadmInit && removed(c) && !tainted(c)) {
        reasons.push(format!("`{}` removes the first master, which the cluster was initialised on", c.address));
    }
    let masters: Vec<&StoredResource> =
        state.resources.values().filter(|r| is_master_record(r.address.kind, &r.attributes)).collect();
    // Counted by host: a master that becomes the first one (its `kubeadm-join` deleted, a `kubeadm-init`
    // created) is still a master, not one that leaves.
    let stays_master: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Create && c.after.as_ref().is_some_and(|a| is_master_record(c.kind, a)))
        .map(|c| c.address.key.as_str())
        .collect();
    let leaving: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|c| removed(c) && masters.iter().any(|m| m.address == c.address))
        .filter(|c| c.action == Action::Delete || c.before.as_ref().is_some_and(is_master_join))
        .map(|c| c.address.key.as_str())
        .filter(|host| !stays_master.contains(host))
        .collect();
    let hosts: BTreeSet<&str> = masters.iter().map(|m| m.address.key.as_str()).collect();
    if !leaving.is_empty() && leaving.len() * 2 > hosts.len() {
        reasons.push(format!(
            "{} of {} masters would leave at once; etcd keeps quorum only while more than half stay",
            leaving.len(),
            hosts.len()
        ));
    }
    reasons
}

/// What a refresh found changed outside of sealer, as updates of the state only (`--refresh-only`):
/// `before` is what was recorded, `after` what the hosts hold.
pub fn refresh_only_plan(recorded: &State, observed: &State) -> Plan {
    let changes = observed
        .resources
        .values()
        .filter_map(|now| {
            let was = recorded.resources.get(&now.address)?;
            (was.attributes != now.attributes).then(|| ResourceChange {
                address: now.address.clone(),
                kind: now.address.kind,
                host: now.host,
                action: Action::Update,
                reason: Reason::UpdateBecauseAttributesChanged,
                before: Some(without_sealed(&was.attributes)),
                after: Some(without_sealed(&now.attributes)),
                replace_paths: Vec::new(),
                depends_on: now.depends_on.clone(),
                previous_address: None,
            })
        })
        .collect();
    Plan::against(recorded, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(pairs: &[(&str, Value)]) -> Attributes {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn stored(kind: Kind, attrs: Attributes, status: ResourceStatus) -> StoredResource {
        StoredResource {
            address: Address::new(kind, "10.0.0.2"),
            host: None,
            status,
            attributes: attrs,
            depends_on: vec![],
        }
    }

    #[test]
    fn decide_create_delete_noop_update_replace() {
        let a = attributes(&[("name", Value::text("m0"))]);
        let b = attributes(&[("name", Value::text("m1"))]);
        let ready = |attrs: &Attributes| stored(Kind::Hostname, attrs.clone(), ResourceStatus::Ready);
        assert_eq!(decide_action(Kind::Hostname, Some(&a), None).action, Action::Create);
        let delete = decide_action(Kind::Hostname, None, Some(&ready(&a)));
        assert_eq!((delete.action, delete.reason), (Action::Delete, Reason::DeleteBecauseNoResourceConfig));
        assert_eq!(decide_action(Kind::Hostname, Some(&a), Some(&ready(&a))).action, Action::NoOp);
        let update = decide_action(Kind::Hostname, Some(&b), Some(&ready(&a)));
        assert_eq!((update.action, update.reason), (Action::Update, Reason::UpdateBecauseAttributesChanged));
        let master = attributes(&[("role", Value::text("master"))]);
        let node = attributes(&[("role", Value::text("node"))]);
        let replace = decide_action(
            Kind::KubeadmJoin,
            Some(&master),
            Some(&stored(Kind::KubeadmJoin, node, ResourceStatus::Ready)),
        );
        assert_eq!(replace.action, Action::Replace);
        assert_eq!(replace.reason, Reason::ReplaceBecauseCannotUpdate);
        assert_eq!(replace.replace_paths, ["role"]);
    }

    #[test]
    fn tainted_resources_are_replaced_even_when_equal() {
        let a = attributes(&[("name", Value::text("m0"))]);
        let d =
            decide_action(Kind::Hostname, Some(&a), Some(&stored(Kind::Hostname, a.clone(), ResourceStatus::Tainted)));
        assert_eq!((d.action, d.reason), (Action::Replace, Reason::ReplaceBecauseTainted));
    }

    #[test]
    fn unknown_desired_values_never_cause_a_change_once_known() {
        let desired = attributes(&[("name", Value::Unknown)]);
        let prior = stored(Kind::Hostname, attributes(&[("name", Value::text("observed"))]), ResourceStatus::Ready);
        assert_eq!(decide_action(Kind::Hostname, Some(&desired), Some(&prior)).action, Action::NoOp);
        assert_eq!(resolve_unknowns(&desired, Some(&prior))["name"], Value::text("observed"));
        // A record from before the kind had the attribute is updated, so that the apply learns it.
        let older = stored(Kind::Hostname, Attributes::new(), ResourceStatus::Ready);
        assert_eq!(decide_action(Kind::Hostname, Some(&desired), Some(&older)).action, Action::Update);
    }

    fn graph_of(resources: &[(Address, Attributes)]) -> ResourceGraph {
        let mut b = crate::graph::GraphBuilder::default();
        for (address, attributes) in resources {
            b.add(crate::resource::Resource { address: address.clone(), host: None, attributes: attributes.clone() })
                .unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn a_saved_plan_applies_only_what_the_clusterfile_and_images_still_compile_to() {
        let image = Address::new(Kind::Image, "10.0.0.2");
        let digest = |d: &str| attributes(&[("digest", Value::text(d)), ("name", Value::text("k:1"))]);
        let saved =
            plan(&graph_of(&[(image.clone(), digest("sha256:a"))]), &State::empty("c"), &PlanOptions::default())
                .unwrap();
        assert!(saved.check_matches(&graph_of(&[(image.clone(), digest("sha256:a"))])).is_ok());
        let err = saved.check_matches(&graph_of(&[(image.clone(), digest("sha256:b"))])).unwrap_err().to_string();
        assert!(err.contains("`image.10.0.0.2` digest: planned `sha256:a`, now `sha256:b`"), "{err}");
        // Unknown at compile time (the store lacks the image): nothing to compare against.
        let unknown = attributes(&[("digest", Value::Unknown), ("name", Value::text("k:1"))]);
        assert!(saved.check_matches(&graph_of(&[(image.clone(), unknown.clone())])).is_ok());
        // Known after apply in the plan (a new cluster's plan without the image): what apply learns.
        let new_cluster =
            plan(&graph_of(&[(image.clone(), unknown)]), &State::empty("c"), &PlanOptions::default()).unwrap();
        assert!(new_cluster.check_matches(&graph_of(&[(image.clone(), digest("sha256:b"))])).is_ok());
        // Gone from the Clusterfile: refused (its provider would find nothing to take).
        let err = saved.check_matches(&graph_of(&[])).unwrap_err().to_string();
        assert!(err.contains("`image.10.0.0.2`: no longer in the Clusterfile"), "{err}");
        // A Config's data is named as changed, never shown.
        let config = Address::new(Kind::Config, "db.10.0.0.2");
        let data = |d: &str| attributes(&[("data", Value::text(d))]);
        let saved =
            plan(&graph_of(&[(config.clone(), data("a\nb"))]), &State::empty("c"), &PlanOptions::default()).unwrap();
        let err = saved.check_matches(&graph_of(&[(config, data("a\nc"))])).unwrap_err().to_string();
        assert!(err.contains("data: planned (another value), now (another value)") && !err.contains("a\nc"), "{err}");
    }

    #[test]
    fn a_plan_carries_no_sealed_ciphertext() {
        let host = Address::new(Kind::Host, "10.0.0.2");
        let mut state = State::empty("c");
        let sealed = attributes(&[("ssh_password", Value::Sealed("ciphertext".into()))]);
        state.resources.insert(host.clone(), stored(Kind::Host, sealed, ResourceStatus::Ready));
        let p = plan(&graph_of(&[]), &state, &PlanOptions::default()).unwrap();
        assert_eq!(p.changes[0].before.as_ref().unwrap()["ssh_password"], Value::Sensitive);
        assert!(!format!("{p:?}").contains("ciphertext"));
    }

    fn master_state(masters: usize) -> State {
        let mut state = State::empty("c");
        for i in 0..masters {
            let (kind, attrs) = if i == 0 {
                (Kind::KubeadmInit, Attributes::new())
            } else {
                (Kind::KubeadmJoin, attributes(&[("role", Value::text("master"))]))
            };
            let r = StoredResource {
                address: Address::new(kind, format!("10.0.0.{i}")),
                host: None,
                status: ResourceStatus::Ready,
                attributes: attrs,
                depends_on: vec![],
            };
            state.resources.insert(r.address.clone(), r);
        }
        state
    }

    fn deleting(state: &State, keys: &[&str]) -> Plan {
        let changes = state
            .resources
            .values()
            .filter(|r| keys.contains(&r.address.key.as_str()))
            .map(|r| ResourceChange {
                address: r.address.clone(),
                kind: r.address.kind,
                host: None,
                action: Action::Delete,
                reason: Reason::DeleteBecauseNoResourceConfig,
                before: Some(r.attributes.clone()),
                after: None,
                replace_paths: vec![],
                depends_on: vec![],
                previous_address: None,
            })
            .collect();
        Plan::against(state, changes)
    }

    #[test]
    fn removing_the_first_master_or_most_masters_is_dangerous() {
        let state = master_state(3);
        assert!(dangerous_removals(&deleting(&state, &["10.0.0.2"]), &state).is_empty());
        let first = dangerous_removals(&deleting(&state, &["10.0.0.0"]), &state);
        assert!(first[0].contains("first master"), "{first:?}");
        let two = dangerous_removals(&deleting(&state, &["10.0.0.1", "10.0.0.2"]), &state);
        assert_eq!(two, ["2 of 3 masters would leave at once; etcd keeps quorum only while more than half stay"]);
        let mut destroy = deleting(&state, &["10.0.0.0", "10.0.0.1", "10.0.0.2"]);
        destroy.destroy = true;
        assert!(dangerous_removals(&destroy, &state).is_empty());
    }

    /// A `kubeadm-init` whose create failed (tainted) is replaced without `--force`: no cluster finished there.
    #[test]
    fn replacing_a_tainted_first_master_init_is_no_removal() {
        let state = master_state(3);
        let mut plan = deleting(&state, &["10.0.0.0"]);
        plan.changes[0].action = Action::Replace;
        plan.changes[0].reason = Reason::ReplaceBecauseTainted;
        assert!(dangerous_removals(&plan, &state).is_empty(), "{:?}", dangerous_removals(&plan, &state));
        plan.changes[0].reason = Reason::ReplaceBecauseCannotUpdate;
        assert_eq!(dangerous_removals(&plan, &state).len(), 1);
    }

    fn change(
        address: Address,
        action: Action,
        before: Option<Attributes>,
        after: Option<Attributes>,
    ) -> ResourceChange {
        ResourceChange {
            address: address.clone(),
            kind: address.kind,
            host: None,
            action,
            reason: Reason::DeleteBecauseNoResourceConfig,
            before,
            after,
            replace_paths: vec![],
            depends_on: vec![],
            previous_address: None,
        }
    }

    /// The Clusterfile drops the first of `masters` masters (and the `dropped` others): the next one
    /// becomes the first, its `kubeadm-join` deleted and a `kubeadm-init` created, as `plan` makes it.
    fn dropping_the_first_master(state: &State, dropped: &[&str]) -> Plan {
        let master = attributes(&[("role", Value::text("master"))]);
        let mut changes =
            vec![change(Address::new(Kind::KubeadmInit, "10.0.0.1"), Action::Create, None, Some(Attributes::new()))];
        for r in state.resources.values() {
            let key = r.address.key.as_str();
            if key == "10.0.0.0" || key == "10.0.0.1" || dropped.contains(&key) {
                changes.push(change(r.address.clone(), Action::Delete, Some(r.attributes.clone()), None));
            } else {
                changes.push(change(r.address.clone(), Action::NoOp, Some(master.clone()), Some(master.clone())));
            }
        }
        assert!(promote_first_master(state, &mut changes).unwrap().is_some());
        Plan::against(state, changes)
    }

    #[test]
    fn a_master_that_becomes_the_first_does_not_leave() {
        let two = master_state(2);
        let reasons = dangerous_removals(&dropping_the_first_master(&two, &[]), &two);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("removes the first master"), "{reasons:?}");
        let three = master_state(3);
        assert_eq!(dangerous_removals(&dropping_the_first_master(&three, &[]), &three).len(), 1);
        let reasons = dangerous_removals(&dropping_the_first_master(&three, &["10.0.0.2"]), &three);
        assert_eq!(reasons[1], "2 of 3 masters would leave at once; etcd keeps quorum only while more than half stay");
    }

    /// A cluster recorded by an earlier sealer: the kubelet's `cgroupDriver: null` and the worker's unused
    /// `controlPlane` section in the records. Planning the same Clusterfile again changes nothing.
    #[test]
    fn records_from_before_the_tidied_kubeadm_configuration_plan_no_change() {
        let text = "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: k:v1.22.15\n  \
                    hosts:\n    - ips: [10.0.0.2, 10.0.0.3]\n      roles: [master]\n    - ips: [10.0.0.5]\n      roles: [node]\n";
        let cf = crate::parse("Clusterfile", text).unwrap().clusterfile;
        let graph = crate::compile(&cf, &crate::ImageFacts::default()).unwrap();
        let mut state = applied(&graph);
        let old_master_join = crate::kubeadm::join_config(&cf, &[]);
        let Value::Text(init) = config(&mut state, Kind::KubeadmInit, "10.0.0.2").clone() else { panic!() };
        let recorded_init = init.replace("cgroupsPerQOS: true", "cgroupDriver: null\ncgroupsPerQOS: true");
        assert_ne!(recorded_init, init);
        *config(&mut state, Kind::KubeadmInit, "10.0.0.2") = Value::text(recorded_init);
        assert_ne!(config(&mut state, Kind::KubeadmJoin, "10.0.0.5"), &Value::text(&old_master_join));
        *config(&mut state, Kind::KubeadmJoin, "10.0.0.5") = Value::text(&old_master_join);
        assert_eq!(changed(&graph, &state), Vec::<String>::new());

        // A master's join is still compared with its section: one recorded without it is updated.
        *config(&mut state, Kind::KubeadmJoin, "10.0.0.3") = Value::text(crate::kubeadm::worker_join_config(&cf, &[]));
        assert_eq!(changed(&graph, &state), ["kubeadm-join.10.0.0.3"]);
    }

    /// The state an apply of `graph` leaves.
    fn applied(graph: &ResourceGraph) -> State {
        let mut state = State::empty("c");
        for r in graph.in_dependency_order() {
            let stored = StoredResource {
                address: r.address.clone(),
                host: r.host,
                status: ResourceStatus::Ready,
                attributes: r.attributes.clone(),
                depends_on: graph.depends_on(&r.address),
            };
            state.resources.insert(r.address.clone(), stored);
        }
        state
    }

    /// The first of three masters is gone and the Clusterfile names the second first: the second is
    /// promoted in place (never reset, never initialised), every other member is pointed at it, the first
    /// one's records go, and the plan says so in words; only `--force` runs it.
    #[test]
    fn a_clusterfile_without_its_first_master_promotes_the_next_in_place() {
        let clusterfile = |masters: &str| {
            let text = format!(
                "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: k:v1.22.15\n  \
                 hosts:\n    - ips: [{masters}]\n      roles: [master]\n    - ips: [10.0.0.5]\n      roles: [node]\n  \
                 apps: [app:1]\n"
            );
            crate::parse("Clusterfile", &text).unwrap().clusterfile
        };
        let before =
            crate::compile(&clusterfile("10.0.0.2, 10.0.0.3, 10.0.0.4"), &crate::ImageFacts::default()).unwrap();
        let state = applied(&before);
        let after = crate::compile(&clusterfile("10.0.0.3, 10.0.0.4"), &crate::ImageFacts::default()).unwrap();
        let plan = plan(&after, &state, &PlanOptions::default()).unwrap();
        let of = |address: &str| plan.changes.iter().find(|c| c.address.to_string() == address);
        let init = of("kubeadm-init.10.0.0.3").unwrap();
        assert_eq!(
            (init.action, init.previous_address.clone()),
            (Action::Update, Some(Address::new(Kind::KubeadmJoin, "10.0.0.3")))
        );
        assert_eq!(init.before.as_ref().unwrap()["role"], Value::text("master"), "before: the join record");
        assert!(of("kubeadm-join.10.0.0.3").is_none(), "the promoted master is not reset: {:?}", plan.changes);
        for member in ["kubeadm-join.10.0.0.4", "kubeadm-join.10.0.0.5", "app.app"] {
            let c = of(member).unwrap();
            assert_eq!(c.action, Action::Update, "{member}");
            assert_eq!(c.after.as_ref().unwrap()["first_master"], Value::text("10.0.0.3"), "{member}");
        }
        assert_eq!(of("kubeadm-init.10.0.0.2").unwrap().action, Action::Delete);
        assert_eq!(of("registry.10.0.0.3").unwrap().action, Action::Create);
        let note = &plan.notes[&init.address];
        assert!(note.starts_with("10.0.0.3 becomes the first master in place of 10.0.0.2"), "{note}");
        assert!(note.contains("`sea.hub`") && note.contains("registry"), "{note}");
        let dangers = dangerous_removals(&plan, &state);
        assert_eq!(dangers, ["`kubeadm-init.10.0.0.2` removes the first master, which the cluster was initialised on"]);
        let mut forgetting = plan.clone();
        forgetting.forgotten.insert("10.0.0.2".parse().unwrap());
        assert_eq!(
            dangerous_removals(&forgetting, &state)[0],
            "`10.0.0.2` does not answer: its resources would be forgotten, not cleaned up on it"
        );
        // The image's CMDs ran on the cluster already: their record moves, nothing runs again.
        let guest = of("guest.10.0.0.3").unwrap();
        assert_eq!(
            (guest.action, guest.previous_address.clone()),
            (Action::Update, Some(Address::new(Kind::Guest, "10.0.0.2")))
        );
        assert!(of("guest.10.0.0.2").is_none(), "{:?}", plan.changes);

        // A targeted plan that needs the new first master moves its record too (never leaves both).
        let options =
            PlanOptions { targets: vec![Address::new(Kind::KubeadmJoin, "10.0.0.4")], ..PlanOptions::default() };
        let targeted = super::plan(&after, &state, &options).unwrap();
        let init = targeted.changes.iter().find(|c| c.address.to_string() == "kubeadm-init.10.0.0.3").unwrap();
        assert_eq!(init.previous_address, Some(Address::new(Kind::KubeadmJoin, "10.0.0.3")));
        // Both records in a state (an apply of an earlier sealer, split): the join record moves, never deleted.
        let mut split = state.clone();
        let mut init_record = split.resources[&Address::new(Kind::KubeadmJoin, "10.0.0.3")].clone();
        init_record.address = Address::new(Kind::KubeadmInit, "10.0.0.3");
        split.resources.insert(init_record.address.clone(), init_record);
        let plan_of_split = super::plan(&after, &split, &PlanOptions::default()).unwrap();
        let init = plan_of_split.changes.iter().find(|c| c.address.to_string() == "kubeadm-init.10.0.0.3").unwrap();
        assert_eq!(init.previous_address, Some(Address::new(Kind::KubeadmJoin, "10.0.0.3")));
        assert!(!plan_of_split.changes.iter().any(|c| c.address.to_string() == "kubeadm-join.10.0.0.3"));

        // Not a master of the cluster, or a first master that stays: refused, saying why.
        for (masters, why) in [
            (
                "10.0.0.9, 10.0.0.3, 10.0.0.4",
                "`10.0.0.9` cannot become the first master: the cluster was initialised on `10.0.0.2`",
            ),
            (
                "10.0.0.3, 10.0.0.2, 10.0.0.4",
                "`10.0.0.2` stays in the cluster, and sealer does not move the first master",
            ),
        ] {
            let graph = crate::compile(&clusterfile(masters), &crate::ImageFacts::default()).unwrap();
            let error = super::plan(&graph, &state, &PlanOptions::default()).unwrap_err().to_string();
            assert!(error.contains(why), "{masters}: {error}");
        }

        // Applied: recorded under its new address, planned again, nothing changes.
        let mut state = applied(&after);
        assert!(!super::plan(&after, &state, &PlanOptions::default()).unwrap().has_changes());
        // Records from before `first_master` existed were made with the recorded first master: no change.
        for r in state.resources.values_mut() {
            r.attributes.remove("first_master");
        }
        assert!(!super::plan(&after, &state, &PlanOptions::default()).unwrap().has_changes());
    }

    fn config<'s>(state: &'s mut State, kind: Kind, key: &str) -> &'s mut Value {
        state.resources.get_mut(&Address::new(kind, key)).unwrap().attributes.get_mut("config").unwrap()
    }

    /// The addresses a plan of `graph` against `state` does something to.
    fn changed(graph: &ResourceGraph, state: &State) -> Vec<String> {
        let plan = plan(graph, state, &PlanOptions::default()).unwrap();
        plan.changes.iter().filter(|c| c.action != Action::NoOp).map(|c| c.address.to_string()).collect()
    }

    #[test]
    fn refresh_only_plans_list_exactly_what_changed_outside() {
        let mut recorded = State::empty("c");
        let a = stored(Kind::Hostname, attributes(&[("name", Value::text("m0"))]), ResourceStatus::Ready);
        recorded.resources.insert(a.address.clone(), a.clone());
        assert!(!refresh_only_plan(&recorded, &recorded).has_changes());
        let mut observed = recorded.clone();
        observed.resources.get_mut(&a.address).unwrap().attributes.insert("name".into(), Value::text("drifted"));
        let p = refresh_only_plan(&recorded, &observed);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].after.as_ref().unwrap()["name"], Value::text("drifted"));
    }

    #[test]
    fn added_and_removed_attributes_are_changes() {
        let with = attributes(&[("a", Value::Int(1)), ("b", Value::Int(2))]);
        let without = attributes(&[("a", Value::Int(1))]);
        let prior = stored(Kind::Label, with, ResourceStatus::Ready);
        assert_eq!(decide_action(Kind::Label, Some(&without), Some(&prior)).action, Action::Update);
    }

    #[test]
    fn a_saved_plan_applies_only_to_the_state_it_was_made_from() {
        let mut state = State::empty("c");
        state.lineage = Some("L".into());
        state.serial = 4;
        let plan = Plan::against(&state, vec![]);
        assert_eq!(plan.check_applicable(&state), Ok(()));
        let mut moved = state.clone();
        moved.serial = 5;
        assert_eq!(plan.check_applicable(&moved), Err(PlanError::Stale { planned: 4, now: 5 }));
        let mut other = state.clone();
        other.lineage = Some("M".into());
        assert_eq!(plan.check_applicable(&other), Err(PlanError::OtherLineage("L".into())));
        assert_eq!(
            plan.check_applicable(&State::empty("d")),
            Err(PlanError::OtherCluster { plan: "c".into(), state: "d".into() })
        );
        let fresh = Plan::against(&State::empty("c"), vec![]);
        assert_eq!(fresh.check_applicable(&State::empty("c")), Ok(()), "a plan for a new state");
    }

    #[test]
    fn version_changes_of_members_are_a_rollout_checked_against_kubeadm() {
        let member = |kind: Kind, ip: &str, from: &str, to: &str| ResourceChange {
            address: Address::new(kind, ip),
            kind,
            host: ip.parse().ok(),
            action: Action::Update,
            reason: Reason::UpdateBecauseAttributesChanged,
            before: Some(attributes(&[("kubernetes_version", Value::text(from))])),
            after: Some(attributes(&[("kubernetes_version", Value::text(to))])),
            replace_paths: vec![],
            depends_on: vec![],
            previous_address: None,
        };
        let changes = vec![
            member(Kind::KubeadmInit, "10.0.0.2", "v1.22.15", "v1.23.0"),
            member(Kind::KubeadmJoin, "10.0.0.3", "v1.22.15", "v1.23.0"),
            member(Kind::KubeadmJoin, "10.0.0.4", "v1.23.0", "v1.23.0"),
            member(Kind::Label, "10.0.0.5", "v1.22.15", "v1.23.0"),
        ];
        let rollout = Rollout::of(&changes, 0).unwrap().unwrap();
        let order: Vec<String> = rollout.steps.iter().map(|s| s.address.to_string()).collect();
        assert_eq!(order, ["kubeadm-init.10.0.0.2", "kubeadm-join.10.0.0.3"], "members whose version changes");
        assert_eq!(rollout.max_unavailable, 1);
        let skip = vec![member(Kind::KubeadmInit, "10.0.0.2", "v1.22.15", "v1.24.0")];
        assert!(matches!(Rollout::of(&skip, 1), Err(PlanError::Upgrade { .. })));
        assert_eq!(Rollout::of(&changes[2..], 1).unwrap(), None);
    }

    #[test]
    fn a_targeted_delete_takes_what_depends_on_it() {
        let mut state = State::empty("c");
        let put = |state: &mut State, kind: Kind, key: &str, deps: Vec<Address>| {
            let r = StoredResource {
                address: Address::new(kind, key),
                host: None,
                status: ResourceStatus::Ready,
                attributes: Attributes::new(),
                depends_on: deps,
            };
            state.resources.insert(r.address.clone(), r);
        };
        let join = Address::new(Kind::KubeadmJoin, "10.0.0.5");
        put(&mut state, Kind::KubeadmJoin, "10.0.0.5", vec![]);
        put(&mut state, Kind::Label, "10.0.0.5", vec![join.clone()]);
        put(&mut state, Kind::Hostname, "10.0.0.6", vec![]);
        let graph = crate::graph::GraphBuilder::default().finish().unwrap();
        let options = PlanOptions { targets: vec![join], ..PlanOptions::default() };
        let p = plan(&graph, &state, &options).unwrap();
        let deleted: Vec<String> = p.changes.iter().map(|c| c.address.to_string()).collect();
        assert_eq!(deleted, ["label.10.0.0.5", "kubeadm-join.10.0.0.5"], "dependents first, the rest untouched");
    }
}

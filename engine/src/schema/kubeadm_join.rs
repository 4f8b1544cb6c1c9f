//! `kubeadm-join.IP`: a member other than the first master.

use super::{schema, Rules};

schema! {
    pub struct KubeadmJoin for KubeadmJoin {
        /// `master` or `node`: a member changing role leaves and joins again.
        role: String [replaces],
        control_plane_endpoint: String,
        /// Where the member's `/etc/hosts` points `sea.hub` (and, for a node without a balancer, the API's
        /// name): a new first master updates every member.
        first_master: Option<String>,
        /// A new version is an upgrade of the member (`kubeadm upgrade node`), after the first master's.
        kubernetes_version: String,
        /// The kubeadm configuration `kubeadm join` reads.
        config: String,
    }
}

impl KubeadmJoin {
    pub fn is_master(&self) -> bool {
        self.role == "master"
    }
}

impl Rules for KubeadmJoin {
    /// A configuration compares as kubeadm reads it: records written before the planned text was tidied
    /// (`cgroupDriver: null`, a worker's unused `controlPlane`) ask for what today's plan asks.
    const COMPARED: &'static [&'static str] = &["config"];
    const COMPLETES_OLDER: bool = true;

    fn same_value(_config: &str, desired: &Self, recorded: &Self) -> bool {
        crate::kubeadm::same_planned_config(&desired.config, &recorded.config, desired.is_master())
    }

    /// A record written before `first_master` existed (none at all: `sealer gen` records an empty one for
    /// a host whose `/etc/hosts` has no registry name, which the apply then sets) was made with the first
    /// master the state records.
    fn complete_older(&mut self, first_master: &str) {
        self.first_master.get_or_insert_with(|| first_master.to_string());
    }
}

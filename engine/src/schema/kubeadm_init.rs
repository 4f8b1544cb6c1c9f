//! `kubeadm-init.IP`: the cluster, initialised on its first master.

use super::{schema, Rules};

schema! {
    pub struct KubeadmInit for KubeadmInit {
        /// A new version is an upgrade of the cluster (`kubeadm upgrade apply`).
        kubernetes_version: String,
        control_plane_endpoint: String,
        /// The kubeadm configuration `kubeadm init` reads.
        config: String,
    }
}

impl Rules for KubeadmInit {
    /// A configuration compares as kubeadm reads it ([`crate::kubeadm::same_planned_config`]).
    const COMPARED: &'static [&'static str] = &["config"];

    fn same_value(_config: &str, desired: &Self, recorded: &Self) -> bool {
        crate::kubeadm::same_planned_config(&desired.config, &recorded.config, true)
    }
}

//! The merged kubeadm configuration of a default cluster is sealer's documented default configuration
//! (seeds/002), field for field, with the apiVersion and criSocket of each Kubernetes version, plus what
//! sealer's code sets; a Clusterfile override of one field changes only that field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealer_engine::kubeadm::{init_config, join_config};

fn cluster(version: &str, extra: &str) -> sealer_engine::Clusterfile {
    let text = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: kubernetes:{version}\n  hosts:\n    \
         - ips: [192.168.0.2]\n      roles: [master]\n    - ips: [192.168.0.3]\n      roles: [node]\n{extra}"
    );
    sealer_engine::parse("Clusterfile", &text).unwrap().clusterfile
}

fn merged(cf: &sealer_engine::Clusterfile) -> String {
    format!("{}{}", init_config(cf, &[], "192.168.0.2".parse().unwrap()), join_config(cf, &[]))
}

#[test]
fn the_defaults_are_the_documented_configuration_for_each_version() {
    for version in ["v1.19.8", "v1.22.15", "v1.25.0"] {
        let text = merged(&cluster(version, ""));
        let (api, socket) = match version {
            "v1.19.8" => ("kubeadm.k8s.io/v1beta2", "/var/run/dockershim.sock"),
            "v1.22.15" => ("kubeadm.k8s.io/v1beta3", "/var/run/dockershim.sock"),
            _ => ("kubeadm.k8s.io/v1beta3", "unix:///run/containerd/containerd.sock"),
        };
        assert_eq!(text.matches(&format!("apiVersion: {api}")).count(), 3, "{text}");
        assert_eq!(text.matches(&format!("criSocket: {socket}")).count(), 2, "{text}");
        assert!(text.contains(&format!("kubernetesVersion: {version}")));
        insta::assert_snapshot!(format!("kubeadm_defaults_{version}"), text);
    }
}

#[test]
fn an_override_of_one_field_changes_only_that_field() {
    let base = merged(&cluster("v1.22.15", ""));
    let tuned = merged(&cluster(
        "v1.22.15",
        "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16\n",
    ));
    let changed: Vec<(&str, &str)> = base.lines().zip(tuned.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed, [("  podSubnet: 100.64.0.0/10", "  podSubnet: 10.244.0.0/16")]);
    assert_eq!(base.lines().count(), tuned.lines().count());
}

/// Seed 002's documents, written for kubeadm's v1beta2 (which kubeadm reads no more from 1.26), go to a
/// v1.29 cluster in the API version its kubeadm reads, with their fields (those of v1beta2 that v1beta3
/// keeps unchanged).
#[test]
fn seed_002s_v1beta2_documents_are_converted_for_a_newer_cluster() {
    let seed = "---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nimageRepository: sea.hub:5000/library\n\
                networking:\n  serviceSubnet: 10.96.0.0/22\napiServer:\n  extraArgs:\n    audit-log-maxage: '7'\n\
                ---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\ncaCertPath: /etc/kubernetes/pki/ca.crt\n";
    let text = merged(&cluster("v1.29.14", seed));
    assert!(!text.contains("v1beta2"), "{text}");
    assert_eq!(text.matches("apiVersion: kubeadm.k8s.io/v1beta3").count(), 3, "{text}");
    for field in ["imageRepository: sea.hub:5000/library", "serviceSubnet: 10.96.0.0/22", "audit-log-maxage: '7'"] {
        assert!(text.contains(field), "{field}: {text}");
    }
    assert!(text.contains("caCertPath: /etc/kubernetes/pki/ca.crt"), "{text}");
}

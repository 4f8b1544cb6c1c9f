//! Every example of sealer's plugin, Clusterfile and build documentation (`../shared/seeds`), pasted as
//! written (indentation restored) under `tests/docs-examples/`, planned by the binary: each is accepted,
//! with the resources it means and the warnings sealer gives where it goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealer_tests::{repo_root, sealer, stderr, stdout};
use serde_json::Value as Json;

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/docs-examples").join(name)).unwrap()
}

/// Plans the concatenation of `files` (no state, no hosts): the addresses it creates and its warnings as
/// `line: message (value)`.
fn plan(files: &[&str]) -> (Vec<String>, Vec<String>, Json) {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<String> = files.iter().map(|f| example(f)).collect();
    std::fs::write(dir.path().join("Clusterfile"), text.join("---\n")).unwrap();
    let out = sealer(dir.path(), &["plan", "--refresh=false", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{files:?}: {}", stderr(&out));
    let plan: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let addresses = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["action"], "create");
            c["address"].as_str().unwrap().to_string()
        })
        .collect();
    let warnings = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["field"].is_string())
        .map(|w| format!("{}:{}: {} ({})", w["line"], w["column"], w["message"].as_str().unwrap(), w["value"]))
        .collect();
    (addresses, warnings, plan)
}

fn with_prefix<'a>(addresses: &'a [String], prefix: &str) -> Vec<&'a str> {
    addresses.iter().filter(|a| a.starts_with(prefix)).map(String::as_str).collect()
}

#[test]
fn the_plugin_guide_examples_plan_as_written() {
    let (addresses, warnings, plan) = plan(&["cluster-6-hosts.yaml", "plugin-guide-plugins.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    // `on: node-role.kubernetes.io/master=` selects the masters of a new 1.19 cluster (kubeadm's label).
    assert_eq!(
        with_prefix(&addresses, "plugin.MyShell."),
        [
            "plugin.MyShell.PostInstall.192.168.0.2",
            "plugin.MyShell.PostInstall.192.168.0.3",
            "plugin.MyShell.PostInstall.192.168.0.4"
        ]
    );
    assert_eq!(with_prefix(&addresses, "plugin.checkCluster."), ["plugin.checkCluster.PreGuest.192.168.0.2"]);
    assert_eq!(with_prefix(&addresses, "plugin.MyBackup."), ["plugin.MyBackup.PostInstall.192.168.0.2"]);
    assert_eq!(with_prefix(&addresses, "plugin.label_nodes.so.").len(), 6, "an out-of-tree plugin on every host");
    assert_eq!(with_prefix(&addresses, "label.").len(), 6);
    let names: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "hostname")
        .map(|c| c["after"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["master-0", "master-1", "master-2", "node-0", "node-1", "node-2"]);
    insta::assert_snapshot!("plugin_guide", addresses.join("\n"));
}

#[test]
fn the_taint_example_plans_as_written() {
    let (addresses, warnings, plan) = plan(&["plugin-guide-taint.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(with_prefix(&addresses, "taint.").len(), 5);
    let taint = |ip: &str| {
        plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == format!("taint.{ip}")).unwrap()["after"]
            .clone()
    };
    let first = taint("192.168.56.3");
    assert_eq!(
        first["taints"],
        serde_json::json!(["key1=value1:NoSchedule", "key3:NoSchedule", "key4:NoSchedule", "key5=:NoSchedule"])
    );
    assert_eq!(first["absent"], serde_json::json!(["key6:NoSchedule"]));
    assert_eq!(taint("192.168.56.4")["absent"], serde_json::json!(["key2=value2:NoSchedule", "key7:NoSchedule"]));
}

#[test]
fn a_label_line_naming_a_host_outside_the_cluster_is_one_warning() {
    let (addresses, warnings, _) = plan(&["plugin-guide-clusterfile.yaml"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // The line of the file that holds the data line itself.
    let line =
        example("plugin-guide-clusterfile.yaml").lines().position(|l| l.contains("172.20.126.8 ssd")).unwrap() + 1;
    assert_eq!(
        warnings[0],
        format!(
            "{line}:5: this data line names hosts that are not in the cluster: they are skipped (\"172.20.126.8\")"
        )
    );
    assert!(with_prefix(&addresses, "label.").is_empty());
}

#[test]
fn the_images_shell_yaml_plans_with_its_typeless_shell_plugin() {
    let (addresses, warnings, _) = plan(&["shell-yaml.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(with_prefix(&addresses, "plugin.taint.").len(), 3, "the masters: {addresses:?}");
    assert_eq!(with_prefix(&addresses, "plugin.SHELL.PostInstall.").len(), 4, "every host");
}

#[test]
fn the_articles_env_kubeadm_and_config_examples_plan_as_written() {
    let (addresses, warnings, plan) = plan(&["article-env-kubeadm-config.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        with_prefix(&addresses, "config.mysql-config."),
        ["config.mysql-config.192.168.0.2", "config.mysql-config.192.168.0.3"]
    );
    let change =
        |address: &str| plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == address).unwrap().clone();
    let init = change("kubeadm-init.192.168.0.2");
    assert!(init["after"]["config"].as_str().unwrap().contains("podSubnet: 100.64.0.0/10"));
    // The host group's env wins over the cluster's.
    assert_eq!(change("guest.192.168.0.2")["after"]["env"]["docker-dir"], "/data/docker");
}

#[test]
fn the_articles_plugin_examples_plan_as_written() {
    let (addresses, warnings, _) = plan(&["cluster-6-hosts.yaml", "article-plugins.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(with_prefix(&addresses, "plugin.shell.PostInstall.").len(), 3);
    assert_eq!(with_prefix(&addresses, "label.").len(), 6);
    insta::assert_snapshot!("article_plugins", addresses.join("\n"));
}

#[test]
fn the_articles_v1alpha1_example_runs_its_shell_plugin_on_the_masters() {
    let (addresses, warnings, _) = plan(&["article-v1alpha1.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        with_prefix(&addresses, "plugin.taint."),
        [
            "plugin.taint.PostInstall.192.168.0.2",
            "plugin.taint.PostInstall.192.168.0.3",
            "plugin.taint.PostInstall.192.168.0.4"
        ]
    );
}

#[test]
fn a_selector_matching_no_host_is_a_warning_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: gpu\nspec:\n  type: SHELL\n  \
         action: PostInstall\n  on: gpu=nvidia\n  data: nvidia-smi\n",
        example("cluster-6-hosts.yaml")
    );
    std::fs::write(dir.path().join("Clusterfile"), &text).unwrap();
    let out = sealer(dir.path(), &["plan", "--refresh=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = text.lines().position(|l| l.contains("on: gpu=nvidia")).unwrap() + 1;
    assert!(
        stderr(&out).contains(&format!(
            "warning: Clusterfile:{line}:7: document 2, field `spec.on`: the label selector matches no host: plugin \
             `gpu` runs nowhere (value `gpu=nvidia`)"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_build_guides_kubeadm_documents_plan_as_written() {
    let (addresses, warnings, plan) = plan(&["build-guide-kubeadm.yaml"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(with_prefix(&addresses, "kubeadm-join.").len(), 3);
    let join = plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == "kubeadm-join.192.168.0.5").unwrap();
    let config = join["after"]["config"].as_str().unwrap();
    for field in ["apiVersion: kubeadm.k8s.io/v1beta2", "caCertPath: /etc/kubernetes/pki/ca.crt", "timeout: 5m0s"] {
        assert!(config.contains(field), "{config}");
    }
    assert!(!config.contains("token"), "join credentials are never planned: {config}");
}

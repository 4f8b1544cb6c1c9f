//! `sealer plan` as users run it: golden plans of every example, exit codes, JSON, saved plans, targets,
//! plans against a recorded state, and the invalid inputs; and the flags of `sealer run`, checked before
//! it pulls, down to the plan of the Clusterfile they mean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sealer_engine::{ImageFacts, State};
use sealer_tests::{
    build_stub_image, repo_root, sealer, sealer_with_stdin, seed_applied_state, seed_applied_state_with, stderr, stdout,
};
use serde_json::Value as Json;

const EXAMPLES: [&str; 4] = ["single-node", "ha-plugins", "v1alpha1", "env-config-kubeadm"];
const EXAMPLE_PASSWORDS: [&str; 4] = ["Seal3r-Example-Pass", "Nodes-0nly-Pass", "Legacy-Pass-123", "Tuned-Pass-456"];

fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name).join("Clusterfile")
}

fn example_text(name: &str) -> String {
    std::fs::read_to_string(example(name)).unwrap()
}

/// The cluster image of every example but `v1alpha1`.
const EXAMPLE_IMAGE: &str = "docker.io/sealerio/kubernetes:v1.22.15";

/// The state at `state` seeded as if `clusterfile` had been applied from the examples' image, which is built
/// small into the home `sealer` has in `dir`: a recorded cluster is only planned with its image at hand.
fn seed_with_example_image(dir: &Path, state: &Path, clusterfile: &str) -> State {
    let image = build_stub_image(&dir.join(".sealer-home"), EXAMPLE_IMAGE);
    seed_applied_state_with(state, clusterfile, &image)
}

fn json_plan(cwd: &Path, file: &Path, extra: &[&str]) -> Json {
    let mut args = vec!["plan", "-f", file.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = sealer(cwd, &args);
    assert!(out.status.code() == Some(0) || out.status.code() == Some(2), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_example_plans_with_the_documented_exit_codes_and_golden_output() {
    for name in EXAMPLES {
        let dir = tempfile::tempdir().unwrap();
        let file = example(name);
        let plain = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap()]);
        assert_eq!(plain.status.code(), Some(0), "{name}: {}", stderr(&plain));
        let detailed = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--detailed-exitcode", "--no-color"]);
        assert_eq!(detailed.status.code(), Some(2), "{name}: {}", stderr(&detailed));
        assert_eq!(stdout(&plain), stdout(&detailed), "{name}: output is deterministic");
        insta::assert_snapshot!(format!("plan_{name}"), stdout(&plain));
        let json = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--json"]);
        insta::assert_snapshot!(format!("plan_json_{name}"), stdout(&json));
        assert!(!dir.path().join(".sealer").exists(), "{name}: plan created a state");
    }
}

#[test]
fn ha_plan_has_one_resource_of_each_kind_where_expected() {
    let dir = tempfile::tempdir().unwrap();
    let plan = json_plan(dir.path(), &example("ha-plugins"), &[]);
    let changes = plan["changes"].as_array().unwrap();
    let of_kind = |kind: &str| -> Vec<String> {
        changes.iter().filter(|c| c["kind"] == kind).map(|c| c["host"].as_str().unwrap().to_string()).collect()
    };
    let masters = ["10.250.0.11", "10.250.0.12", "10.250.0.13"];
    let nodes = ["10.250.0.21", "10.250.0.22", "10.250.0.23"];
    let all: Vec<String> = masters.iter().chain(&nodes).map(|s| s.to_string()).collect();
    assert_eq!(of_kind("host"), all);
    let mut hostnames = of_kind("hostname");
    hostnames.sort();
    assert_eq!(hostnames, all);
    assert_eq!(of_kind("kubeadm-init"), ["10.250.0.11"]);
    let mut joins = of_kind("kubeadm-join");
    joins.sort();
    assert_eq!(joins, all[1..].to_vec());
    let mut labels = of_kind("label");
    labels.sort();
    assert_eq!(labels, nodes);
    let mut taints = of_kind("taint");
    taints.sort();
    assert_eq!(taints, ["10.250.0.11", "10.250.0.12", "10.250.0.13", "10.250.0.23"]);
    assert!(changes.iter().all(|c| c["action"] == "create" && c["reason"] == "create_because_not_in_state"));
    assert_eq!(plan["summary"]["create"].as_u64().unwrap() as usize, changes.len());
    assert_eq!(plan["format_version"], "1");
    assert_eq!(plan["cluster"], "ha");
    assert_eq!(plan["prior_serial"], 0);
    // Masters join one by one, nodes after the last master.
    let deps = |addr: &str| -> Vec<String> {
        let c = changes.iter().find(|c| c["address"] == addr).unwrap();
        c["depends_on"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect()
    };
    assert!(deps("kubeadm-join.10.250.0.13").contains(&"kubeadm-join.10.250.0.12".to_string()));
    assert!(deps("kubeadm-join.10.250.0.21").contains(&"kubeadm-join.10.250.0.13".to_string()));
    assert_eq!(deps("label.10.250.0.21"), ["kubeadm-join.10.250.0.21"]);
    // Every dependency comes earlier in the list.
    let position: BTreeMap<&str, usize> =
        changes.iter().enumerate().map(|(i, c)| (c["address"].as_str().unwrap(), i)).collect();
    for (i, c) in changes.iter().enumerate() {
        for d in c["depends_on"].as_array().unwrap() {
            assert!(position[d.as_str().unwrap()] < i, "{} before {}", d, c["address"]);
        }
    }
}

#[test]
fn graph_is_a_stable_dot_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let out = sealer(dir.path(), &["graph", "-f", example("ha-plugins").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("graph_ha_plugins", stdout(&out));
}

#[test]
fn passwords_appear_in_no_output_saved_plan_or_state() {
    for name in EXAMPLES {
        let dir = tempfile::tempdir().unwrap();
        let file = example(name);
        let state = dir.path().join("state.db");
        let planfile = dir.path().join("out.plan");
        let human = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--out", planfile.to_str().unwrap()]);
        let json = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--json"]);
        seed_applied_state(&state, &example_text(name));
        let mut everything = [stdout(&human), stderr(&human), stdout(&json), stderr(&json)].concat().into_bytes();
        let mut shown_sensitive = false;
        for ip in host_ips(&json) {
            let shown =
                sealer(dir.path(), &["--state", state.to_str().unwrap(), "state", "show", &format!("host.{ip}")]);
            assert!(shown.status.success(), "{}", stderr(&shown));
            shown_sensitive |=
                stdout(&shown).lines().any(|l| l.contains("ssh_password") && l.ends_with("= (sensitive)"));
            everything.extend(shown.stdout);
        }
        assert_eq!(shown_sensitive, example_text(name).contains("passwd:"), "{name}");
        everything.extend(std::fs::read(&planfile).unwrap());
        for f in std::fs::read_dir(dir.path()).unwrap() {
            everything.extend(std::fs::read(f.unwrap().path()).unwrap());
        }
        let text = String::from_utf8_lossy(&everything);
        for password in EXAMPLE_PASSWORDS {
            assert!(!text.contains(password), "{name}: password `{password}` leaked");
        }
    }
}

fn host_ips(json_output: &std::process::Output) -> Vec<String> {
    let plan: Json = serde_json::from_slice(&json_output.stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    changes.iter().filter(|c| c["kind"] == "host").map(|c| c["host"].as_str().unwrap().to_string()).collect()
}

#[test]
fn plan_against_an_applied_state_is_empty_then_shows_updates_replaces_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".sealer/state.db");
    let text = example_text("ha-plugins");
    let seeded = seed_with_example_image(dir.path(), &state, &text);
    let file = write(dir.path(), "Clusterfile", &text);
    let before = std::fs::read(&state).unwrap();

    let same = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--detailed-exitcode", "--refresh=false"]);
    assert_eq!(same.status.code(), Some(0), "{}{}", stdout(&same), stderr(&same));
    assert!(stdout(&same).contains("No changes."));

    // node-2 renamed, one label value changed, node 10.250.0.22 removed, 10.250.0.21 promoted to master.
    let changed = text
        .replace("10.250.0.23 node-2", "10.250.0.23 gpu-node")
        .replace("10.250.0.23 gpu=nvidia", "10.250.0.23 gpu=amd")
        .replace("gpu=nvidia:NoSchedule", "gpu=amd:NoSchedule")
        .replace("on: gpu=nvidia", "on: gpu=amd")
        .replace("    10.250.0.22 node-1\n", "")
        .replace("10.250.0.21-10.250.0.22 node-role", "10.250.0.21 node-role")
        .replace(
            "ips: [10.250.0.11, 10.250.0.12, 10.250.0.13]",
            "ips: [10.250.0.11, 10.250.0.12, 10.250.0.13, 10.250.0.21]",
        )
        .replace("ips: [10.250.0.21-10.250.0.23]", "ips: [10.250.0.23]");
    let file = write(dir.path(), "Clusterfile", &changed);
    let out = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--detailed-exitcode", "--refresh=false"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let human = stdout(&out);
    assert!(human.contains("~ name = \"node-2\" -> \"gpu-node\""), "{human}");
    assert!(human.contains("~ \"gpu\" = \"nvidia\" -> \"amd\""), "{human}");
    assert!(
        human
            .contains("# kubeadm-join.10.250.0.22 will be destroyed\n  # (because it is no longer in the Clusterfile)"),
        "{human}"
    );
    assert!(human.contains("-/+ kubeadm-join \"10.250.0.21\""), "{human}");
    // Attributes are aligned per resource: the line is compared without its padding.
    let squeezed: Vec<String> = human.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert!(squeezed.iter().any(|l| l == "~ role = \"node\" -> \"master\" # forces replacement"), "{human}");

    let plan = json_plan(dir.path(), &file, &["--refresh=false"]);
    assert_eq!(plan["lineage"], seeded.lineage.clone().unwrap().as_str());
    assert_eq!(plan["prior_serial"], seeded.serial);
    let changes = plan["changes"].as_array().unwrap();
    let action =
        |a: &str| changes.iter().find(|c| c["address"] == a).map(|c| c["action"].as_str().unwrap().to_string());
    assert_eq!(action("hostname.10.250.0.23").as_deref(), Some("update"));
    assert_eq!(action("host.10.250.0.21").as_deref(), Some("replace"));
    assert_eq!(action("host.10.250.0.11").as_deref(), Some("no-op"));
    let deletes: Vec<&str> =
        changes.iter().filter(|c| c["action"] == "delete").map(|c| c["address"].as_str().unwrap()).collect();
    // Reverse dependency order: what depends on the node goes before it.
    let at = |a: &str| deletes.iter().position(|d| *d == a).unwrap();
    assert!(at("label.10.250.0.22") < at("kubeadm-join.10.250.0.22"));
    assert!(at("kubeadm-join.10.250.0.22") < at("image.10.250.0.22"));
    assert!(at("image.10.250.0.22") < at("hostname.10.250.0.22"));
    assert!(at("hostname.10.250.0.22") < at("host.10.250.0.22"));
    assert!(changes
        .iter()
        .filter(|c| c["action"] == "delete")
        .all(|c| c["reason"] == "delete_because_no_resource_config"));

    assert_eq!(std::fs::read(&state).unwrap(), before, "plan changed the state file");
}

#[test]
fn targets_select_the_address_and_its_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let plan = json_plan(dir.path(), &example("ha-plugins"), &["--target", "label.10.250.0.21"]);
    let addresses: Vec<&str> =
        plan["changes"].as_array().unwrap().iter().map(|c| c["address"].as_str().unwrap()).collect();
    assert!(addresses.contains(&"label.10.250.0.21"));
    assert!(addresses.contains(&"kubeadm-join.10.250.0.21"));
    assert!(addresses.contains(&"kubeadm-init.10.250.0.11"));
    assert!(addresses.contains(&"host.10.250.0.21"));
    assert!(!addresses.contains(&"label.10.250.0.22"));
    assert!(!addresses.contains(&"guest.10.250.0.11"));
    let out =
        sealer(dir.path(), &["plan", "-f", example("ha-plugins").to_str().unwrap(), "--target", "label.10.9.9.9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("target `label.10.9.9.9` is neither in the Clusterfile nor in the state"),
        "{}",
        stderr(&out)
    );
    let out = sealer(dir.path(), &["plan", "-f", example("ha-plugins").to_str().unwrap(), "--target", "nothing"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn saved_plans_carry_lineage_serial_and_a_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.db");
    let seeded = seed_with_example_image(dir.path(), &state, &example_text("single-node"));
    let changed = example_text("ha-plugins").replace("name: ha", "name: single");
    let file = write(dir.path(), "Clusterfile", &changed);
    let planfile = dir.path().join("p.plan");
    let out = sealer(
        dir.path(),
        &[
            "--state",
            state.to_str().unwrap(),
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--refresh=false",
            "--out",
            planfile.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Saved the plan to:"));
    let plan = sealer_state::read_plan_file(&planfile).unwrap();
    assert_eq!(plan.lineage, seeded.lineage);
    assert_eq!(plan.prior_serial, seeded.serial);
    assert!(plan.has_changes());
    let saved: Json = serde_json::from_slice(&std::fs::read(&planfile).unwrap()).unwrap();
    assert!(saved["checksum"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn refresh_false_and_env_state_path_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let out = sealer(dir.path(), &["plan", "-f", example("single-node").to_str().unwrap(), "--refresh=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn state_list_show_and_force_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".sealer/state.db");
    let none = sealer(dir.path(), &["state", "list"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no state at"));
    seed_applied_state(&state, &example_text("single-node"));
    let list = sealer(dir.path(), &["state", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let listed: Vec<String> = stdout(&list).lines().map(str::to_string).collect();
    assert!(listed.contains(&"kubeadm-init.10.250.0.11".to_string()), "{listed:?}");
    assert_eq!(listed.len(), 6, "{listed:?}");
    let show = sealer(dir.path(), &["state", "show", "image.10.250.0.11", "--json"]);
    let shown: Json = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["attributes"]["image"], "docker.io/sealerio/kubernetes:v1.22.15");
    assert_eq!(shown["status"], "ready");
    let missing = sealer(dir.path(), &["state", "show", "image.10.9.9.9"]);
    assert_eq!(missing.status.code(), Some(1));

    let mut store = sealer_state::SqliteStore::open(&state).unwrap();
    let lock = sealer_engine::StateStore::lock(&mut store, "single", "dead@host", 999_999, "sealer apply").unwrap();
    let refused = sealer_with_stdin(dir.path(), &["force-unlock", &lock.id], "no\n");
    assert_eq!(refused.status.code(), Some(1));
    assert!(store.current_lock("single").unwrap().is_some());
    let released = sealer_with_stdin(dir.path(), &["force-unlock", &lock.id], "yes\n");
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(stdout(&released).contains("dead@host"));
    assert!(store.current_lock("single").unwrap().is_none());
    let again = sealer(dir.path(), &["force-unlock", &lock.id, "--force"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("no lock with id"));
}

/// Each case: a Clusterfile, and what the error must name.
fn invalid_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let ok = example_text("ha-plugins");
    vec![
        (
            "yaml syntax",
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec: [\n".into(),
            vec!["invalid YAML", "Clusterfile:"],
        ),
        (
            "unknown kind",
            format!("{ok}---\napiVersion: apps/v1\nkind: Deployment\n"),
            vec!["document 8", "`kind`", "Deployment"],
        ),
        ("bad apiVersion", ok.replace("sealer.cloud/v2", "sealer.cloud/v3"), vec!["`apiVersion`", "sealer.cloud/v3"]),
        ("no image", ok.replace("  image: docker.io/sealerio/kubernetes:v1.22.15\n", ""), vec!["`spec.image`"]),
        ("no master", ok.replace("roles: [master]", "roles: [node]"), vec!["`spec.hosts`", "master"]),
        (
            "duplicate ip",
            ok.replace("10.250.0.21-10.250.0.23", "10.250.0.13-10.250.0.23"),
            vec!["`spec.hosts[1].ips[0]`", "10.250.0.13", "twice"],
        ),
        (
            "reversed range",
            ok.replace("10.250.0.21-10.250.0.23", "10.250.0.23-10.250.0.21"),
            vec!["10.250.0.23-10.250.0.21", "ends before it starts"],
        ),
        (
            "oversized range",
            ok.replace("10.250.0.21-10.250.0.23", "10.250.0.21-10.252.0.23"),
            vec!["more than the limit"],
        ),
        ("invalid ip", ok.replace("10.250.0.12,", "10.250.0.312,"), vec!["10.250.0.312", "not an IP"]),
        (
            "unknown role",
            ok.replace("roles: [node]", "roles: [worker-bee]"),
            vec!["`spec.hosts[1].roles[0]`", "worker-bee"],
        ),
        (
            "taint effect",
            ok.replace("gpu=nvidia:NoSchedule", "gpu=nvidia:Sometimes"),
            vec!["Sometimes", "taint effect"],
        ),
        ("label key", ok.replace("disk=ssd", "-disk=ssd"), vec!["-disk", "label key"]),
        ("label value", ok.replace("disk=ssd", "disk=s s"), vec!["invalid label"]),
        ("hostname", ok.replace("10.250.0.21 node-0", "10.250.0.21 node_0;reboot"), vec!["node_0;reboot", "RFC 1123"]),
        (
            "plugin action",
            ok.replace("action: PreInit|PreJoin", "action: PreInit|Sometime"),
            vec!["`spec.action`", "Sometime", "unknown plugin action"],
        ),
    ]
}

#[test]
fn invalid_clusterfiles_exit_1_naming_field_and_value_and_leave_state_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".sealer/state.db");
    seed_applied_state(&state, &example_text("ha-plugins"));
    let before = std::fs::read(&state).unwrap();
    for (name, text, needles) in invalid_cases() {
        let file = write(dir.path(), "Clusterfile", &text);
        for extra in [&[][..], &["--json"][..], &["--detailed-exitcode"][..]] {
            let mut args = vec!["plan", "-f", file.to_str().unwrap()];
            args.extend_from_slice(extra);
            let out = sealer(dir.path(), &args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{name}: {err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(out.stdout.is_empty(), "{name}: printed a plan");
            for needle in &needles {
                assert!(err.contains(needle), "{name}: `{needle}` missing from:\n{err}");
            }
        }
        let fresh = tempfile::tempdir().unwrap();
        let out = sealer(fresh.path(), &["plan", "-f", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(!fresh.path().join(".sealer").exists(), "{name}: a failed plan created a state");
    }
    assert_eq!(std::fs::read(&state).unwrap(), before);
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = sealer(dir.path(), &["plan", "-f", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read the Clusterfile `nope.yaml`"), "{}", stderr(&out));
}

#[test]
fn multi_line_values_change_as_unified_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".sealer/state.db");
    let text = example_text("env-config-kubeadm");
    seed_with_example_image(dir.path(), &state, &text);
    let changed = text
        .replace("audit-log-maxage: \"30\"", "audit-log-maxage: \"90\"")
        .replace("maxPods: 150", "maxPods: 160")
        .replace("type: NodePort", "type: ClusterIP");
    let file = write(dir.path(), "Clusterfile", &changed);
    let out = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--detailed-exitcode", "--refresh=false"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let human = stdout(&out);
    assert!(human.contains("# kubeadm-init.10.250.0.11 will be updated in-place"), "{human}");
    assert!(human.contains("~ config = <<-EOT"), "{human}");
    assert!(human.contains("          -     audit-log-maxage: '30'\n"), "{human}");
    assert!(human.contains("          +     audit-log-maxage: '90'\n"), "{human}");
    // Only the changed lines by default (the kubelet configuration's one line of its 60 too); `--verbose`
    // keeps three lines of context around them.
    assert!(human.contains("          - maxPods: 150\n          + maxPods: 160\n"), "{human}");
    assert!(
        !human.contains("enable-aggregator-routing") && !human.contains("podPidsLimit"),
        "only the changes: {human}"
    );
    assert!(human.contains("          -   type: NodePort\n          +   type: ClusterIP\n"), "{human}");
    let verbose = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--refresh=false", "--verbose"]);
    let verbose = stdout(&verbose);
    assert!(verbose.contains("                enable-aggregator-routing: 'true'\n"), "context lines: {verbose}");
    // The Config document is used on every host, so exactly its three resources change, plus kubeadm-init.
    let plan = json_plan(dir.path(), &file, &["--refresh=false"]);
    let updated: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op")
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        updated,
        [
            "config.dashboard-values.10.250.0.11",
            "config.dashboard-values.10.250.0.21",
            "config.dashboard-values.10.250.0.22",
            "kubeadm-init.10.250.0.11"
        ]
    );
}

#[test]
fn an_env_change_updates_exactly_the_scripts_of_that_host_group() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".sealer/state.db");
    let text = example_text("env-config-kubeadm");
    seed_with_example_image(dir.path(), &state, &text);
    let changed_for = |from: &str, to: &str| {
        let file = write(dir.path(), "Clusterfile", &text.replace(from, to));
        let plan = json_plan(dir.path(), &file, &["--refresh=false"]);
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] != "no-op")
            .map(|c| (c["address"].as_str().unwrap().to_string(), c["action"].as_str().unwrap().to_string()))
            .collect::<Vec<_>>()
    };
    // The master group's env reaches what runs scripts on the master (the SHELL plugin, and the image's
    // CMDs in `guest`), and nothing else.
    let on_master = [
        ("guest.10.250.0.11".to_string(), "update".to_string()),
        ("plugin.show-env.PostInstall.10.250.0.11".to_string(), "update".to_string()),
    ];
    assert_eq!(changed_for("- NodeRole=master", "- NodeRole=control-plane"), on_master);
    // The cluster-wide env reaches them too; the nodes run no script, so nothing of theirs changes.
    assert_eq!(changed_for("- PodCIDR=100.64.0.0/10", "- PodCIDR=100.64.0.0/12"), on_master);
    assert!(changed_for("- RegistryDomain=mirror.sea.hub", "- RegistryDomain=other.sea.hub").is_empty());
}

/// The commands CI jobs run: `validate` (no state, no hosts), `show` of a saved plan, the markdown plan
/// for a pull-request comment, completions, and the version with its git revision.
#[test]
fn ci_commands_validate_show_markdown_completion_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let file = example("ha-plugins");
    let valid = sealer(dir.path(), &["validate", "-f", file.to_str().unwrap()]);
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    assert!(stdout(&valid).contains("is a valid Clusterfile"), "{}", stdout(&valid));
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: Bad_Name\nspec:\n  image: k:1\n  hosts:\n    - ips: [10.0.0.300]\n      roles: [master]\n  colour: red\n",
    );
    let invalid = sealer(dir.path(), &["validate", "-f", bad.to_str().unwrap(), "--json"]);
    assert_eq!(invalid.status.code(), Some(1));
    let mut report: Json = serde_json::from_slice(&invalid.stdout).unwrap();
    for d in report["diagnostics"].as_array_mut().unwrap() {
        d["file"] = "bad.yaml".into();
    }
    insta::assert_json_snapshot!("validate_json_invalid", report);
    let human = sealer(dir.path(), &["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(human.status.code(), Some(1));
    assert!(stderr(&human).contains(":4:9: document 1, field `metadata.name`"), "{}", stderr(&human));
    assert!(!dir.path().join(".sealer").exists(), "validate touches no state");

    // A saved plan, shown as it was planned.
    let saved = dir.path().join("plan.bin");
    let planned = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--out", saved.to_str().unwrap()]);
    assert_eq!(planned.status.code(), Some(0), "{}", stderr(&planned));
    let shown = sealer(dir.path(), &["show", saved.to_str().unwrap(), "--no-color"]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let direct = stdout(&sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--no-color"]));
    assert_eq!(stdout(&shown), direct, "show prints the saved plan as plan printed it");
    let shown_json: Json =
        serde_json::from_slice(&sealer(dir.path(), &["show", saved.to_str().unwrap(), "--json"]).stdout).unwrap();
    assert_eq!(shown_json["summary"]["create"], json_plan(dir.path(), &file, &[])["summary"]["create"]);

    // The markdown plan: a summary table, then collapsible changes; no secret in it.
    for (name, password) in EXAMPLES.iter().zip(EXAMPLE_PASSWORDS) {
        let md = sealer(dir.path(), &["plan", "-f", example(name).to_str().unwrap(), "--format", "markdown"]);
        assert_eq!(md.status.code(), Some(0), "{}", stderr(&md));
        assert!(!stdout(&md).contains(password), "{name}: a password in the markdown plan");
        if *name == "ha-plugins" {
            insta::assert_snapshot!("plan_markdown_ha-plugins", stdout(&md));
        }
    }

    for shell in ["bash", "zsh", "fish"] {
        let script = sealer(dir.path(), &["completion", shell]);
        assert_eq!(script.status.code(), Some(0), "{shell}: {}", stderr(&script));
        assert!(stdout(&script).contains("sealer") && stdout(&script).contains("validate"), "{shell}");
    }
    let version = stdout(&sealer(dir.path(), &["--version"]));
    assert!(version.starts_with("sealer 0.1.0 (git ") && !version.contains("unknown"), "{version}");
}

/// A plugin document as a cluster image carries it (`plugin/from-image.yaml`).
const IMAGE_PLUGIN: &str =
    "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: from-image\nspec:\n  \
                            type: SHELL\n  action: PostInstall\n  on: master\n  data: echo installed\n";

#[test]
fn a_recorded_cluster_is_never_planned_without_its_image() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".sealer-home");
    let state = dir.path().join(".sealer/state.db");
    // Nothing answers on port 1: a pull of this image fails at once.
    let image = "127.0.0.1:1/sealer/hooked:v1";
    let text = example_text("single-node").replace(EXAMPLE_IMAGE, image);
    let file = write(dir.path(), "Clusterfile", &text);

    // The cluster was installed from an image with a hook and a plugin of its own.
    let context = tempfile::tempdir().unwrap();
    let hook = context.path().join("startup.sh");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    // An executable in `hooks/` is what makes the image's hooks a resource of the cluster.
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(context.path().join("kubeadm"), "#!/bin/sh\n").unwrap();
    std::fs::write(context.path().join("from-image.yaml"), IMAGE_PLUGIN).unwrap();
    std::fs::write(
        context.path().join("Kubefile"),
        "FROM scratch\nCOPY kubeadm bin/kubeadm\nCOPY startup.sh hooks/startup.sh\nCOPY from-image.yaml plugin\n",
    )
    .unwrap();
    let built =
        sealer_tests::sealer_at(&home, context.path(), &["build", "-t", image, context.path().to_str().unwrap()]);
    assert!(built.status.success(), "{}", stderr(&built));
    let digest = sealer_providers::image::store::ImageStore::new(&home).get(image).unwrap().config.digest;
    let facts = ImageFacts { digest: Some(digest), hooks: true, ..ImageFacts::default() };
    let seeded = seed_applied_state_with(&state, &format!("{text}---\n{IMAGE_PLUGIN}"), &facts);
    let plugin = "plugin.from-image.PostInstall.10.250.0.11";
    assert!(seeded.resources.keys().any(|a| a.to_string() == "hooks.10.250.0.11"));
    assert!(seeded.resources.keys().any(|a| a.to_string() == plugin));

    // With the image at hand, its hook and its plugin are the cluster's: nothing to change.
    let args = ["plan", "-f", file.to_str().unwrap(), "--refresh=false", "--detailed-exitcode"];
    let same = sealer(dir.path(), &args);
    assert_eq!(same.status.code(), Some(0), "{}{}", stdout(&same), stderr(&same));

    // Without it (gone from the store, and its registry unreachable) the plan is refused, naming the image
    // and why it could not be pulled, in every format: never `hooks` and the plugin to destroy.
    let removed = sealer(dir.path(), &["rmi", "--force", image]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    for extra in [&[][..], &["--json"][..], &["--format", "markdown"][..]] {
        let mut all = args.to_vec();
        all.extend_from_slice(extra);
        let out = sealer(dir.path(), &all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}{err}", stdout(&out));
        assert!(
            err.contains(&format!("cluster `single` is in the state and the local store lacks image `{image}`")),
            "{extra:?}: {err}"
        );
        let cause = err.split_once(&format!("cannot pull the image `{image}`: ")).map(|(_, cause)| cause.trim());
        assert!(cause.is_some_and(|c| !c.is_empty()), "{extra:?}: the pull's cause is missing: {err}");
        assert!(out.stdout.is_empty(), "{extra:?}: printed a plan: {}", stdout(&out));
        assert!(!err.contains("to destroy") && !err.contains("hooks."), "{extra:?}: {err}");
    }
    // Destroying needs nothing of the image.
    let destroy = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--refresh=false", "--destroy"]);
    assert_eq!(destroy.status.code(), Some(0), "{}", stderr(&destroy));
    assert!(stdout(&destroy).contains("# hooks.10.250.0.11 will be destroyed"), "{}", stdout(&destroy));
}

#[test]
fn a_file_that_is_no_clusterfile_is_quoted_by_one_short_line_not_in_full() {
    let dir = tempfile::tempdir().unwrap();
    // `/etc/passwd` reads as one plain scalar, its lines folded into one; a literal block keeps its lines.
    let passwd: String =
        (0..30).map(|i| format!("user{i}:x:{i}:{i}:User {i}:/home/user{i}:/usr/sbin/nologin\n")).collect();
    let folded = passwd.lines().collect::<Vec<_>>().join(" ");
    let block: String = "--- |\n".to_string() + &"  one line of a long literal block\n".repeat(50);
    let long = "long scalar ".repeat(400);
    let quoted = format!("\"{long}\"\n");
    let first_80 = |text: &str| text.chars().take(80).collect::<String>();
    for (name, text, first) in [
        ("passwd", passwd, first_80(&folded)),
        ("block.yaml", block, "one line of a long literal block".to_string()),
        ("scalar.yaml", quoted, first_80(&long)),
    ] {
        let file = write(dir.path(), name, &text);
        let human = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap()]);
        assert_eq!(human.status.code(), Some(1), "{name}");
        let err = stderr(&human);
        let line = err.lines().find(|l| l.contains("a Clusterfile document must be a mapping")).unwrap();
        let value = line.split_once("(value `").unwrap().1.strip_suffix("`)").unwrap();
        assert_eq!(value, format!("{first}…"), "{name}: {line}");
        assert_eq!(err.lines().count(), 2, "{name}: one diagnostic, one summary:\n{err}");
        let json = sealer(dir.path(), &["validate", "-f", file.to_str().unwrap(), "--json"]);
        let report: Json = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(report["diagnostics"][0]["value"].as_str(), Some(value), "{name}: {report}");
    }
    // A file that is not YAML at all is reported by where its YAML breaks, quoting none of it.
    let ini = write(dir.path(), "settings.ini", "[main]\nkey = value\n[other]\nsecret-ish = yes\n");
    let out = sealer(dir.path(), &["plan", "-f", ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid YAML") && !stderr(&out).contains("secret-ish"), "{}", stderr(&out));
}

#[test]
fn run_checks_its_flags_before_it_pulls_the_image() {
    let dir = tempfile::tempdir().unwrap();
    // `foo:1` is in no local store: a pull would go to a registry (docker.io) before anything else.
    for (flags, named) in [
        (&["-m", "10.0.0.999"][..], "--masters `10.0.0.999`: `10.0.0.999` is not an IP address"),
        (&["-m", "10.0.0.2", "-n", "10.0.0.3-10.0.0.1"][..], "range `10.0.0.3-10.0.0.1` ends before it starts"),
        (&["-m", "10.0.0.2", "-n", "10.0.0.2"][..], "10.0.0.2 is given twice"),
        (&["-m", "10.0.0.2", "-u", "root;reboot"][..], "field `spec.ssh.user`: not a valid user name"),
    ] {
        let mut args = vec!["run", "foo:1"];
        args.extend_from_slice(flags);
        let out = sealer(dir.path(), &args);
        let all = stdout(&out) + &stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {all}");
        assert!(stderr(&out).contains(named), "{flags:?}: {all}");
        for pull in ["pull", "http", "docker.io", "registry"] {
            assert!(!all.contains(pull), "{flags:?}: `{pull}`: {all}");
        }
        assert!(!dir.path().join(".sealer").exists(), "{flags:?}: wrote a Clusterfile or a state");
    }
}

#[test]
fn run_with_masters_and_no_nodes_plans_a_single_node_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let image = "stub/kubernetes:v1.22.15";
    build_stub_image(&dir.path().join(".sealer-home"), image);
    // The guides' single-node form, and an empty -n as a script passes an unset variable.
    for nodes in [&[][..], &["-n", ""][..]] {
        let mut args = vec!["run", image, "-m", "10.0.0.2", "-p", "Run-Pass-1"];
        args.extend_from_slice(nodes);
        let out = sealer_with_stdin(dir.path(), &args, "no\n");
        let (plan, err) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{nodes:?}: {plan}{err}");
        assert!(err.contains("apply cancelled") && !err.contains("--nodes"), "{nodes:?}: {err}");
        let hosts: Vec<&str> = plan.lines().filter(|l| l.trim_start().starts_with("# host.")).collect();
        assert_eq!(hosts, ["  # host.10.0.0.2 will be created"], "{nodes:?}: {plan}");
        assert!(plan.contains("kubeadm-init.10.0.0.2") && !plan.contains("kubeadm-join"), "{nodes:?}: {plan}");
        // Nothing was applied: the Clusterfile is put back as it was (there was none).
        assert!(!dir.path().join(".sealer/my-cluster/Clusterfile").exists(), "{nodes:?}");
    }
}

#[test]
fn a_pull_error_names_its_network_cause_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = sealer(dir.path(), &["pull", "127.0.0.1:1/sim/x:1"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(said.contains("connection refused: is the registry running at that address and port?"), "{said}");
}

#[test]
fn the_manual_page_is_generated_from_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let page = sealer_tests::ok(&sealer(dir.path(), &["man"]));
    assert!(page.starts_with(".ie") && page.contains(".TH sealer 1"), "{page}");
    for command in ["apply", "plan", "run", "reconcile", "completion"] {
        assert!(page.contains(&format!("sealer\\-{command}")) || page.contains(command), "{command}");
    }
}

/// A first plan of the quickstart's shape (2 masters and a node of the simulated image) fits one screen:
/// at most 60 lines, also once a 120-column terminal wraps them; `--verbose` shows everything.
#[test]
fn a_three_host_first_plan_fits_one_screen() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".sealer-home");
    sealer_tests::build_simulated_image(&home, dir.path());
    let clusterfile = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: quickstart\nspec:\n  image: {}\n  ssh:\n    pk: /k\n  \
         hosts:\n  - ips: [10.251.9.11, 10.251.9.12]\n    roles: [master]\n  - ips: [10.251.9.13]\n    roles: [node]\n",
        sealer_tests::SIMULATED_IMAGE
    );
    let file = write(dir.path(), "Clusterfile", &clusterfile);
    let out = sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--refresh=false"]);
    let plan = stdout(&out);
    assert!(plan.contains("Plan: 16 to add"), "{plan}\n{}", stderr(&out));
    let wrapped: usize = plan.lines().map(|l| l.chars().count().div_ceil(120).max(1)).sum();
    assert!(
        plan.lines().count() <= 60 && wrapped <= 60,
        "{} lines, {wrapped} at 120 columns:\n{plan}",
        plan.lines().count()
    );
    assert!(plan.contains("config = (") && !plan.contains("KubeletConfiguration"), "{plan}");
    let verbose = stdout(&sealer(dir.path(), &["plan", "-f", file.to_str().unwrap(), "--refresh=false", "--verbose"]));
    assert!(verbose.contains("kind: KubeletConfiguration") && verbose.lines().count() > 300, "{verbose}");
}

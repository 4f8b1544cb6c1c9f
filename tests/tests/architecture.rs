//! The crate boundaries of ARCHITECTURE.md, checked from `cargo metadata`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(sealer_tests::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal dependencies; dev and build ones do not ship
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn engine_names_no_io_crate() {
    let deps = dependencies();
    let engine = &deps["sealer-engine"];
    for forbidden in [
        "russh",
        "rusqlite",
        "oci-client",
        "clap",
        "indicatif",
        "similar",
        "sealer-providers",
        "sealer-state",
        "sealer-cli",
        "anyhow",
    ] {
        assert!(!engine.contains(forbidden), "sealer-engine depends on {forbidden}");
    }
}

#[test]
fn providers_and_state_do_not_know_each_other() {
    let deps = dependencies();
    assert!(!deps["sealer-providers"].contains("sealer-state"));
    assert!(!deps["sealer-state"].contains("sealer-providers"));
    for lib in ["sealer-providers", "sealer-state"] {
        assert!(deps[lib].contains("sealer-engine"), "{lib} must build on the engine");
        for forbidden in ["clap", "indicatif", "anyhow", "sealer-cli"] {
            assert!(!deps[lib].contains(forbidden), "{lib} depends on {forbidden}");
        }
    }
}

#[test]
fn only_the_cli_wires_everything_and_nothing_depends_on_it() {
    let deps = dependencies();
    for wired in ["sealer-engine", "sealer-providers", "sealer-state"] {
        assert!(deps["sealer-cli"].contains(wired), "sealer-cli must depend on {wired}");
    }
    for (name, d) in &deps {
        assert!(!d.contains("sealer-cli"), "{name} depends on the CLI");
        assert!(!d.contains("sealer-tests"), "{name} depends on the tests");
    }
}

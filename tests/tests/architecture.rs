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

/// The error types of every `Result<…>` written in `text`: its last generic argument, at the top level.
fn result_errors(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("Result<") {
        let (mut depth, mut last_comma, mut end) = (0usize, None, None);
        for (i, c) in text[start + "Result".len()..].char_indices() {
            match c {
                '<' => depth += 1,
                '>' if depth == 1 => {
                    end = Some(i);
                    break;
                }
                '>' => depth -= 1,
                ',' if depth == 1 => last_comma = Some(i),
                _ => {}
            }
        }
        if let (Some(comma), Some(end)) = (last_comma, end) {
            let base = start + "Result".len();
            found.push(text[base + comma + 1..base + end].trim().to_string());
        }
    }
    found
}

/// Issue 26: errors are typed. No library, binary or build script of the workspace returns `Result<_,
/// String>` outside its tests (a test module closes a file, from its `#[cfg(test)]`).
#[test]
fn no_result_has_a_string_for_its_error() {
    assert_eq!(result_errors("fn f() -> Result<Vec<(u8, String)>, String> {}"), ["String"]);
    assert_eq!(result_errors("Result<(), E> and std::result::Result<u8, Box<dyn Error>>"), ["E", "Box<dyn Error>"]);
    let root = sealer_tests::repo_root();
    let mut offenders = Vec::new();
    let mut files = Vec::new();
    for dir in ["engine", "providers", "cli", "state", "relay"] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() && name != "benches" && name != "tests" {
                    stack.push(path);
                } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                    files.push(path);
                }
            }
        }
    }
    assert!(files.len() > 50, "the walk found {} files", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        // The code before the file's test module (an inline `#[cfg(test)] mod NAME {`); a `#[cfg(test)]`
        // on anything else (`mod fake;`) does not end it.
        let end = text
            .match_indices("#[cfg(test)]")
            .map(|(i, m)| i + m.len())
            .find(|&i| {
                let next = text[i..].trim_start().lines().next().unwrap_or_default();
                next.starts_with("mod ") && next.ends_with('{')
            })
            .unwrap_or(text.len());
        let code = &text[..end];
        for error in result_errors(code) {
            if error == "String" || error == "std::string::String" {
                offenders.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "Result<_, String> in {offenders:?}");
}

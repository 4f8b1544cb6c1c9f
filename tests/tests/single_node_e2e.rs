//! The seeds' single-node command lines, as written: `sealer run IMAGE --masters IP --passwd PW` and
//! `sealer run IMAGE -m IP -p PW` (no `-n`), each answered `yes` at the confirmation, on a fresh host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use sealer_tests::{stderr, stdout, testbed_available, Testbed, SIMULATED_IMAGE, TESTBED_ROOT_PASSWORD};
use serde_json::Value as Json;

const KUBECTL: &str = "KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/my-cluster/rootfs/bin/kubectl";

/// `sealer ARGS` in `work` with `home` as `SEALER_HOME`, answering `yes` to the confirmation.
fn run(home: &Path, work: &Path, args: &[&str]) -> Output {
    sealer_tests::sealer_at_with_stdin(home, work, args, "yes\n")
}

#[test]
fn the_seeds_single_node_command_lines_install_a_one_host_cluster() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(2);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    sealer_tests::build_simulated_image(&home, dir.path());
    let spellings: [&[&str]; 2] = [&["--masters", "--passwd"], &["-m", "-p"]];
    for (i, flags) in spellings.iter().enumerate() {
        let work = dir.path().join(format!("work-{i}"));
        std::fs::create_dir_all(&work).unwrap();
        let ip = tb.ips[i].to_string();
        let args = ["run", SIMULATED_IMAGE, flags[0], &ip, flags[1], TESTBED_ROOT_PASSWORD];
        let out = run(&home, &work, &args);
        assert!(out.status.success(), "sealer {args:?}:\n{}\n{}", stdout(&out), stderr(&out));
        assert!(!stdout(&out).contains(TESTBED_ROOT_PASSWORD) && !stderr(&out).contains(TESTBED_ROOT_PASSWORD));
        // One master, no node: the Clusterfile run wrote, and the cluster.
        let path = work.join(".sealer/my-cluster/Clusterfile");
        let written = std::fs::read_to_string(&path).unwrap();
        let mode =
            |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700), "it holds the password");
        assert!(written.contains(&format!("- {ip}\n")) && written.contains("- master\n"), "{written}");
        assert_eq!(written.matches("- ips:").count(), 1, "one group of hosts: {written}");
        assert!(!written.contains("- node"), "no node group: {written}");
        let nodes = tb.exec(i, &format!("{KUBECTL} get nodes -o json"));
        assert!(nodes.status.success(), "{}", stderr(&nodes));
        let nodes: Json = serde_json::from_slice(&nodes.stdout).unwrap();
        let items = nodes["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{nodes}");
        let ready = items[0]["status"]["conditions"].as_array().unwrap();
        assert!(ready.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"), "{nodes}");
        // Run again as written: nothing to do.
        let again = run(&home, &work, &args);
        assert!(again.status.success(), "{}", stderr(&again));
        assert!(stdout(&again).contains("No changes"), "{}", stdout(&again));
    }
}

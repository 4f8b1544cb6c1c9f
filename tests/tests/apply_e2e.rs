//! `sealer apply` end to end on real sshd hosts with the simulated Kubernetes image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sealer_tests::{ok, repo_root, sealer_bin, stderr, stdout, testbed_available, Testbed, TESTBED_ROOT_PASSWORD};
use serde_json::Value as Json;

const IMAGE: &str = "sim/kubernetes:v1.29.14";
const KUBECTL: &str = "KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/e2e/rootfs/bin/kubectl";

/// A working directory with its own SEALER_HOME holding the simulated image, and a testbed.
struct Site {
    dir: tempfile::TempDir,
    tb: Testbed,
}

impl Site {
    /// Five hosts with the standard Clusterfile written, or `None` where real hosts cannot be made.
    fn ready() -> Option<Site> {
        if !testbed_available() {
            return None;
        }
        let site = Site::new(5);
        site.write_clusterfile(&site.clusterfile(&site.default_labels()));
        Some(site)
    }

    /// `sealer apply --auto-approve` in the background, for tests that act while it runs.
    fn spawn_apply(&self) -> std::process::Child {
        Command::new(sealer_bin())
            .args(["apply", "--auto-approve"])
            .current_dir(self.path())
            .env("SEALER_HOME", self.path().join("home"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn new(hosts: usize) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let site = Site { tb: Testbed::up(hosts), dir };
        let out = site
            .sealer(&["build", "-t", IMAGE, repo_root().join("examples/images/simulated-k8s").to_str().unwrap()], "");
        assert!(out.status.success(), "build: {}", stderr(&out));
        site
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sealer(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(sealer_bin())
            .args(args)
            .current_dir(self.path())
            .env("SEALER_HOME", self.path().join("home"))
            .env("NO_COLOR", "1")
            .env_remove("SEALER_STATE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ip(&self, i: usize) -> String {
        self.tb.ips[i].to_string()
    }

    /// 3 masters (key auth) and the rest nodes (password auth), with hostname, label, taint and shell
    /// plugins.
    fn clusterfile(&self, labels: &str) -> String {
        let ips: Vec<String> = (0..self.tb.ips.len()).map(|i| self.ip(i)).collect();
        let names: String = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("    {ip} {}-{i}\n", if i < 3 { "master" } else { "node" }))
            .collect();
        format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: e2e\nspec:\n  image: {IMAGE}\n  ssh:\n    pk: {key}\n  \
             env: [GREETING=hello]\n  hosts:\n    - ips: [{masters}]\n      roles: [master]\n    - ips: [{nodes}]\n      roles: [node]\n      \
             ssh:\n        passwd: {TESTBED_ROOT_PASSWORD}\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: names\nspec:\n  type: HOSTNAME\n  action: PreInit\n  data: |\n{names}---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: labels\nspec:\n  type: LABEL\n  action: PostInstall\n  data: |\n{labels}---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: taints\nspec:\n  type: TAINT\n  action: PostInstall\n  data: |\n    {n1} dedicated=db:NoSchedule\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: greet\nspec:\n  type: SHELL\n  action: PreInit\n  on: node\n  data: |\n    echo \"$GREETING from $(hostname)\" > /root/greeting\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: ready\nspec:\n  type: CLUSTERCHECK\n  action: PreGuest\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: context\nspec:\n  type: record-context\n  action: PostJoin\n  on: {n1}\n  data: some data\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Config\nmetadata:\n  name: replicas\nspec:\n  path: manifests/hello.yaml\n  strategy: merge\n  data: |\n    data:\n      replicas: \"3\"\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Config\nmetadata:\n  name: app-json\nspec:\n  path: etc/app.json\n  process: toJson\n  data: |\n    name: demo\n    port: 8080\n",
            key = self.tb.key.display(),
            masters = ips[..3].join(", "),
            nodes = ips[3..].join(", "),
            n1 = ips[4],
        )
    }

    fn default_labels(&self) -> String {
        format!("    {} disk=ssd,zone=a\n    {} disk=hdd\n", self.ip(3), self.ip(4))
    }

    fn write_clusterfile(&self, text: &str) -> PathBuf {
        let p = self.path().join("Clusterfile");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn kubectl_nodes(&self) -> Vec<Json> {
        let out = self.tb.exec(0, &format!("{KUBECTL} get nodes -o json"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Json = serde_json::from_slice(&out.stdout).unwrap();
        v["items"].as_array().unwrap().clone()
    }

    /// Addresses the next apply would change.
    fn pending(&self) -> Vec<String> {
        let plan: Json = serde_json::from_slice(&self.sealer(&["plan", "--json"], "").stdout).unwrap();
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] != "no-op")
            .map(|c| c["address"].as_str().unwrap().to_string())
            .collect()
    }

    fn log_dirs(&self) -> usize {
        std::fs::read_dir(self.path().join(".sealer/logs")).map(|d| d.count()).unwrap_or(0)
    }

    fn everything_written(&self) -> String {
        let mut all = Vec::new();
        let mut stack = vec![self.path().join(".sealer")];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                all.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

#[test]
fn fresh_apply_then_no_op_then_drift_restored() {
    let Some(site) = Site::ready() else { return };
    let first = site.sealer(&["apply", "--auto-approve"], "");
    let first_out = ok(&first);
    assert!(first_out.contains("Apply complete!"), "{first_out}");

    for i in 0..5 {
        let name = String::from_utf8(site.tb.exec(i, "hostname").stdout).unwrap();
        assert_eq!(name.trim(), if i < 3 { format!("master-{i}") } else { format!("node-{i}") });
    }
    let context: Json =
        serde_json::from_slice(&site.tb.exec(4, "cat /var/lib/sealer-plugins/record-context.json").stdout).unwrap();
    assert_eq!(
        (context["phase"].as_str(), context["data"].as_str()),
        (Some("PostJoin"), Some("some data")),
        "{context}"
    );
    assert_eq!(context["env"]["GREETING"], "hello");
    // Config documents: merged into a file of the image, or converted, on every host.
    let merged =
        String::from_utf8(site.tb.exec(2, "cat /var/lib/sealer/e2e/rootfs/manifests/hello.yaml").stdout).unwrap();
    assert!(merged.contains("replicas: '3'") && merged.contains("greeting: hello"), "{merged}");
    let app: Json =
        serde_json::from_slice(&site.tb.exec(4, "cat /var/lib/sealer/e2e/rootfs/etc/app.json").stdout).unwrap();
    assert_eq!((app["name"].as_str(), app["port"].as_i64()), (Some("demo"), Some(8080)));
    let greeting = String::from_utf8(site.tb.exec(3, "cat /root/greeting").stdout).unwrap();
    assert_eq!(greeting.trim(), "hello from node-3", "env reaches shell plugins, after the hostname was set");
    let nodes = site.kubectl_nodes();
    assert_eq!(nodes.len(), 5);
    for n in &nodes {
        assert_eq!(n["status"]["conditions"][0]["status"], "True", "{n}");
    }
    let node = |name: &str| nodes.iter().find(|n| n["metadata"]["name"] == name).unwrap().clone();
    assert_eq!(node("node-3")["metadata"]["labels"]["disk"], "ssd");
    assert_eq!(node("node-3")["metadata"]["labels"]["zone"], "a");
    assert_eq!(node("node-4")["spec"]["taints"][0]["key"], "dedicated");
    assert!(node("master-1")["metadata"]["labels"].get("node-role.kubernetes.io/control-plane").is_some());

    // The image's etc/kubeadm.yml is a layer of the merged config: it reached the control plane.
    let apiserver =
        String::from_utf8(site.tb.exec(0, "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout).unwrap();
    assert!(apiserver.contains("--default-not-ready-toleration-seconds=300"), "{apiserver}");
    // The image's registry (the real docker-registry) runs on the first master, reachable as sea.hub.
    let v2 = site
        .tb
        .exec(3, "bash -c 'exec 3<>/dev/tcp/sea.hub/5000; printf \"GET /v2/ HTTP/1.0\\r\\n\\r\\n\" >&3; head -1 <&3'");
    assert!(String::from_utf8_lossy(&v2.stdout).contains("200 OK"), "{}", String::from_utf8_lossy(&v2.stdout));
    let plan = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(plan.status.code(), Some(0), "{}{}", stdout(&plan), stderr(&plan));
    let logs_before = site.log_dirs();
    let again = ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert!(again.contains("No changes."), "{again}");
    assert_eq!(site.log_dirs(), logs_before, "a second apply ran commands on the hosts");

    // Drift by hand: one hostname, one label.
    assert!(site.tb.exec(1, "hostname drifted").status.success());
    let unlabel = site.tb.exec(0, &format!("{KUBECTL} label node node-3 zone-"));
    assert!(unlabel.status.success());
    let drift = site.sealer(&["plan", "--detailed-exitcode", "--json"], "");
    assert_eq!(drift.status.code(), Some(2), "{}", stderr(&drift));
    let plan: Json = serde_json::from_slice(&drift.stdout).unwrap();
    let changed: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op")
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(changed, [format!("hostname.{}", site.ip(1)), format!("label.{}", site.ip(3))]);
    // --refresh-only records what the hosts hold, and changes nothing on them.
    let seen = site.sealer(&["plan", "--refresh-only", "--detailed-exitcode"], "");
    assert_eq!(seen.status.code(), Some(2), "{}", stderr(&seen));
    assert!(stdout(&seen).contains("~ name = \"master-1\" -> \"drifted\""), "{}", stdout(&seen));
    ok(&site.sealer(&["apply", "--refresh-only", "--auto-approve"], ""));
    let recorded = ok(&site.sealer(&["state", "show", &format!("hostname.{}", site.ip(1))], ""));
    assert!(recorded.contains("\"drifted\""), "{recorded}");
    let copy = site.tb.exec(0, &format!("{KUBECTL} get configmap sealer-state -n kube-system -o json"));
    assert!(String::from_utf8_lossy(&copy.stdout).contains("drifted"), "the cluster's copy follows a refresh too");
    assert_eq!(String::from_utf8(site.tb.exec(1, "hostname").stdout).unwrap().trim(), "drifted");
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert_eq!(String::from_utf8(site.tb.exec(1, "hostname").stdout).unwrap().trim(), "master-1");
    assert_eq!(
        site.kubectl_nodes().iter().find(|n| n["metadata"]["name"] == "node-3").unwrap()["metadata"]["labels"]["zone"],
        "a"
    );
    let settled = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(settled.status.code(), Some(0), "{}", stdout(&settled));

    // The node password reaches no output, log or state.
    let everything = [first_out, again, site.everything_written()].concat();
    assert!(!everything.contains(TESTBED_ROOT_PASSWORD));

    // The workstation loses `.sealer/`: the copy every apply keeps in the cluster rebuilds it exactly.
    let copy = site.tb.exec(0, &format!("{KUBECTL} get configmap sealer-state -n kube-system -o json"));
    let copy = String::from_utf8(copy.stdout).unwrap();
    assert!(copy.contains("hostname.") && !copy.contains(TESTBED_ROOT_PASSWORD), "{copy}");
    let before = sealer_state::SqliteStore::open_read_only(&site.path().join(".sealer/state.db")).unwrap().unwrap();
    // Sealed ssh passwords stay on the workstation: the cluster's copy has them as (sensitive).
    let before = sealer_engine::StateStore::load(&before, "e2e").unwrap().unwrap().without_sealed_secrets();
    assert!(before
        .resources
        .values()
        .any(|r| r.attributes.get("ssh_password") == Some(&sealer_engine::Value::Sensitive)));
    std::fs::remove_dir_all(site.path().join(".sealer")).unwrap();
    let lost = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(lost.status.code(), Some(2), "without its state every host looks new");
    let not_master = site.sealer(&["state", "pull", "--from-cluster", &site.ip(3)], "");
    assert!(stderr(&not_master).contains("is not a master"), "{}", stderr(&not_master));
    let pulled = ok(&site.sealer(&["state", "pull", "--from-cluster", &site.ip(1)], ""));
    assert!(pulled.contains(&format!("serial {}", before.serial)), "{pulled}");
    let after = sealer_state::SqliteStore::open_read_only(&site.path().join(".sealer/state.db")).unwrap().unwrap();
    assert_eq!(sealer_engine::StateStore::load(&after, "e2e").unwrap().unwrap(), before);
    let recovered = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(recovered.status.code(), Some(0), "{}{}", stdout(&recovered), stderr(&recovered));
    let twice = site.sealer(&["state", "pull", "--from-cluster", &site.ip(0)], "");
    assert!(stderr(&twice).contains("already holds cluster `e2e`"), "{}", stderr(&twice));
}

#[test]
fn unreachable_host_fails_its_branch_only_and_the_next_apply_does_the_rest() {
    let Some(site) = Site::ready() else { return };
    // PreInit plugins on a node hold back `kubeadm init` for every host, so here the node plugin runs at
    // PreJoin: the unreachable node then blocks only its own branch.
    let text =
        site.clusterfile(&site.default_labels()).replace("action: PreInit\n  on: node", "action: PreJoin\n  on: node");
    site.write_clusterfile(&text);
    site.tb.stop_sshd(4);
    let failed = site.sealer(&["apply", "--auto-approve"], "");
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(err.contains(&format!("cannot reach `{}:22`", site.ip(4))), "{err}");
    let list = ok(&site.sealer(&["state", "list"], ""));
    assert!(list.contains(&format!("kubeadm-join.{}", site.ip(3))), "the other hosts' work is recorded:\n{list}");
    // The host was never reached, but its create had started: recorded tainted, so it is redone whole.
    let host = ok(&site.sealer(&["state", "show", &format!("host.{}", site.ip(4))], ""));
    assert!(host.contains("(tainted)"), "{host}");
    assert!(!list.contains(&format!("hostname.{}", site.ip(4))), "{list}");
    assert_eq!(site.kubectl_nodes().len(), 4);

    site.tb.start_sshd(4);
    let todo = site.pending();
    assert!(
        todo.iter().all(|a| a.ends_with(&site.ip(4))
            || a.starts_with("guest.")
            || a.starts_with("hooks.")
            || a.starts_with("plugin.ready")),
        "{todo:?}"
    );
    assert!(todo.contains(&format!("kubeadm-join.{}", site.ip(4))));
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert_eq!(site.kubectl_nodes().len(), 5);
}

#[test]
fn locks_refuse_a_second_apply_and_stale_saved_plans_are_refused() {
    let Some(site) = Site::ready() else { return };
    // Two applies at once: exactly one runs, the other is refused naming the holder.
    let (a, b) = (site.spawn_apply(), site.spawn_apply());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)) && codes.contains(&Some(1)), "{codes:?}\n{}\n{}", stderr(&a), stderr(&b));
    let refused = if a.status.success() { stderr(&b) } else { stderr(&a) };
    assert!(refused.contains("state is locked by") && refused.contains("sealer apply"), "{refused}");
    ok(&site.sealer(&["plan", "--out", "before.plan"], ""));

    // Another apply holds the lock (taken as a crashed `sealer apply` would have left it).
    let state = site.path().join(".sealer/state.db");
    let mut store = sealer_state::SqliteStore::open(&state).unwrap();
    let lock = sealer_engine::StateStore::lock(&mut store, "e2e", "other@ws9", 4242, "sealer apply").unwrap();
    let refused = site.sealer(&["apply", "--auto-approve"], "");
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(err.contains("other@ws9") && err.contains("pid 4242") && err.contains(&lock.id), "{err}");
    ok(&site.sealer(&["force-unlock", &lock.id, "--force"], ""));

    // The state moves on (a label changes), so the plan saved before is stale.
    site.write_clusterfile(&site.clusterfile(&format!("    {} disk=nvme\n", site.ip(3))));
    let events = ok(&site.sealer(&["apply", "--auto-approve", "--json"], ""));
    let events: Vec<Json> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let label = format!("label.{}", site.ip(3));
    assert!(events.iter().any(|e| e["type"] == "apply_start" && e["address"] == label.as_str()), "{events:?}");
    assert!(events
        .iter()
        .any(|e| e["type"] == "apply_complete" && e["address"] == label.as_str() && e["action"] == "update"));
    let labels =
        &site.kubectl_nodes().into_iter().find(|n| n["metadata"]["name"] == "node-3").unwrap()["metadata"]["labels"];
    assert_eq!(labels["disk"], "nvme");
    assert!(labels.get("zone").is_none(), "labels the Clusterfile no longer declares are removed: {labels}");
    let stale = site.sealer(&["apply", "before.plan"], "");
    assert_eq!(stale.status.code(), Some(1));
    assert!(stderr(&stale).contains("saved plan is stale"), "{}", stderr(&stale));
}

#[test]
fn a_killed_apply_leaves_readable_state_its_lock_is_replaced_then_changed_host_keys_are_refused() {
    let Some(site) = Site::ready() else { return };
    let mut child = site.spawn_apply();
    let state = site.path().join(".sealer/state.db");
    let started = std::time::Instant::now();
    loop {
        let recorded = sealer_state::SqliteStore::open_read_only(&state)
            .ok()
            .flatten()
            .and_then(|s| sealer_engine::StateStore::load(&s, "e2e").ok().flatten())
            .map_or(0, |s| s.resources.len());
        if recorded >= 3 {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "the apply recorded nothing");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no clean-up at all
    child.wait().unwrap();

    let list = ok(&site.sealer(&["state", "list"], ""));
    assert!(list.lines().count() >= 3, "{list}");
    // The killed apply's lock is of a process of this machine that is gone: the next apply replaces it,
    // says so, and finishes the work.
    let finished = site.sealer(&["apply", "--auto-approve"], "");
    assert!(stdout(&finished).contains("Apply complete!"), "{}{}", stdout(&finished), stderr(&finished));
    let said = stderr(&finished);
    assert!(
        said.contains("replaced the state lock of") && said.contains("that process is no longer running"),
        "{said}"
    );
    assert_eq!(site.kubectl_nodes().len(), 5);
    let settled = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(settled.status.code(), Some(0), "{}", stdout(&settled));

    // Host 2 is reinstalled with a new host key: refused, naming the host and both fingerprints.
    let old = site.tb.host_key(1);
    let rekey = site.tb.exec(
        1,
        "rm -f /etc/ssh/sealer_testbed_host_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/sealer_testbed_host_key \
         && kill $(cat /run/sshd.pid) && sleep 0.2 && /usr/sbin/sshd -f /etc/ssh/sealer_testbed_sshd_config",
    );
    assert!(rekey.status.success(), "{}", String::from_utf8_lossy(&rekey.stderr));
    let new =
        String::from_utf8(site.tb.exec(1, "cut -d' ' -f1,2 /etc/ssh/sealer_testbed_host_key.pub").stdout).unwrap();
    let plan = site.sealer(&["plan"], "");
    assert_eq!(plan.status.code(), Some(1));
    let err = stderr(&plan);
    let fp = |k: &str| sealer_providers::transport::fingerprint(k.trim());
    assert!(err.contains(&format!("the host key of `{}` changed", site.ip(1))), "{err}");
    assert!(err.contains(&fp(&old)) && err.contains(&fp(&new)), "{err}");
}

#[test]
fn scale_down_removes_the_node_and_destroy_leaves_the_hosts_clean() {
    let Some(site) = Site::ready() else { return };
    let hostname = |i: usize| String::from_utf8(site.tb.exec(i, "hostname").stdout).unwrap().trim().to_string();
    let originals: Vec<String> = (0..5).map(hostname).collect();
    // A last etcd snapshot before the cluster is torn down.
    let full = site.clusterfile(&site.default_labels())
        + "---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: last-backup\nspec:\n  \
           type: ETCD\n  action: PreClean\n  data: final-backups\n";
    site.write_clusterfile(&full);
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert_eq!(hostname(0), "master-0");
    let (ip3, ip4) = (site.ip(3), site.ip(4));
    // Refused without --force: two of three masters at once, and the first master.
    let (ip0, ip1, ip2) = (site.ip(0), site.ip(1), site.ip(2));
    let two_masters = full
        .replace(&format!("[{ip0}, {ip1}, {ip2}]"), &format!("[{ip0}]"))
        .replace(&format!("    {ip1} master-1\n"), "")
        .replace(&format!("    {ip2} master-2\n"), "");
    site.write_clusterfile(&two_masters);
    let refused = site.sealer(&["apply", "--auto-approve"], "");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("2 of 3 masters would leave at once"), "{}", stderr(&refused));
    let first_master = full
        .replace(&format!("[{ip0}, {ip1}, {ip2}]"), &format!("[{ip1}, {ip2}]"))
        .replace(&format!("    {ip0} master-0\n"), "");
    site.write_clusterfile(&first_master);
    let refused = site.sealer(&["apply", "--auto-approve"], "");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("removes the first master"), "{}", stderr(&refused));
    assert_eq!(site.kubectl_nodes().len(), 5, "nothing was removed");
    let smaller = full
        .replace(&format!("[{ip3}, {ip4}]"), &format!("[{ip3}]"))
        .replace(&format!("    {ip4} node-4\n"), "")
        .replace(&format!("    {ip4} disk=hdd\n"), "")
        .replace(&format!("    {ip4} dedicated=db:NoSchedule"), &format!("    {ip3} dedicated=db:NoSchedule"))
        .replace(&format!("on: {ip4}"), &format!("on: {ip3}"));
    site.write_clusterfile(&smaller);
    let plan: Json = serde_json::from_slice(&site.sealer(&["plan", "--json"], "").stdout).unwrap();
    let deletes: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert!(deletes.iter().all(|a| a.ends_with(&ip4)), "{deletes:?}");
    assert!(
        deletes.iter().position(|a| a.starts_with("kubeadm-join."))
            < deletes.iter().position(|a| a.starts_with("image."))
    );
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    let names: Vec<String> =
        site.kubectl_nodes().iter().map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(!names.contains(&"node-4".to_string()));
    let leftovers =
        site.tb.exec(4, "ls -d /var/lib/sealer /etc/kubernetes 2>/dev/null; pgrep -f 'bin/[k]ubelet'; true");
    assert_eq!(
        String::from_utf8_lossy(&leftovers.stdout).trim(),
        "",
        "the removed host keeps sealer files or a kubelet"
    );
    let settled = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(settled.status.code(), Some(0), "{}", stdout(&settled));

    let destroyed = ok(&site.sealer(&["destroy", "--auto-approve", "--restore-hostname"], ""));
    assert!(destroyed.contains("destroyed."), "{destroyed}");
    let snapshots: Vec<_> = std::fs::read_dir(site.path().join("final-backups")).unwrap().flatten().collect();
    assert_eq!(snapshots.len(), 1, "the PreClean ETCD plugin left its snapshot");
    assert!(std::fs::metadata(snapshots[0].path()).unwrap().len() > 0);
    for (i, original) in originals.iter().enumerate().take(4) {
        assert_eq!(&hostname(i), original, "host {i} got its hostname back");
        let etc = String::from_utf8(site.tb.exec(i, "cat /etc/hostname").stdout).unwrap();
        assert_eq!(etc.trim(), original);
        let left = site.tb.exec(i, "ls -d /var/lib/sealer /etc/kubernetes 2>/dev/null; ls -A /var/lib/etcd 2>/dev/null; grep -E ' (sea.hub|apiserver.cluster.local)$' /etc/hosts; pgrep -f 'bin/([k]ubelet|[s]im-apiserver|[e]tcd|[r]egistry)'; true");
        assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "", "host {i} is not clean");
    }
    assert_eq!(ok(&site.sealer(&["state", "list"], "")).trim(), "", "no resources are left in the state");
    let history = sealer_engine::StateStore::history(
        &sealer_state::SqliteStore::open_read_only(&site.path().join(".sealer/state.db")).unwrap().unwrap(),
        "e2e",
    )
    .unwrap();
    assert_eq!(history.len(), 3, "the history of applies is kept");
}

#[test]
fn sshd_killed_in_the_middle_of_an_apply_fails_that_host_only() {
    let Some(site) = Site::ready() else { return };
    let ip4 = site.ip(4);
    let text = site.clusterfile(&site.default_labels()).replace("action: PreInit\n  on: node", "action: PreJoin\n  on: node")
        + &format!(
            "---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: slow\nspec:\n  type: SHELL\n  \
             action: PreJoin\n  on: {ip4}\n  data: touch /run/slow-started; sleep 5\n"
        );
    site.write_clusterfile(&text);
    let child = site.spawn_apply();
    let started = std::time::Instant::now();
    while !site.tb.exec(4, "test -e /run/slow-started").status.success() {
        assert!(started.elapsed().as_secs() < 90, "the slow step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(site.tb.exec(4, "pkill -KILL sshd").status.success(), "sshd and its sessions are gone");
    let failed = child.wait_with_output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(err.contains(&format!("on `{ip4}`")) || err.contains(&format!("to `{ip4}`")), "{err}");
    let list = ok(&site.sealer(&["state", "list"], ""));
    assert!(list.contains(&format!("kubeadm-join.{}", site.ip(3))), "{list}");
    assert!(!list.contains(&format!("kubeadm-join.{ip4}")), "{list}");
    // The step that was cut off half-way is tainted: replaced by the next apply, never assumed done.
    let slow = format!("plugin.slow.PreJoin.{ip4}");
    assert!(ok(&site.sealer(&["state", "show", &slow], "")).contains("(tainted)"));

    site.tb.start_sshd(4);
    let plan: Json = serde_json::from_slice(&site.sealer(&["plan", "--json"], "").stdout).unwrap();
    let replaced = plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == slow.as_str()).unwrap();
    assert_eq!(
        (replaced["action"].as_str(), replaced["reason"].as_str()),
        (Some("replace"), Some("replace_because_tainted"))
    );
    let todo = site.pending();
    assert!(
        todo.iter().all(|a| a.ends_with(&ip4)
            || a.starts_with("guest.")
            || a.starts_with("hooks.")
            || a.starts_with("plugin.ready")),
        "{todo:?}"
    );
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert_eq!(site.kubectl_nodes().len(), 5);
}

#[test]
fn two_working_copies_sharing_a_postgres_state() {
    let Some(db) = sealer_tests::postgres_database() else { return };
    let Some(site) = Site::ready() else { return };
    let second = tempfile::tempdir().unwrap();
    std::fs::copy(site.path().join("Clusterfile"), second.path().join("Clusterfile")).unwrap();
    let apply_in = |dir: &Path| {
        Command::new(sealer_bin())
            .args(["--state", &db.url, "apply", "--auto-approve", "--no-progress"])
            .current_dir(dir)
            .env("SEALER_HOME", site.path().join("home"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (apply_in(site.path()), apply_in(second.path()));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)) && codes.contains(&Some(1)), "{codes:?}\n{}\n{}", stderr(&a), stderr(&b));
    let refused = if a.status.success() { stderr(&b) } else { stderr(&a) };
    assert!(
        refused.contains("state is locked by") && refused.contains("--state postgres://postgres:***@"),
        "{refused}"
    );
    for out in [&a, &b] {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(!all.contains(sealer_tests::POSTGRES_PASSWORD), "{all}");
    }
    assert_eq!(site.kubectl_nodes().len(), 5);
    // Whichever copy applied, both see the same state: nothing left to do from either.
    for dir in [site.path(), second.path()] {
        let plan = Command::new(sealer_bin())
            .args(["--state", &db.url, "plan", "--detailed-exitcode"])
            .current_dir(dir)
            .env("SEALER_HOME", site.path().join("home"))
            .output()
            .unwrap();
        assert_eq!(plan.status.code(), Some(0), "{}\n{}", stdout(&plan), stderr(&plan));
    }
    assert!(!site.path().join(".sealer/state.db").exists() && !second.path().join(".sealer/state.db").exists());
}

/// A Clusterfile of `masters` and `nodes` (indices into the testbed): the cluster logs in with the key;
/// hosts 4 and 5 form a group of their own that logs in with a password of its own.
fn scaled_clusterfile(site: &Site, masters: &[usize], nodes: &[usize], extra_args: &str) -> String {
    let list = |ix: &[usize]| ix.iter().map(|&i| site.ip(i)).collect::<Vec<_>>().join(", ");
    let (keyed, own_password): (Vec<usize>, Vec<usize>) = nodes.iter().partition(|&&i| i < 4);
    let mut text = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: e2e\nspec:\n  image: {IMAGE}\n  ssh:\n    pk: {key}\n  \
         hosts:\n    - ips: [{masters}]\n      roles: [master]\n",
        key = site.tb.key.display(),
        masters = list(masters),
    );
    if !keyed.is_empty() {
        text += &format!("    - ips: [{}]\n      roles: [node]\n", list(&keyed));
    }
    if !own_password.is_empty() {
        text += &format!(
            "    - ips: [{}]\n      roles: [node]\n      ssh:\n        passwd: {OTHER_PASSWORD}\n",
            list(&own_password)
        );
    }
    text += &format!(
        "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n{extra_args}"
    );
    text +=
        "---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: backup\nspec:\n  type: ETCD\n  \
             action: PostInstall\n  data: backups\n";
    text
}

/// Members of the control plane's real etcd, by name.
fn etcd_members(site: &Site) -> Vec<String> {
    let out = site.tb.exec(
        0,
        "ETCDCTL_API=3 /var/lib/sealer/e2e/rootfs/bin/etcdctl --endpoints http://127.0.0.1:2379 member list -w json",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Json = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// The snapshot restores: `etcdctl snapshot status` reads it, and an etcd started on the restored data
/// (loopback only, a free port, removed afterwards) holds the cluster's nodes.
fn restored_nodes(snapshot: &Path) -> Vec<String> {
    let etcdctl = |args: &[&str]| Command::new("etcdctl").env("ETCDCTL_API", "3").args(args).output().unwrap();
    let status = etcdctl(&["snapshot", "status", snapshot.to_str().unwrap(), "-w", "json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: Json = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["totalKey"].as_u64().unwrap() > 0, "{status}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("restored");
    let restore = etcdctl(&["snapshot", "restore", snapshot.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = format!("http://127.0.0.1:{port}");
    let mut etcd = Command::new("etcd")
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut keys = String::new();
    for _ in 0..100 {
        let got = etcdctl(&["--endpoints", &client, "get", "--prefix", "/registry/minions/", "--keys-only"]);
        if got.status.success() {
            keys = String::from_utf8_lossy(&got.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    let mut names: Vec<String> =
        keys.lines().filter_map(|k| k.strip_prefix("/registry/minions/")).map(str::to_string).collect();
    names.sort();
    names
}

const OTHER_PASSWORD: &str = "Group-only-Pw-4410";

#[test]
fn scale_up_down_node_to_master_and_reconfigure_the_control_plane() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(6);
    // Hosts 4 and 5 accept only their own password: the cluster's key and password do not work there.
    for i in [4, 5] {
        let set =
            site.tb.exec(i, &format!("echo 'root:{OTHER_PASSWORD}' | chpasswd && rm -f /root/.ssh/authorized_keys"));
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    }
    let args = "    audit-log-maxage: \"30\"\n";
    let step = |masters: &[usize], nodes: &[usize], args: &str| {
        site.write_clusterfile(&scaled_clusterfile(&site, masters, nodes, args));
        let out = ok(&site.sealer(&["apply", "--auto-approve", "--no-progress"], ""));
        let settled = site.sealer(&["plan", "--detailed-exitcode"], "");
        assert_eq!(settled.status.code(), Some(0), "{}{}", stdout(&settled), stderr(&settled));
        out
    };
    let node_roles = || -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = site
            .kubectl_nodes()
            .iter()
            .map(|n| {
                let ip = n["status"]["addresses"][0]["address"].as_str().unwrap().to_string();
                (ip, n["metadata"]["labels"].get("node-role.kubernetes.io/control-plane").is_some())
            })
            .collect();
        v.sort();
        v
    };
    let expect = |masters: &[usize], nodes: &[usize]| {
        let mut v: Vec<(String, bool)> =
            masters.iter().map(|&i| (site.ip(i), true)).chain(nodes.iter().map(|&i| (site.ip(i), false))).collect();
        v.sort();
        v
    };
    let latest_logs = || {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(site.path().join(".sealer/logs")).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        dirs.pop().unwrap()
    };

    step(&[0], &[3], args);
    assert_eq!(node_roles(), expect(&[0], &[3]));
    // The ETCD plugin took a real snapshot to the operator's machine, with its checksum.
    let backup =
        ok(&site.sealer(&["state", "show", &format!("plugin.backup.PostInstall.{}", site.ip(0)), "--json"], ""));
    let backup: Json = serde_json::from_str(&backup).unwrap();
    let snapshot = site.path().join(backup["attributes"]["snapshot"].as_str().unwrap());
    let content = std::fs::read(&snapshot).unwrap();
    let digest = Command::new("sha256sum").arg(&snapshot).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&digest.stdout).split_whitespace().next(),
        backup["attributes"]["sha256"].as_str()
    );
    assert_eq!(backup["attributes"]["bytes"].as_u64(), Some(content.len() as u64));
    let mut hostnames: Vec<String> =
        site.kubectl_nodes().iter().map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect();
    hostnames.sort();
    assert_eq!(restored_nodes(&snapshot), hostnames);
    assert_eq!(etcd_members(&site).len(), 1);

    // Scale up to 3 + 3: only the new hosts are worked on.
    step(&[0, 1, 2], &[3, 4, 5], args);
    assert_eq!(node_roles(), expect(&[0, 1, 2], &[3, 4, 5]));
    assert_eq!(etcd_members(&site).len(), 3, "every master is an etcd member");
    // Hosts that stay see nothing of the latest apply; the first master only serves it through the API
    // (kubectl, join tokens, certificate keys).
    let untouched = |stayed: &[usize]| {
        let logs = latest_logs();
        for &i in stayed {
            let log = logs.join(format!("{}.log", site.ip(i)));
            if i != 0 {
                // A node's balancer follows the masters (an added or removed master updates it); nothing
                // else of a host that stays is touched.
                let worked = std::fs::read_to_string(&log).unwrap_or_default();
                for command in worked.lines().filter(|l| l.starts_with("$ ")) {
                    assert!(
                        command.contains("lvscare") || command.contains("10.103.97.2 apiserver.cluster.local"),
                        "host {i} stayed but was worked on: {worked}"
                    );
                }
                continue;
            }
            let first = std::fs::read_to_string(log).unwrap_or_default();
            for command in first.lines().filter(|l| l.starts_with("$ ")) {
                assert!(
                    command.contains("kubectl ")
                        || command.contains("kubeadm token create")
                        || command.contains("upload-certs"),
                    "the first master only serves the cluster's changes: {command}"
                );
            }
        }
    };
    untouched(&[0, 3]);

    // Their password is rotated: the Clusterfile follows, no change is planned, and the state keeps the new
    // one (sealed) for the day they are removed.
    const ROTATED: &str = "Rotated-Group-Pw-7720";
    for i in [4, 5] {
        assert!(site.tb.exec(i, &format!("echo 'root:{ROTATED}' | chpasswd")).status.success());
    }
    site.write_clusterfile(&scaled_clusterfile(&site, &[0, 1, 2], &[3, 4, 5], args).replace(OTHER_PASSWORD, ROTATED));
    let rotated = ok(&site.sealer(&["apply", "--auto-approve", "--no-progress"], ""));
    assert!(
        rotated.contains("Recorded the changed ssh credentials of 2 host(s)") && rotated.contains("No changes."),
        "{rotated}"
    );
    assert!(!site.everything_written().contains(ROTATED));

    // Down to 3 + 1: hosts 4 and 5 are removed with the password recorded (sealed) in the state alone.
    step(&[0, 1, 2], &[3], args);
    assert_eq!(node_roles(), expect(&[0, 1, 2], &[3]));
    untouched(&[0, 1, 2, 3]);
    for i in [4, 5] {
        let left =
            site.tb.exec(i, "ls -d /var/lib/sealer/e2e /etc/kubernetes 2>/dev/null; pgrep -f 'bin/[k]ubelet'; true");
        assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "", "host {i} keeps sealer files or a kubelet");
    }
    assert!(!site.everything_written().contains(OTHER_PASSWORD), "the group password is sealed in the state");
    let key = site.path().join("home/state.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    // Node 3 becomes a master: planned as a replacement, with the reason.
    site.write_clusterfile(&scaled_clusterfile(&site, &[0, 1, 2, 3], &[], args));
    let plan = ok(&site.sealer(&["plan", "--no-color"], ""));
    assert!(plan.contains(&format!("kubeadm-join.{}", site.ip(3))) && plan.contains("must be replaced"), "{plan}");
    assert!(plan.contains("forces replacement"), "{plan}");
    step(&[0, 1, 2, 3], &[], args);
    assert_eq!(node_roles(), expect(&[0, 1, 2, 3], &[]));
    untouched(&[0, 1, 2]);

    // A changed apiserver flag and a new certSAN: a diff of the merged configuration, then every master's
    // control plane and serving certificate.
    let changed = "    audit-log-maxage: \"7\"\n  certSANs:\n  - api.e2e.example\n";
    site.write_clusterfile(&scaled_clusterfile(&site, &[0, 1, 2, 3], &[], changed));
    let plan = ok(&site.sealer(&["plan", "--no-color"], ""));
    assert!(plan.contains("-     audit-log-maxage: '30'") && plan.contains("+     audit-log-maxage: '7'"), "{plan}");
    assert!(plan.contains("+   - api.e2e.example"), "{plan}");
    step(&[0, 1, 2, 3], &[], changed);
    for i in 0..4 {
        let manifest =
            String::from_utf8(site.tb.exec(i, "cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout).unwrap();
        assert!(manifest.contains("--audit-log-maxage=7"), "master {i}: {manifest}");
        assert!(manifest.contains(&format!("--advertise-address={}", site.ip(i))), "master {i}: {manifest}");
        // What the member's API serves (it reads a regenerated certificate again).
        let served = format!(
            "echo | openssl s_client -connect {}:6443 2>/dev/null | openssl x509 -noout -ext subjectAltName",
            site.ip(i)
        );
        let cert = String::from_utf8(site.tb.exec(i, &served).stdout).unwrap();
        assert!(
            cert.contains("DNS:api.e2e.example") && cert.contains(&format!("IP Address:{}", site.ip(i))),
            "master {i}: {cert}"
        );
    }
    assert_eq!(etcd_members(&site).len(), 4);

    // Removing a master (one of four) removes its etcd member too.
    step(&[0, 1, 3], &[], changed);
    assert_eq!(node_roles(), expect(&[0, 1, 3], &[]));
    assert_eq!(etcd_members(&site).len(), 3);
    let left = site.tb.exec(
        2,
        "ls -d /etc/kubernetes 2>/dev/null; ls -A /var/lib/etcd 2>/dev/null; pgrep -f 'bin/[e]tcd --name'; true",
    );
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "", "the removed master keeps etcd");
}

/// A cluster image rebuilt under the same tag with one changed manifest: the plan shows an in-place update
/// of `image.*` on every host naming one changed file, and the apply brings exactly that while `/etc/hosts`,
/// the Config files and the cluster's members stay.
#[test]
fn a_rebuilt_image_under_the_same_tag_updates_the_changed_file_in_place() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(2);
    let context = site.path().join("image");
    let copied = Command::new("cp")
        .args(["-a", repo_root().join("examples/images/simulated-k8s").to_str().unwrap(), context.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let (master, node) = (site.ip(0), site.ip(1));
    let clusterfile = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: e2e\nspec:\n  image: {IMAGE}\n  ssh:\n    pk: {key}\n  \
         hosts:\n    - ips: [{master}]\n      roles: [master]\n    - ips: [{node}]\n      roles: [node]\n---\n\
         apiVersion: sealer.aliyun.com/v1alpha1\nkind: Config\nmetadata:\n  name: app-json\nspec:\n  path: etc/app.json\n  \
         process: toJson\n  data: |\n    name: demo\n",
        key = site.tb.key.display(),
    );
    site.write_clusterfile(&clusterfile);
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert_eq!(site.kubectl_nodes().len(), 2);

    let manifest = context.join("rootfs/manifests/hello.yaml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("# rebuilt\n");
    std::fs::write(&manifest, &text).unwrap();
    ok(&site.sealer(&["build", "-t", IMAGE, context.to_str().unwrap()], ""));

    let human = site.sealer(&["plan", "--no-color"], "");
    let human = ok(&human);
    let plan: Json = serde_json::from_slice(&site.sealer(&["plan", "--json"], "").stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    for ip in [&master, &node] {
        let image = changes.iter().find(|c| c["address"] == format!("image.{ip}")).unwrap();
        assert_eq!(image["action"], "update", "{image}");
        let note = image["note"].as_str().unwrap();
        assert!(note.starts_with("1 changed file(s), "), "{note}");
        assert!(human.contains(&format!("~ image \"{ip}\"")), "{human}");
    }
    assert!(human.contains("# (1 changed file(s), "), "{human}");
    assert!(
        !changes.iter().any(|c| c["action"] == "replace" || c["action"] == "delete"),
        "nothing is replaced: {changes:?}"
    );

    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    for i in 0..2 {
        let on_host = site.tb.exec(i, "cat /var/lib/sealer/e2e/rootfs/manifests/hello.yaml");
        assert_eq!(String::from_utf8_lossy(&on_host.stdout), text, "host {i} has the new manifest");
        let hosts = String::from_utf8_lossy(&site.tb.exec(i, "cat /etc/hosts").stdout).into_owned();
        // The master is its own API; the node reaches it through its balancer's virtual IP.
        let api = if i == 0 { master.to_string() } else { "10.103.97.2".to_string() };
        assert!(hosts.contains(&format!("{api} apiserver.cluster.local")), "host {i}: {hosts}");
        assert!(hosts.contains(&format!("{master} sea.hub")), "host {i}: {hosts}");
        let config = site.tb.exec(i, "cat /var/lib/sealer/e2e/rootfs/etc/app.json");
        assert!(String::from_utf8_lossy(&config.stdout).contains("\"name\": \"demo\""), "host {i}: Config file kept");
    }
    assert_eq!(site.kubectl_nodes().len(), 2, "both members stay");
    let again = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
}

/// The kubelet version of every node, by name.
fn node_versions(site: &Site) -> Vec<(String, String)> {
    site.kubectl_nodes()
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"].as_str().unwrap().to_string();
            (name, n["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap().to_string())
        })
        .collect()
}

/// How many nodes are cordoned now, read through the image's kubectl on the first master.
fn unschedulable(site: &Site) -> usize {
    let out = site.tb.exec(0, &format!("{KUBECTL} get nodes"));
    String::from_utf8_lossy(&out.stdout).matches("SchedulingDisabled").count()
}

/// Waits for `child` to exit, sampling the cordoned nodes meanwhile; returns the most seen at once. With
/// `stop_when`, kills the child (SIGKILL) as soon as it holds.
fn watch_apply(site: &Site, child: &mut std::process::Child, stop_when: Option<&dyn Fn() -> bool>) -> usize {
    let started = std::time::Instant::now();
    let mut most = 0;
    loop {
        most = most.max(unschedulable(site));
        if stop_when.is_some_and(|f| f()) {
            child.kill().unwrap();
            child.wait().unwrap();
            return most;
        }
        if child.try_wait().unwrap().is_some() {
            return most;
        }
        assert!(started.elapsed().as_secs() < 300, "the apply did not finish");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A 2-master + 2-node cluster on v1.29 of the simulated image, changed to the v1.30 image: the plan
/// lists the upgrade's steps in order, the apply drains and upgrades one host at a time, a crash after
/// the first master is finished by the next apply, and skipping a minor version is refused at plan time.
#[test]
fn a_new_kubernetes_version_is_rolled_out_host_by_host_and_resumes_after_a_crash() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(4);
    let context = repo_root().join("examples/images/simulated-k8s");
    // Each image carries the real kubectl of its minor.
    for (tag, minor) in [("v1.30.0", "1.30"), ("v1.31.0", "1.31")] {
        let arg = format!("KUBERNETES_MINOR={minor}");
        let image = format!("sim/kubernetes:{tag}");
        ok(&site.sealer(&["build", "-t", &image, "--build-arg", &arg, context.to_str().unwrap()], ""));
    }
    let kubectl_version = |i: usize| site.tb.exec_ok(i, &format!("{KUBECTL} version --client"));
    let ips: Vec<String> = (0..4).map(|i| site.ip(i)).collect();
    let clusterfile = |image: &str| {
        format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: e2e\nspec:\n  image: {image}\n  ssh:\n    pk: {key}\n  \
             hosts:\n    - ips: [{}, {}]\n      roles: [master]\n    - ips: [{}, {}]\n      roles: [node]\n",
            ips[0],
            ips[1],
            ips[2],
            ips[3],
            key = site.tb.key.display(),
        )
    };
    site.write_clusterfile(&clusterfile(IMAGE));
    ok(&site.sealer(&["apply", "--auto-approve"], ""));
    assert!(node_versions(&site).iter().all(|(_, v)| v == "v1.29.14"), "{:?}", node_versions(&site));
    assert!(kubectl_version(1).starts_with("Client Version: v1.29."), "{}", kubectl_version(1));

    site.write_clusterfile(&clusterfile("sim/kubernetes:v1.31.0"));
    let skipped = site.sealer(&["plan"], "");
    assert_eq!(skipped.status.code(), Some(1), "{}", stdout(&skipped));
    assert!(
        stderr(&skipped).contains(&format!(
            "`kubeadm-init.{}` cannot go from Kubernetes v1.29.14 to v1.31.0: kubeadm upgrades one minor version at a \
             time: go to v1.30 first",
            ips[0]
        )),
        "{}",
        stderr(&skipped)
    );

    site.write_clusterfile(&clusterfile("sim/kubernetes:v1.30.0"));
    let plan = ok(&site.sealer(&["plan", "--no-color"], ""));
    let steps = format!(
        "Kubernetes upgrade, in this order (one host at a time):\n  \
         1. kubeadm-init.{0}: v1.29.14 -> v1.30.0 (drain, kubeadm upgrade apply, uncordon)\n  \
         2. kubeadm-join.{1}: v1.29.14 -> v1.30.0 (drain, kubeadm upgrade node, uncordon)\n  \
         3. kubeadm-join.{2}: v1.29.14 -> v1.30.0 (drain, kubeadm upgrade node, uncordon)\n  \
         4. kubeadm-join.{3}: v1.29.14 -> v1.30.0 (drain, kubeadm upgrade node, uncordon)\n",
        ips[0], ips[1], ips[2], ips[3]
    );
    assert!(plan.contains(&steps), "{plan}");
    assert!(!plan.contains("must be replaced"), "an upgrade replaces nothing: {plan}");

    // Crash right after the first master was upgraded and recorded.
    let state = site.path().join(".sealer/state.db");
    let first_master_done = || {
        sealer_state::SqliteStore::open_read_only(&state)
            .ok()
            .flatten()
            .and_then(|s| sealer_engine::StateStore::load(&s, "e2e").ok().flatten())
            .and_then(|s| {
                let init = s.resources.get(&format!("kubeadm-init.{}", ips[0]).parse().unwrap())?.clone();
                Some(init.attributes.get("kubernetes_version") == Some(&sealer_engine::Value::text("v1.30.0")))
            })
            .unwrap_or(false)
    };
    let mut child = site.spawn_apply();
    let first = watch_apply(&site, &mut child, Some(&first_master_done));
    assert!(first <= 1, "{first} nodes were unschedulable at once");
    let versions = node_versions(&site);
    assert!(versions.iter().any(|(_, v)| v == "v1.29.14"), "the crash left hosts to upgrade: {versions:?}");

    // The crashed apply's lock goes with the next apply (its process is gone).
    let resumed_plan = ok(&site.sealer(&["plan", "--no-color"], ""));
    assert!(!resumed_plan.contains(&format!("kubeadm-init.{}: v1.29.14", ips[0])), "{resumed_plan}");
    let mut child = site.spawn_apply();
    let most = watch_apply(&site, &mut child, None);
    assert!(child.wait().unwrap().success());
    assert!(most <= 1, "{most} nodes were unschedulable at once");
    // The samples did see the drains (each step keeps its host cordoned for a while).
    assert_eq!(first.max(most), 1, "no drained host was ever seen");

    let versions = node_versions(&site);
    assert_eq!(versions.len(), 4);
    assert!(versions.iter().all(|(_, v)| v == "v1.30.0"), "{versions:?}");
    // Every command of the upgrade (drain, uncordon, get) ran the real kubectl; the masters now have 1.30's.
    for master in [0, 1] {
        assert!(kubectl_version(master).starts_with("Client Version: v1.30."), "{}", kubectl_version(master));
    }
    assert_eq!(unschedulable(&site), 0, "every host was uncordoned");
    let manifest = site.tb.exec(1, "cat /etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(String::from_utf8_lossy(&manifest.stdout).contains("kube-apiserver:v1.30.0"), "second master upgraded");
    let settled = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(settled.status.code(), Some(0), "{}", stdout(&settled));
}

/// The documentation's behaviours on real hosts: a SHELL plugin selected by the masters' kubeadm label
/// (`control-plane` from 1.24) runs on exactly the masters, PreJoin only on the hosts that join, a dashed env name reaches scripts and
/// the image's templates with the host group's value winning, and joins leave no join credential on any
/// command line or in any log (logs 0600).
#[test]
fn documented_plugins_env_templates_and_joins_hold_on_real_hosts() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(4);
    let ips: Vec<String> = (0..4).map(|i| site.ip(i)).collect();
    let clusterfile = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: e2e\nspec:\n  image: {IMAGE}\n  ssh:\n    pk: {key}\n  \
         env:\n    docker-dir: /var/lib/docker\n  hosts:\n    - ips: [{}, {}]\n      roles: [master]\n    - ips: [{}, {}]\n      \
         roles: [node]\n      env:\n        docker-dir: /data/docker\n---\n\
         apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: MyShell\nspec:\n  type: SHELL\n  \
         action: PostInstall\n  on: node-role.kubernetes.io/control-plane=\n  data: |\n    hostname > /root/on-master\n---\n\
         apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: SHELL\nspec:\n  action: PreJoin|PostInstall\n  \
         data: |\n    env | grep '^docker-dir=' >> /root/env-seen\n---\n\
         apiVersion: sealer.aliyun.com/v1alpha1\nkind: Config\nmetadata:\n  name: db\nspec:\n  path: etc/db-secret.yaml\n  \
         process: toSecret\n  data: |\n    password: Db-Secret-42\n",
        ips[0],
        ips[1],
        ips[2],
        ips[3],
        key = site.tb.key.display(),
    );
    site.write_clusterfile(&clusterfile);
    let plan = ok(&site.sealer(&["plan"], ""));
    assert!(plan.contains("plugin \"MyShell.PostInstall."), "{plan}");
    // `ps` on the joining hosts all through the apply: what any process's command line showed.
    let done = std::sync::atomic::AtomicBool::new(false);
    let processes = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for i in 1..4 {
                    let ps = site.tb.exec(i, "ps -eo args");
                    seen.extend(String::from_utf8_lossy(&ps.stdout).lines().map(str::to_string));
                }
            }
            seen
        });
        ok(&site.sealer(&["apply", "--auto-approve"], ""));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        sampler.join().unwrap()
    });

    let file =
        |i: usize, path: &str| String::from_utf8_lossy(&site.tb.exec(i, &format!("cat {path}")).stdout).into_owned();
    for i in 0..4 {
        let master = i < 2;
        assert_eq!(file(i, "/root/on-master").is_empty(), !master, "MyShell on host {i}");
        let dir = if master { "/var/lib/docker" } else { "/data/docker" };
        // PreJoin on every host but the first master, PostInstall everywhere.
        let runs = if i == 0 { 1 } else { 2 };
        assert_eq!(file(i, "/root/env-seen"), format!("docker-dir={dir}\n").repeat(runs), "host {i}");
        let daemon = file(i, "/var/lib/sealer/e2e/rootfs/etc/daemon.json");
        assert_eq!(daemon.trim(), format!("{{\"data-root\": \"{dir}\"}}"), "host {i}");
    }

    // Every token and certificate key the cluster issued, from the simulation's records in its etcd.
    let record = site.tb.exec(
        0,
        "ETCDCTL_API=3 /var/lib/sealer/e2e/rootfs/bin/etcdctl --endpoints http://127.0.0.1:2379 get \
         /registry/sim/cluster --print-value-only",
    );
    let record: Json = serde_json::from_slice(&record.stdout).unwrap();
    let mut secrets: Vec<String> = record["tokens"].as_object().unwrap().keys().cloned().collect();
    secrets.extend(record["certificateKeys"].as_object().unwrap().keys().cloned());
    assert!(secrets.len() >= 2, "{record}");
    let logs = site.path().join(".sealer/logs");
    let mut seen = 0;
    for run in std::fs::read_dir(&logs).unwrap() {
        for log in std::fs::read_dir(run.unwrap().path()).unwrap() {
            let log = log.unwrap().path();
            assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600, "{}", log.display());
            let text = std::fs::read_to_string(&log).unwrap();
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "{} holds a join credential", log.display());
            }
            for command in text.lines().filter(|l| l.starts_with("$ ")) {
                assert!(!command.contains("--token") && !command.contains("--certificate-key"), "{command}");
            }
            seen += usize::from(text.contains("kubeadm join --config"));
        }
    }
    assert_eq!(seen, 3, "every joining host joined with a config file");
    for line in &processes {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "a command line showed a join credential: {line}");
        }
        assert!(!line.contains("--token") && !line.contains("--certificate-key"), "{line}");
    }
    assert!(processes.iter().any(|l| l.contains("kubeadm join --config")), "the samples saw joins");
    for i in 1..4 {
        assert!(file(i, "/var/lib/sealer/e2e/kubeadm-join.yml").is_empty(), "the join file is gone from host {i}");
    }
    // A toSecret document: on every host as a Secret, in no plan, state, cluster copy or log.
    let encoded = "RGItU2VjcmV0LTQy"; // base64 of Db-Secret-42
    for i in 0..4 {
        assert!(file(i, "/var/lib/sealer/e2e/rootfs/etc/db-secret.yaml").contains(encoded), "host {i}");
    }
    let copy = site.tb.exec(0, &format!("{KUBECTL} get configmap sealer-state -n kube-system -o json"));
    let written = format!("{}{}{}", site.everything_written(), String::from_utf8_lossy(&copy.stdout), plan);
    assert!(!written.contains("Db-Secret-42") && !written.contains(encoded), "the secret leaked");
    let settled = site.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(settled.status.code(), Some(0), "{}", stdout(&settled));
    // A changed secret shows as a changed keyed digest on each host, never as its value.
    site.write_clusterfile(&clusterfile.replace("Db-Secret-42", "Db-Secret-43"));
    let changed = site.sealer(&["plan", "--detailed-exitcode", "--refresh=false"], "");
    assert_eq!(changed.status.code(), Some(2), "{}", stderr(&changed));
    let shown = stdout(&changed);
    assert_eq!(shown.matches("~ data_digest").count(), 4, "{shown}");
    assert!(!shown.contains("Db-Secret"), "{shown}");
}

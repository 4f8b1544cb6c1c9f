//! `sealer reconcile` end to end on real sshd hosts: drift repaired within two intervals, metrics,
//! dangerous edits reported and not applied, a component whose status the cluster lost re-run, shell-operator
//! hooks (onStartup once, a `* * * * *` schedule), and SIGTERM during an apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealer_tests::{ok, repo_root, sealer_bin, stderr, stdout, testbed_available, Testbed};

const KUBECTL: &str = "KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/rec/rootfs/bin/kubectl";

/// `sealer ARGS` in `dir`, with `dir/home` as its home.
fn sealer(dir: &Path, args: &[&str]) -> Output {
    sealer_tests::sealer_at(&dir.join("home"), dir, args)
}

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page
}

/// The value of the sample `name{labels}` on the page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Lines reconcile printed (stdout and stderr), kept to show what it did when a wait fails.
type Log = Arc<Mutex<Vec<String>>>;

fn wait_for(log: &Log, what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            let lines = log.lock().unwrap();
            let last = lines[lines.len().saturating_sub(40)..].join("\n");
            panic!("not within {within:?}: {what}; reconcile's last lines:\n{last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Collects `from`'s lines into `log` (stderr too: a pipe nobody reads would block reconcile when full).
fn collect(log: &Log, from: impl std::io::Read + Send + 'static, prefix: &'static str) {
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            log.lock().unwrap().push(format!("{prefix}{line}"));
        }
    });
}

/// `sealer reconcile ARGS` in `dir` (its home `dir/home`) in the background, its lines collected.
fn spawn_reconcile(dir: &Path, args: &[&str]) -> (std::process::Child, Log) {
    let mut child = Command::new(sealer_bin())
        .arg("reconcile")
        .args(args)
        .current_dir(dir)
        .env("SEALER_HOME", dir.join("home"))
        .env_remove("SEALER_STATE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events: Log = Arc::default();
    collect(&events, child.stdout.take().unwrap(), "");
    collect(&events, child.stderr.take().unwrap(), "stderr: ");
    (child, events)
}

fn exec(tb: &Testbed, i: usize, command: &str) -> String {
    let out = tb.exec(i, command);
    assert!(out.status.success(), "{command}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn clusterfile(tb: &Testbed, master: usize, node: usize) -> String {
    let (m, n) = (tb.ips[master], tb.ips[node]);
    format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: rec\nspec:\n  image: sim/hooks:v1.29.14\n  ssh:\n    pk: {key}\n  \
         hosts:\n    - ips: [{m}]\n      roles: [master]\n    - ips: [{n}]\n      roles: [node]\n---\n\
         apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: names\nspec:\n  type: HOSTNAME\n  action: PreInit\n  \
         data: |\n    {m} rec-master\n    {n} rec-node\n---\n\
         apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: labels\nspec:\n  type: LABEL\n  action: PostInstall\n  \
         data: {n} env=prod\n",
        key = tb.key.display()
    )
}

#[test]
fn reconcile_repairs_drift_reports_dangerous_edits_runs_hooks_and_stops_cleanly() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(2);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealer_tests::build_simulated_image(&d.join("home"), d);
    // An image with shell-operator hooks: one at startup, one every minute.
    let hooks = d.join("hooks-image");
    std::fs::create_dir_all(hooks.join("hooks")).unwrap();
    let script = |config: &str, action: &str| {
        format!("#!/bin/bash\nif [ \"$1\" = --config ]; then echo '{config}'; exit 0; fi\n{action}\n")
    };
    for (name, text) in [
        ("startup", script(r#"{"configVersion":"v1","onStartup":1}"#, "echo started >> /root/startup-ran")),
        (
            "nightly",
            script(
                r#"{"configVersion":"v1","schedule":[{"name":"every-minute","crontab":"* * * * *","allowFailure":true}]}"#,
                "{ date +%s; cat \"$BINDING_CONTEXT_PATH\"; echo; } >> /root/hook-runs",
            ),
        ),
    ] {
        let path = hooks.join("hooks").join(name);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(hooks.join("Kubefile"), "FROM sim/kubernetes:v1.29.14\nCOPY hooks hooks\n").unwrap();
    ok(&sealer(d, &["build", "-t", "sim/hooks:v1.29.14", hooks.to_str().unwrap()]));
    std::fs::write(d.join("Clusterfile"), clusterfile(&tb, 0, 1)).unwrap();
    let applied = ok(&sealer(d, &["apply", "--auto-approve", "--no-progress"]));
    assert!(applied.contains("hooks.") && applied.contains("Apply complete!"), "{applied}");
    assert_eq!(exec(&tb, 0, "cat /root/startup-ran"), "started\n", "the onStartup hook ran once");
    let recorded = ok(&sealer(d, &["state", "show", &format!("hooks.{}", tb.ips[0])]));
    assert!(recorded.contains("every-minute") && recorded.contains("* * * * *"), "the schedule recorded: {recorded}");
    // `sealer exec -l`: the hosts whose nodes have the label now, as the cluster's API says.
    let labelled = ok(&sealer(d, &["exec", "-l", "env=prod", "--", "cat /etc/hostname"]));
    assert_eq!(labelled, format!("{} | rec-node\n", tb.ips[1]));
    let nobody = sealer(d, &["exec", "-l", "env=prod,tier=none", "true"]);
    assert!(stderr(&nobody).contains("no host of cluster `rec` matches the selection"), "{}", stderr(&nobody));

    // Reconcile in the background, every 2 s, applying.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let (mut child, events) = spawn_reconcile(d, &["--interval", "2s", "--apply", "--metrics-addr", &addr, "--json"]);
    let total = |result: &str| sample(&scrape(port), &format!("sealer_reconcile_total{{result=\"{result}\"}}"));
    wait_for(&events, "a first tick with no changes", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && total("no_changes") >= 1.0
    });
    assert!(scrape(port).contains("sealer_reconcile_last_success_timestamp_seconds"));

    // Drift by hand: a label removed, a hostname changed. Repaired within two intervals (plus the apply).
    exec(&tb, 0, &format!("{KUBECTL} label node rec-node env-"));
    exec(&tb, 1, "hostname drifted");
    let mut saw_drift = false;
    wait_for(&events, "the drift repaired", Duration::from_secs(30), || {
        let page = scrape(port);
        saw_drift |= sample(&page, "sealer_drift_resources{kind=\"label\"}") > 0.0;
        let label = exec(&tb, 0, &format!("{KUBECTL} get node rec-node -o json"));
        saw_drift && label.contains("\"env\": \"prod\"") && exec(&tb, 1, "hostname").trim() == "rec-node"
    });
    let applied = total("applied");
    assert!(applied >= 1.0);
    wait_for(&events, "drift back at 0", Duration::from_secs(10), || {
        let page = scrape(port);
        sample(&page, "sealer_drift_resources{kind=\"label\"}") == 0.0
            && sample(&page, "sealer_drift_resources{kind=\"hostname\"}") == 0.0
    });

    // The status of the cluster image's CMDs deleted from kube-system/sealer-apps: that, and only that, runs again.
    let before = exec(&tb, 0, &format!("{KUBECTL} get cm sealer-apps -n kube-system -o json"));
    assert!(before.contains("\"guest\""), "{before}");
    exec(
        &tb,
        0,
        &format!(
            "{KUBECTL} get cm sealer-apps -n kube-system -o json > /tmp/a.json && python3 -c 'import json; d=json.load(open(\"/tmp/a.json\")); \
             d[\"data\"].pop(\"guest\"); json.dump(d, open(\"/tmp/b.json\", \"w\"))' && {KUBECTL} apply -f /tmp/b.json"
        ),
    );
    wait_for(&events, "the guest re-run", Duration::from_secs(30), || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("\"result\":\"applied\"") && e.contains("\"drift\":{\"guest\":1}"))
    });
    assert!(exec(&tb, 0, &format!("{KUBECTL} get cm sealer-apps -n kube-system -o json")).contains("\"guest\""));
    assert!(total("applied") > applied, "sealer_reconcile_total{{result=\"applied\"}} grows");

    // The scheduled hook runs on its crontab (every minute), also for a minute that passed while the ticks
    // failed: here the Clusterfile is unreadable across a minute boundary, and the hook runs once it is back.
    let runs = || {
        exec(&tb, 0, "cat /root/hook-runs 2>/dev/null | grep -c every-minute || true").trim().parse::<usize>().unwrap()
    };
    let ok_runs = || sample(&scrape(port), "sealer_hook_runs_total{hook=\"every-minute\",result=\"ok\"}");
    let good = std::fs::read_to_string(d.join("Clusterfile")).unwrap();
    std::fs::write(d.join("Clusterfile"), "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec: [\n").unwrap();
    let invalid = total("invalid");
    wait_for(&events, "a tick on the broken Clusterfile", Duration::from_secs(30), || total("invalid") > invalid);
    let (before, ok_before) = (runs(), ok_runs());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::thread::sleep(Duration::from_secs((now / 60 + 1) * 60 + 1 - now));
    let invalid = total("invalid");
    wait_for(&events, "a failed tick after the minute", Duration::from_secs(30), || total("invalid") > invalid);
    assert_eq!(runs(), before, "no hook runs while the ticks fail");
    std::fs::write(d.join("Clusterfile"), good).unwrap();
    wait_for(&events, "the every-minute hook", Duration::from_secs(30), || runs() > before);
    wait_for(&events, "its metric", Duration::from_secs(10), || ok_runs() > ok_before);
    assert_eq!(runs(), before + 1, "the missed minute runs the hook once");
    assert_eq!(exec(&tb, 0, "cat /root/startup-ran"), "started\n", "onStartup hooks ran only at install");

    // An edit that removes the first master is reported and never applied.
    let only_second = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: rec\nspec:\n  image: sim/hooks:v1.29.14\n  ssh:\n    pk: {}\n  \
         hosts:\n    - ips: [{}]\n      roles: [master]\n",
        tb.key.display(),
        tb.ips[1]
    );
    std::fs::write(d.join("Clusterfile"), only_second).unwrap();
    wait_for(&events, "the dangerous plan refused", Duration::from_secs(20), || total("refused") >= 1.0);
    let refused = events.lock().unwrap().iter().rev().find(|e| e.contains("\"result\":\"refused\"")).cloned().unwrap();
    // The node listed first cannot become the first master: refused at plan, whatever --force would say.
    assert!(refused.contains("refusing to apply: ") && refused.contains("cannot become the first master"), "{refused}");
    let nodes = exec(&tb, 0, &format!("{KUBECTL} get nodes"));
    assert!(nodes.contains("rec-master") && nodes.contains("rec-node"), "{nodes}");

    // SIGTERM during an apply: it stops after what runs; no lock is left and the state reads.
    std::fs::write(d.join("Clusterfile"), clusterfile(&tb, 0, 1)).unwrap();
    exec(&tb, 0, &format!("{KUBECTL} label node rec-node env-"));
    let seen = events.lock().unwrap().len();
    wait_for(&events, "an apply started", Duration::from_secs(30), || {
        events.lock().unwrap()[seen..].iter().any(|e| e.contains("\"type\":\"apply_start\""))
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "reconcile did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    wait_for(&events, "the stop announced on stderr", Duration::from_secs(5), || {
        events.lock().unwrap().iter().any(|l| l.starts_with("stderr: stopping"))
    });
    let listed = ok(&sealer(d, &["state", "list"]));
    assert!(listed.contains("guest."), "{listed}");
    let again = ok(&sealer(d, &["apply", "--auto-approve", "--no-progress"]));
    assert!(!again.contains("lock"), "no lock was left: {again}");

    // The node listed as the only master cannot become the first master (it is no master of the cluster):
    // refused when planned, with or without --apply, and by `apply`, naming why; nothing applied.
    let only_second = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: rec\nspec:\n  image: sim/hooks:v1.29.14\n  ssh:\n    pk: {}\n  \
         hosts:\n    - ips: [{}]\n      roles: [master]\n",
        tb.key.display(),
        tb.ips[1]
    );
    std::fs::write(d.join("Clusterfile"), &only_second).unwrap();
    let once = sealer(d, &["reconcile", "--once", "--json"]);
    let tick: serde_json::Value = stdout(&once)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e.get("result").is_some())
        .unwrap_or_else(|| panic!("a tick event: {}", stdout(&once)));
    assert_eq!(tick["result"], "refused", "{tick}");
    assert!(tick["message"].as_str().unwrap().contains("cannot become the first master"), "{tick}");
    let refused = sealer(d, &["apply", "--auto-approve", "--no-progress", "--force"]);
    let said = format!("{}{}", stdout(&refused), stderr(&refused));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("`{}` cannot become the first master", tb.ips[1])), "{said}");
    let nodes = exec(&tb, 0, &format!("{KUBECTL} get nodes"));
    assert!(nodes.contains("rec-master") && nodes.contains("rec-node"), "nothing applied: {nodes}");
}

/// `examples/ci/pipeline.sh` as a CI system runs it: a branch gets a markdown plan for its pull request
/// and changes nothing; main applies with the shared PostgreSQL state; the next branch sees no changes.
#[test]
fn the_example_ci_pipeline_plans_branches_and_applies_main_with_a_postgres_state() {
    if !testbed_available() {
        return;
    }
    let Some(db) = sealer_tests::postgres_database() else { return };
    let tb = Testbed::up(1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealer_tests::build_simulated_image(&d.join("home"), d);
    std::fs::write(
        d.join("Clusterfile"),
        format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: ci\nspec:\n  image: sim/kubernetes:v1.29.14\n  ssh:\n    \
             pk: {}\n  hosts:\n    - ips: [{}]\n      roles: [master]\n",
            tb.key.display(),
            tb.ips[0]
        ),
    )
    .unwrap();
    let pipeline = |branch: &str| {
        let out = Command::new("bash")
            .arg(repo_root().join("examples/ci/pipeline.sh"))
            .arg(branch)
            .current_dir(d)
            .env("SEALER", sealer_bin())
            .env("SEALER_STATE", &db.url)
            .env("SEALER_HOME", d.join("home"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{branch}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(!shown.contains(sealer_tests::POSTGRES_PASSWORD), "the state's password leaked: {shown}");
        shown
    };
    let planned = pipeline("feature");
    assert!(planned.contains("changes: the plan is in plan-comment.md"), "{planned}");
    let comment = std::fs::read_to_string(d.join("plan-comment.md")).unwrap();
    assert!(
        comment.starts_with("### sealer plan: cluster `ci`") && comment.contains("| `host` | 1 | 0 | 0 | 0 |"),
        "{comment}"
    );
    assert!(comment.contains("<details><summary><code>+ kubeadm-init."), "{comment}");
    assert!(!d.join(".sealer/state.db").exists(), "the state is PostgreSQL");
    assert!(pipeline("main").contains("applied: the cluster matches Clusterfile"));
    let again = pipeline("feature");
    assert!(again.contains("no changes"), "{again}");
    assert!(std::fs::read_to_string(d.join("plan-comment.md")).unwrap().contains("**No changes.**"));
}

/// Seed 004's installer (`examples/installer-image`) on a 1-master + 1-node cluster: `sealer reconcile`
/// synchronises its `kubernetes` binding (the enabled component is installed), then runs it on the
/// watch's events: a component enabled by editing the object is installed within one interval, and
/// removing one component's status re-installs that component only. The hook's metrics are on `/metrics`.
#[test]
fn seed_004s_installer_installs_what_its_configuration_enables() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(2);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sealer_tests::build_simulated_image(&d.join("home"), d);
    let example = repo_root().join("examples/installer-image");
    ok(&sealer(d, &["build", "-t", "ks-installer:v1", example.to_str().unwrap()]));
    let key = tb.key.display().to_string();
    let (master, node) = (tb.ips[0].to_string(), tb.ips[1].to_string());
    ok(&sealer(
        d,
        &["run", "ks-installer:v1", "-m", &master, "-n", &node, "--pk", &key, "--auto-approve", "--no-progress"],
    ));
    let kubectl = |args: &str| {
        exec(
            &tb,
            0,
            &format!("KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/my-cluster/rootfs/bin/kubectl {args}"),
        )
    };
    let recorded = ok(&sealer(d, &["state", "show", &format!("hooks.{master}")]));
    assert!(recorded.contains("cluster-configuration") && recorded.contains("0 0 1 * *"), "{recorded}");
    assert!(kubectl("get configmap ks-installer -n kubesphere-system -o json").contains("spec.monitoring.enabled"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let interval = Duration::from_secs(4);
    let (mut child, events) =
        spawn_reconcile(d, &["-f", ".sealer/my-cluster/Clusterfile", "--interval", "4s", "--metrics-addr", &addr]);
    let installs = |component: &str| {
        let page = std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| scrape(port)).unwrap_or_default();
        sample(&page, &format!("ks_installer_installs_total{{component=\"{component}\"}}"))
    };
    let installed = |component: &str| {
        kubectl("get configmaps -n kubesphere-system -o name").contains(&format!("configmap/ks-{component}\n"))
    };
    wait_for(&events, "the synchronisation installs monitoring", Duration::from_secs(60), || {
        installs("monitoring") == 1.0
    });
    assert!(installed("monitoring") && !installed("logging") && !installed("devops"));
    let status = kubectl("get configmap ks-installer -n kubesphere-system -o jsonpath='{.data.status\\.monitoring}'");
    assert_eq!(status, "enabled");

    // Enabling a component by editing the object: installed within one interval (after the tick that
    // sees the event, which comes at most one interval after the edit).
    kubectl("patch configmap ks-installer -n kubesphere-system --type merge -p '{\"data\":{\"spec.logging.enabled\":\"true\"}}'");
    let edited = Instant::now();
    wait_for(&events, "logging installed after the edit", interval * 3, || installs("logging") == 1.0);
    let took = edited.elapsed();
    assert!(installed("logging") && !installed("devops"));
    // Removing a status: only that component again.
    kubectl("patch configmap ks-installer -n kubesphere-system --type json -p '[{\"op\":\"remove\",\"path\":\"/data/status.monitoring\"}]'");
    wait_for(&events, "monitoring installed again", interval * 3, || installs("monitoring") == 2.0);
    // A few more ticks: the installer's own status writes are events too, and install nothing.
    std::thread::sleep(interval * 2);
    let page = scrape(port);
    assert_eq!(sample(&page, "ks_installer_installs_total{component=\"monitoring\"}"), 2.0, "{page}");
    assert_eq!(sample(&page, "ks_installer_installs_total{component=\"logging\"}"), 1.0, "{page}");
    assert_eq!(sample(&page, "ks_installer_components_enabled"), 2.0, "{page}");
    assert!(sample(&page, "sealer_hook_runs_total{hook=\"cluster-configuration\",result=\"ok\"}") >= 3.0, "{page}");
    let lines = events.lock().unwrap().join("\n");
    assert!(lines.contains("hook hooks/installer (cluster-configuration Synchronization (1 objects)): ok"), "{lines}");
    assert!(
        lines.contains("hook hooks/installer (cluster-configuration Modified configmap/ks-installer): ok"),
        "{lines}"
    );
    let _ = child.kill();
    let _ = child.wait();
    // At most one interval to the next tick, then that tick's refresh and plan before its hooks.
    assert!(took <= interval + Duration::from_secs(6), "logging took {took:?} (interval {interval:?})");
    // What the hook printed on stdout (every run) is nowhere: not in reconcile's output, not in a file of
    // the workstation (logs, state, Clusterfile), not in a file of the master it ran on.
    let canary = "Hook-Stdout-Canary-42";
    let lines = events.lock().unwrap().join("\n");
    assert!(!lines.contains(canary), "{lines}");
    let local = Command::new("grep").args(["-rl", canary]).arg(d).output().unwrap();
    assert_eq!(stdout(&local), "", "files of the workstation hold the hook's stdout");
    let remote = exec(&tb, 0, &format!("grep -rls {canary} /var/lib/sealer /var/log /tmp /root /etc || true"));
    assert_eq!(remote, "", "files of the master hold the hook's stdout");
    let ran = exec(
        &tb,
        0,
        "cd /var/lib/sealer/my-cluster/rootfs && echo '[{\"objects\": [{\"object\": {\"data\": {}}}]}]' > /tmp/c && \
         BINDING_CONTEXT_PATH=/tmp/c METRICS_PATH=/tmp/m hooks/installer",
    );
    assert!(ran.contains(canary), "the hook does print it: {ran}");
}

//! Faults on real sshd hosts with the simulated-Kubernetes image: the workstation killed (SIGKILL) at many
//! points of installs and scale-ups, inside `kubeadm init` and `kubeadm join` too, after which the next
//! apply converges without `--force`; and a full disk, named as such in bounded time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealer_tests::{ok, sealer_at as sealer, stderr, stdout, testbed_available, Testbed};

const KUBECTL: &str = "KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/faults/rootfs/bin/kubectl";
const ETCDCTL: &str = "ETCDCTL_API=3 /var/lib/sealer/faults/rootfs/bin/etcdctl --endpoints http://127.0.0.1:2379";

struct Site {
    tb: Testbed,
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
}

impl Site {
    fn new(hosts: usize) -> Site {
        let tb = Testbed::up(hosts);
        let dir = tempfile::tempdir().unwrap();
        let (home, work) = (dir.path().join("home"), dir.path().join("work"));
        std::fs::create_dir_all(&work).unwrap();
        sealer_tests::build_simulated_image(&home, dir.path());
        Site { tb, _dir: dir, home, work }
    }

    fn ip(&self, i: usize) -> String {
        self.tb.ips[i].to_string()
    }

    /// The Clusterfile with these masters and nodes (host indexes).
    fn declare(&self, masters: &[usize], nodes: &[usize]) {
        let list = |hosts: &[usize]| hosts.iter().map(|&i| self.ip(i)).collect::<Vec<_>>().join(", ");
        let mut text = format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: faults\nspec:\n  image: {}\n  ssh:\n    \
             pk: {}\n  hosts:\n    - ips: [{}]\n      roles: [master]\n",
            sealer_tests::SIMULATED_IMAGE,
            self.tb.key.display(),
            list(masters)
        );
        if !nodes.is_empty() {
            text += &format!("    - ips: [{}]\n      roles: [node]\n", list(nodes));
        }
        std::fs::write(self.work.join("Clusterfile"), text).unwrap();
    }

    fn sealer(&self, args: &[&str]) -> std::process::Output {
        sealer(&self.home, &self.work, args)
    }

    /// `apply` started, its output kept (`Stdio::piped`) or not.
    fn spawn_apply(&self, output: fn() -> Stdio) -> Child {
        Command::new(sealer_tests::sealer_bin())
            .args(["apply", "-f", "Clusterfile", "--auto-approve", "--no-progress"])
            .current_dir(&self.work)
            .env("SEALER_HOME", &self.home)
            .env("NO_COLOR", "1")
            .env_remove("SEALER_STATE")
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap()
    }

    /// The next apply after a fault: complete without `--force`, then nothing left to do.
    fn converges(&self, after: &str) -> Duration {
        self.finishes(after).0
    }

    /// [`Site::converges`], with what the apply said it did (its last line).
    fn finishes(&self, after: &str) -> (Duration, String) {
        let started = Instant::now();
        let out = self.sealer(&["apply", "-f", "Clusterfile", "--auto-approve", "--no-progress"]);
        // "No changes.": the killed apply had finished (and recorded) its work just before the kill.
        let done = stdout(&out).contains("Apply complete!") || stdout(&out).contains("No changes.");
        assert!(
            out.status.success() && done,
            "{after}: the next apply did not converge:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let took = started.elapsed();
        let plan = self.sealer(&["plan", "-f", "Clusterfile", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "{after}: {}{}", stdout(&plan), stderr(&plan));
        let said = stdout(&out);
        let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
        (took, last)
    }

    /// Whether a process whose command line has `pattern` runs on host `i` (its first letter bracketed, so
    /// that the shell running `pgrep`, whose command line holds the pattern too, does not match).
    fn running(&self, i: usize, pattern: &str) -> bool {
        let regex = format!("[{}]{}", &pattern[..1], &pattern[1..]);
        self.tb.exec(i, &format!("pgrep -f {}", sealer_providers::shell::quote(&regex))).status.success()
    }
}

/// When an apply is killed: once a process runs on a host (a kubeadm in progress), or after a while.
enum KillAt {
    Running(usize, &'static str),
    After(Duration),
}

impl std::fmt::Display for KillAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillAt::Running(i, pattern) => write!(f, "inside `{pattern}` on host {i}"),
            KillAt::After(delay) => write!(f, "{delay:?} after its start"),
        }
    }
}

/// Kills `child` with SIGKILL at `at` (plus `jitter`); false when it ended before.
fn kill_at(site: &Site, mut child: Child, at: &KillAt, jitter: Duration) -> bool {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let due = match at {
            KillAt::Running(i, pattern) => site.running(*i, pattern),
            KillAt::After(delay) => started.elapsed() >= *delay,
        };
        if due {
            std::thread::sleep(jitter);
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the apply neither ended nor reached its kill point");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cluster as its API and its etcd see it: every host of `members` a Ready node, once; the masters'
/// etcd members all started and none other.
fn consistent(site: &Site, members: &[usize], masters: &[usize], after: &str) {
    let nodes = site.tb.exec_ok(masters[0], &format!("{KUBECTL} get nodes -o json"));
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let mut addresses: Vec<String> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"]["addresses"][0]["address"].as_str().unwrap().to_string())
        .collect();
    addresses.sort();
    let mut expected: Vec<String> = members.iter().map(|&i| site.ip(i)).collect();
    expected.sort();
    assert_eq!(addresses, expected, "{after}: one node per member");
    let list = site.tb.exec_ok(masters[0], &format!("{ETCDCTL} member list"));
    let etcd: Vec<&str> = list.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(etcd.len(), masters.len(), "{after}: one etcd member per master: {list}");
    assert!(etcd.iter().all(|m| m.contains(", started, ")), "{after}: {list}");
    for &m in masters {
        assert!(list.contains(&format!("http://{}:2380", site.ip(m))), "{after}: {list}");
    }
    for &i in members {
        one_join(site, i, after);
    }
}

/// Host `i`'s own record of its kubeadm runs (the simulation's history) shows one join (or init) since its
/// last completed reset: never a second started on top of the first, complete or not (a killed one may
/// have done its work without writing that it completed; the API and etcd checks say whether it did).
fn one_join(site: &Site, i: usize, after: &str) {
    let history = site.tb.exec_ok(i, "cat /var/log/sim-k8s/kubeadm-history.log");
    let mut joins = 0;
    for line in history.lines() {
        match line.split_whitespace().skip(2).collect::<Vec<_>>()[..] {
            ["init" | "join", "started"] => {
                joins += 1;
                assert_eq!(joins, 1, "{after}: host {i} joined again without a reset in between:\n{history}");
            }
            ["reset", "completed"] => joins = 0,
            [_, "started" | "completed"] => {}
            _ => panic!("{after}: host {i}: a history line not understood: {line}"),
        }
    }
    assert_eq!(joins, 1, "{after}: host {i} is a member with no join since its last reset:\n{history}");
}

/// The workstation killed at 20 points of installs and scale-ups (inside `kubeadm init`, inside a master's
/// and a node's `kubeadm join`, and at moments in between): after each, the next apply converges without
/// `--force` (a half-done kubeadm is reset, the killed apply's lock replaced), its plan is clean, the
/// cluster has each member once, in its API and in etcd, and each host's own history shows one join.
#[test]
fn an_apply_killed_anywhere_is_finished_by_the_next() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(3);
    let (all, masters) = ([0, 1, 2], [0, 1]);
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut random = |below_ms: u64| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Duration::from_millis(u64::from(seed >> 8) % below_ms.max(1))
    };
    let mut points = Vec::new();
    // Installs: killed inside `kubeadm init`, or at a moment of the install (the image's copy, the registry,
    // the joins); then destroyed for the next.
    let installs = [
        KillAt::Running(0, "kubeadm init --config"),
        KillAt::Running(0, "kubeadm init --config"),
        KillAt::After(Duration::from_millis(700)),
        KillAt::After(Duration::from_millis(1500)),
    ];
    for at in &installs {
        site.declare(&masters, &[2]);
        let jitter = random(400);
        let hit = kill_at(&site, site.spawn_apply(Stdio::null), at, jitter);
        let inside = hit && kubeadm_unfinished(&site, 0);
        let name = format!("install, kill point {}: {at} (+{jitter:?})", points.len() + 1);
        let (took, did) = site.finishes(&name);
        if hit {
            let kubeadm = if inside { ", inside kubeadm" } else { "" };
            points.push(format!("{name}{kubeadm}: next apply {:.1} s ({did})", took.as_secs_f64()));
        }
        consistent(&site, &all, &masters, &name);
        ok(&site.sealer(&["destroy", "-f", "Clusterfile", "--auto-approve"]));
    }
    site.declare(&masters, &[2]);
    site.converges("the install");
    // Scale-ups: the second master and the node leave, and are killed on their way back in.
    let mut round = 0;
    while points.len() < 20 {
        assert!(round < 40, "only {} kill points were reached in {round} rounds: {points:?}", points.len());
        let (host, master) = if round % 2 == 0 { (1, true) } else { (2, false) };
        let at = match round % 4 {
            0 | 1 => KillAt::Running(host, "kubeadm join --config"),
            _ => KillAt::After(Duration::from_millis(200) + random(1500)),
        };
        round += 1;
        let (without_m, without_n): (Vec<usize>, Vec<usize>) =
            if master { (vec![0], vec![2]) } else { (masters.to_vec(), vec![]) };
        site.declare(&without_m, &without_n);
        site.converges("a member's removal");
        site.declare(&masters, &[2]);
        // Within a join's time (the simulation's take 0.1–0.3 s), so that kills land inside them; the
        // `After` rounds land anywhere in the apply.
        let jitter = random(if master { 120 } else { 30 });
        let hit = kill_at(&site, site.spawn_apply(Stdio::null), &at, jitter);
        let inside = hit && kubeadm_unfinished(&site, host);
        let name =
            format!("{} join, kill point {} (+{jitter:?})", if master { "master" } else { "node" }, points.len() + 1);
        let (took, did) = site.finishes(&name);
        if hit {
            let kubeadm = if inside { ", inside kubeadm" } else { "" };
            points.push(format!("{name}{kubeadm}: next apply {:.1} s ({did})", took.as_secs_f64()));
        }
        consistent(&site, &all, &masters, &name);
    }
    eprintln!("FIGURE {} kill points, each finished by the next apply:\n  {}", points.len(), points.join("\n  "));
    // A kill after the killed apply's last change leaves nothing to do; most must have left work, and a
    // good part of them must have landed while a kubeadm ran.
    let unfinished = points.iter().filter(|p| p.contains("Apply complete!")).count();
    assert!(unfinished >= 12, "only {unfinished} of {} kills landed before the killed apply finished", points.len());
    let inside: Vec<&String> = points.iter().filter(|p| p.contains("inside kubeadm")).collect();
    assert!(inside.len() >= 4, "only {} of {} kills landed while kubeadm ran", inside.len(), points.len());
    assert!(inside.iter().any(|p| p.starts_with("install")), "no kill landed inside a kubeadm init");
    assert!(inside.iter().any(|p| p.contains(" join, ")), "no kill landed inside a kubeadm join");
}

/// Whether host `i`'s last kubeadm init or join had started and not completed when it was read (the kill
/// landed inside it), by the host's own history.
fn kubeadm_unfinished(site: &Site, i: usize) -> bool {
    let history = site.tb.exec_ok(i, "cat /var/log/sim-k8s/kubeadm-history.log 2>/dev/null; true");
    let last = history.lines().rev().find(|l| l.contains(" init ") || l.contains(" join "));
    last.is_some_and(|l| l.ends_with(" started"))
}

/// A disk too small for the image: a 30 MiB tmpfs over `/var/lib/sealer` on host `i`.
fn fill(site: &Site, i: usize) {
    site.tb.exec_ok(i, "mkdir -p /var/lib/sealer && mount -t tmpfs -o size=30m tmpfs /var/lib/sealer");
}

fn unfill(site: &Site, i: usize) {
    site.tb.exec_ok(i, "umount /var/lib/sealer");
}

/// A cluster image of `mb` MiB of random bytes (incompressible), beside the simulated image's files.
fn big_image(site: &Site, mb: usize) -> String {
    let context = site.work.join("big");
    std::fs::create_dir_all(context.join("payload")).unwrap();
    let mut blob = vec![0u8; mb << 20];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut blob)).unwrap();
    std::fs::write(context.join("payload/blob.bin"), &blob).unwrap();
    std::fs::write(context.join("Kubefile"), format!("FROM {}\nCOPY payload payload\n", sealer_tests::SIMULATED_IMAGE))
        .unwrap();
    ok(&site.sealer(&["build", "-t", "faults/big:1", context.to_str().unwrap()]));
    "faults/big:1".to_string()
}

fn declare_image(site: &Site, image: &str, masters: &[usize], nodes: &[usize]) {
    site.declare(masters, nodes);
    let path = site.work.join("Clusterfile");
    let text = std::fs::read_to_string(&path).unwrap().replace(sealer_tests::SIMULATED_IMAGE, image);
    std::fs::write(path, text).unwrap();
}

/// A full disk where the image goes, on the host the workstation copies to and, in another run, on a host
/// that fetches it from a peer: each apply fails within 30 s naming the host and `No space left on device`;
/// once there is room again, the next apply converges.
#[test]
fn a_full_disk_is_named_in_bounded_time_and_the_next_apply_converges() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(4);
    let image = big_image(&site, 60);
    for (case, full) in [("the seed", 0), ("a leaf", 3)] {
        declare_image(&site, &image, &[0], &[1, 2, 3]);
        fill(&site, full);
        let started = Instant::now();
        let failed = site.sealer(&["apply", "-f", "Clusterfile", "--auto-approve", "--no-progress"]);
        let took = started.elapsed();
        unfill(&site, full);
        let said = format!("{}{}", stdout(&failed), stderr(&failed));
        assert_ne!(failed.status.code(), Some(0), "{case}: {said}");
        assert!(said.contains("No space left on device"), "{case}: {said}");
        assert!(said.contains(&site.ip(full)), "{case}: {said}");
        assert!(took < Duration::from_secs(30), "{case}: {took:?}\n{said}");
        eprintln!("FIGURE a full disk on {case}: the apply failed in {:.1} s naming it", took.as_secs_f64());
        site.converges(&format!("room again on {case}"));
        ok(&site.sealer(&["destroy", "-f", "Clusterfile", "--auto-approve"]));
    }
}

/// A host that stops answering while a command runs there (a partition) is named within 15 s, the apply
/// ending then; once it answers again, the next apply converges.
#[test]
fn a_partitioned_host_is_named_within_15_s() {
    if !testbed_available() {
        return;
    }
    let site = Site::new(2);
    site.declare(&[0], &[1]);
    site.converges("the install");
    // A plugin that holds the node for a minute the first time it runs.
    let path = site.work.join("Clusterfile");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text += &format!(
        "---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: slow\nspec:\n  type: SHELL\n  \
         action: PostInstall\n  on: {}\n  data: |\n    test -f /root/slept || {{ touch /root/slept; sleep 61; }}\n",
        site.ip(1)
    );
    std::fs::write(&path, text).unwrap();
    let child = site.spawn_apply(Stdio::piped);
    let started = Instant::now();
    while !site.running(1, "sleep 61") {
        assert!(started.elapsed() < Duration::from_secs(60), "the plugin never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    site.tb.partition(1);
    let cut = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = cut.elapsed();
    site.tb.heal(1);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains(&site.ip(1)) && said.contains("stopped answering"), "{said}");
    // Named within the keepalive bound (12 s) and a margin for a loaded machine, once: nothing after it
    // waits for the host again.
    assert!(took <= Duration::from_secs(15), "{took:?}: {said}");
    eprintln!("{said}");
    eprintln!(
        "FIGURE a host partitioned while a command ran there was named, the apply ended, in {:.1} s",
        took.as_secs_f64()
    );
    site.converges("the partition healed");
}

/// Two hosts, each with a chain of [`ChainSite::STEPS`] SHELL plugins of 0.5 s that append their name to
/// `/var/lib/chain/steps`, applied by `--target` (no Kubernetes): where an apply inside a chain is stopped.
struct ChainSite {
    tb: Testbed,
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    ips: Vec<String>,
    targets: Vec<String>,
}

impl ChainSite {
    const STEPS: usize = 12;

    fn new() -> ChainSite {
        let tb = Testbed::up(2);
        let dir = tempfile::tempdir().unwrap();
        let (home, work) = (dir.path().join("home"), dir.path().join("work"));
        std::fs::create_dir_all(work.join("ctx")).unwrap();
        std::fs::write(work.join("ctx/Kubefile"), "FROM scratch\nCOPY Kubefile etc/\n").unwrap();
        ok(&sealer(&home, &work.join("ctx"), &["build", "-t", "chain/small:1", "."]));
        let ips: Vec<String> = tb.ips.iter().map(|ip| ip.to_string()).collect();
        let mut text = format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: chain\nspec:\n  image: chain/small:1\n  \
             ssh:\n    pk: {}\n  hosts:\n    - ips: [{}]\n      roles: [master]\n",
            tb.key.display(),
            ips.join(", ")
        );
        let mut targets = Vec::new();
        for s in 1..=Self::STEPS {
            text += &format!(
                "---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: s{s}\nspec:\n  type: SHELL\n  \
                 action: PreInstall\n  data: |\n    mkdir -p /var/lib/chain && sleep 0.5 && echo s{s} >> /var/lib/chain/steps\n"
            );
            for ip in &ips {
                targets.extend(["--target".to_string(), format!("plugin.s{s}.PreInstall.{ip}")]);
            }
        }
        std::fs::write(work.join("Clusterfile"), text).unwrap();
        ChainSite { tb, _dir: dir, home, work, ips, targets }
    }

    fn args<'a>(&'a self, command: &'a [&'a str]) -> Vec<&'a str> {
        command.iter().copied().chain(self.targets.iter().map(String::as_str)).collect()
    }

    fn apply(&self) -> std::process::Output {
        sealer(&self.home, &self.work, &self.args(&["apply", "-f", "Clusterfile", "--auto-approve", "--no-progress"]))
    }

    /// The apply, started; stopped by the caller once host 0 recorded 4 steps.
    fn spawn_until_four_recorded(&self) -> Child {
        let mut child = Command::new(sealer_tests::sealer_bin())
            .args(self.args(&["apply", "-f", "Clusterfile", "--auto-approve", "--no-progress"]))
            .current_dir(&self.work)
            .env("SEALER_HOME", &self.home)
            .env("NO_COLOR", "1")
            .env_remove("SEALER_STATE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while self.recorded(0).len() < 4 {
            assert!(started.elapsed() < Duration::from_secs(60), "the chain never got 4 steps in");
            assert!(child.try_wait().unwrap().is_none(), "the apply ended before its stop point");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// The step names host `i`'s plugins have in the state.
    fn recorded(&self, i: usize) -> Vec<String> {
        let out = sealer(&self.home, &self.work, &["state", "list"]);
        let suffix = format!(".PreInstall.{}", self.ips[i]);
        let lines = stdout(&out);
        let steps = lines.lines().filter(|l| l.starts_with("plugin.") && l.ends_with(&suffix));
        steps.map(|l| l.split('.').nth(1).unwrap().to_string()).collect()
    }

    /// The steps that ran on host `i`, in order.
    fn ran(&self, i: usize) -> Vec<String> {
        let out = self.tb.exec(i, "cat /var/lib/chain/steps 2>/dev/null");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// The next apply creates exactly the steps the state lacks, on each host; every step then ran, at
    /// most `twice` of them twice on a host (the one under way at a kill); the plan is clean.
    fn next_apply_does_exactly_the_rest(&self, done: &[Vec<String>], twice: usize) {
        let said = ok(&self.apply());
        for (i, ip) in self.ips.iter().enumerate() {
            let created: std::collections::BTreeSet<String> = said
                .lines()
                .filter(|l| l.starts_with("plugin.") && l.contains(&format!(".{ip}: Creation complete")))
                .map(|l| l.split('.').nth(1).unwrap().to_string())
                .collect();
            let expected: std::collections::BTreeSet<String> =
                (1..=Self::STEPS).map(|s| format!("s{s}")).filter(|s| !done[i].contains(s)).collect();
            assert_eq!(created, expected, "host {ip}: the next apply did other than the rest:\n{said}");
            let ran = self.ran(i);
            for s in 1..=Self::STEPS {
                let n = ran.iter().filter(|l| **l == format!("s{s}")).count();
                assert!((1..=2).contains(&n), "host {ip}: s{s} ran {n} times: {ran:?}");
            }
            assert!(ran.len() <= Self::STEPS + twice, "host {ip}: {ran:?}");
        }
        let plan = sealer(&self.home, &self.work, &self.args(&["plan", "-f", "Clusterfile", "--detailed-exitcode"]));
        assert_eq!(plan.status.code(), Some(0), "{}{}", stdout(&plan), stderr(&plan));
    }
}

/// An apply killed (SIGKILL) in the middle of a host's chain of SHELL plugins (one round trip that runs
/// them one after another): every step it recorded ran once and is not run again; the next apply does
/// exactly the steps the state does not hold, and the plan is clean after it.
#[test]
fn an_apply_killed_inside_a_chain_leaves_the_next_exactly_the_rest() {
    if !testbed_available() {
        return;
    }
    let site = ChainSite::new();
    let mut child = site.spawn_until_four_recorded();
    child.kill().unwrap();
    child.wait().unwrap();
    // The host's shell loop stops what the connection ran once it is gone (SIGTERM, SIGKILL after 2 s).
    std::thread::sleep(Duration::from_secs(3));
    let done: Vec<Vec<String>> = (0..2).map(|i| site.recorded(i)).collect();
    assert!((4..ChainSite::STEPS).contains(&done[0].len()), "the kill landed outside the chain: {done:?}");
    for (i, recorded) in done.iter().enumerate() {
        let ran = site.ran(i);
        for step in recorded {
            assert_eq!(ran.iter().filter(|l| *l == step).count(), 1, "{step}: {ran:?}");
        }
    }
    site.next_apply_does_exactly_the_rest(&done, 1);
    eprintln!(
        "FIGURE a chain killed after {} of {} steps on {}: the next apply ran the other {}",
        done[0].len(),
        ChainSite::STEPS,
        site.ips[0],
        ChainSite::STEPS - done[0].len()
    );
}

/// Ctrl-C (SIGINT) in the middle of a chain: the step under way finishes and is recorded, no further
/// step begins on any host, the apply ends within a step's time; what ran is exactly what the state holds,
/// and the next apply does exactly the rest.
#[test]
fn ctrl_c_inside_a_chain_ends_it_after_the_step_under_way() {
    if !testbed_available() {
        return;
    }
    let site = ChainSite::new();
    let child = site.spawn_until_four_recorded();
    let interrupted = Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let took = interrupted.elapsed();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(took < Duration::from_secs(10), "{took:?}: {said}");
    // The image is a few KiB: the plan and the apply copy it from the workstation to each host, unrelayed.
    assert!(said.contains("(copied from the workstation)") && !said.contains(" relayed from "), "{said}");
    // Nothing runs on after the apply ended.
    std::thread::sleep(Duration::from_secs(1));
    let done: Vec<Vec<String>> = (0..2).map(|i| site.recorded(i)).collect();
    assert!(done[0].len() < ChainSite::STEPS, "the interrupt landed after the chain: {done:?}\n{said}");
    for (i, recorded) in done.iter().enumerate() {
        let (mut ran, mut recorded) = (site.ran(i), recorded.clone());
        ran.sort();
        recorded.sort();
        assert_eq!(ran, recorded, "host {i}: what ran is what the state holds\n{said}");
    }
    site.next_apply_does_exactly_the_rest(&done, 0);
    eprintln!(
        "FIGURE Ctrl-C inside a chain: the apply ended {:.1} s later, {} of {} steps done on {}, all recorded",
        took.as_secs_f64(),
        done[0].len(),
        ChainSite::STEPS,
        site.ips[0]
    );
}

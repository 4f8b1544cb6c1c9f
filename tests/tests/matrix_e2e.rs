//! The core journey under every login configuration users run, with canary secrets searched for
//! everywhere at the end.
//!
//! Axes and the runs that cover each value at least once (four runs instead of the product):
//!
//! | run | user | ssh login | sudo |
//! |---|---|---|---|
//! | `root-passphrase` | root | key with a passphrase | none |
//! | `root-password` | root | password | none |
//! | `sudo-asks` | ops | password | asks for the password |
//! | `sudo-nopasswd` | ops | key, and a password | NOPASSWD |
//!
//! Every host's `/bin/sh` is dash (Debian's), so every run is also the dash run.
//!
//! The journey: 2 masters + 1 node installed with HOSTNAME, a SHELL plugin at every install phase
//! (Originally included), LABEL, TAINT, a `toSecret` Config and env with a dashed name and a value with
//! quotes and spaces; a scale-up by one master and one node; two no-op applies that keep the serial; a
//! saved plan made before them applied after them; a saved plan with a change applied. The canaries:
//! the ssh (and sudo) password, the key passphrase, a `sealer login` password, the `toSecret` value, an
//! env value, and the simulated cluster's join tokens and certificate keys, searched for in every output,
//! every file sealer wrote on the workstation, the cluster's copy of the state, every file of every host
//! and every command line sampled on the machine (the hosts' processes included) during the applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sealer_tests::{repo_root, sealer_at_with_stdin, stderr, stdout, testbed_available, Testbed, SIMULATED_IMAGE};
use serde_json::Value as Json;

const CLUSTER: &str = "matrix";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Login {
    KeyWithPassphrase,
    Password,
    /// A key, with the password beside it for sudo.
    KeyAndPassword,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sudo {
    /// root: no sudo at all.
    Root,
    Asks,
    Nopasswd,
}

struct Run {
    name: &'static str,
    login: Login,
    sudo: Sudo,
}

/// The secrets of one run, each distinctive: found anywhere they do not belong, they fail the test.
struct Canaries {
    password: String,
    passphrase: String,
    registry: String,
    config: String,
    env: String,
}

impl Canaries {
    fn new(run: &str) -> Canaries {
        let tag = format!("{}{:x}", run.replace('-', ""), std::process::id());
        Canaries {
            password: format!("SshPw{tag}Q7"),
            passphrase: format!("KeyPhrase{tag}Z3"),
            registry: format!("RegPw{tag}K9"),
            config: format!("CfgSecret{tag}M4"),
            env: format!("EnvSecret{tag}W2"),
        }
    }
}

/// Everything one run touches: its hosts, its working directory and `SEALER_HOME`, and every output.
struct Journey {
    run: Run,
    tb: Testbed,
    dir: tempfile::TempDir,
    canaries: Canaries,
    key: PathBuf,
    outputs: Vec<(String, String)>,
}

impl Journey {
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn ip(&self, i: usize) -> String {
        self.tb.ips[i].to_string()
    }

    fn user(&self) -> &'static str {
        if self.run.sudo == Sudo::Root {
            "root"
        } else {
            "ops"
        }
    }

    /// `sealer ARGS` in the run's directory; its output kept for the canary search.
    fn sealer(&mut self, args: &[&str], stdin: &str) -> Output {
        let out = sealer_at_with_stdin(&self.home(), self.dir.path(), args, stdin);
        self.outputs.push((format!("sealer {}", args.join(" ")), format!("{}{}", stdout(&out), stderr(&out))));
        out
    }

    fn ok(&mut self, args: &[&str]) -> String {
        let out = self.sealer(args, "");
        assert!(
            out.status.success(),
            "[{}] sealer {args:?}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.run.name,
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn host(&self, i: usize, command: &str) -> String {
        let out = self.tb.exec(i, command);
        assert!(
            out.status.success(),
            "[{}] host {i}: {command}: {}",
            self.run.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    fn kubectl(&self, args: &str) -> String {
        self.host(
            0,
            &format!("KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/{CLUSTER}/rootfs/bin/kubectl {args}"),
        )
    }

    /// The serial of the state, from a plan without refresh.
    fn serial(&mut self) -> u64 {
        let plan: Json = serde_json::from_str(&self.ok(&["plan", "--json", "--refresh=false"])).unwrap();
        plan["prior_serial"].as_u64().unwrap()
    }

    /// The hosts made ready for the run's login: a user `ops` with its sudo rule, the key with a
    /// passphrase, the password. Done before anything is sampled (these commands carry the canaries).
    fn prepare_hosts(&self) {
        let c = &self.canaries;
        let pubkey = std::fs::read_to_string(self.key.with_extension("pub")).unwrap();
        for i in 0..self.tb.ips.len() {
            let mut setup = String::from("set -e; ");
            let home = if self.run.sudo == Sudo::Root {
                "/root".to_string()
            } else {
                let rule = if self.run.sudo == Sudo::Asks { "ALL" } else { "NOPASSWD: ALL" };
                setup += &format!(
                    "useradd -m -s /bin/bash ops; echo 'ops ALL=(ALL) {rule}' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops; "
                );
                "/home/ops".to_string()
            };
            setup += &format!(
                "mkdir -p {home}/.ssh; printf '%s\\n' '{}' > {home}/.ssh/authorized_keys; echo '{}:{}' | chpasswd; ",
                pubkey.trim(),
                self.user(),
                c.password
            );
            setup += &format!(
                "chown -R {u}:{u} {home}/.ssh; chmod 700 {home}/.ssh; chmod 600 {home}/.ssh/authorized_keys",
                u = self.user()
            );
            self.host(i, &setup);
        }
    }

    fn ssh_section(&self) -> String {
        let c = &self.canaries;
        let key = self.key.display();
        let user = self.user();
        match self.run.login {
            Login::KeyWithPassphrase => format!("    user: {user}\n    pk: {key}\n    pkPasswd: {}\n", c.passphrase),
            Login::Password => format!("    user: {user}\n    passwd: {}\n", c.password),
            Login::KeyAndPassword => format!("    user: {user}\n    pk: {key}\n    passwd: {}\n", c.password),
        }
    }

    /// The Clusterfile of `masters` and `nodes` (indexes into the testbed), with `labels` and `taints`
    /// as the LABEL and TAINT plugins' data lines.
    fn clusterfile(&self, masters: &[usize], nodes: &[usize], labels: &str, taints: &str) -> String {
        let list = |ix: &[usize]| ix.iter().map(|&i| self.ip(i)).collect::<Vec<_>>().join(", ");
        let names: String = (0..self.tb.ips.len()).map(|i| format!("    {} mx-{i}\n", self.ip(i))).collect();
        // Each install phase leaves where it ran and what env it saw (the env secret only as its digest).
        let evidence = |phase: &str| {
            format!(
                "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: at-{p}\nspec:\n  type: SHELL\n  \
                 action: {phase}\n  data: |\n    d=$(printenv docker-dir); s=$(printf %s \"$DB_TOKEN\" | sha256sum | cut -c1-16)\n    \
                 printf '%s|%s|%s|%s\\n' \"$PWD\" \"$QUOTED\" \"$d\" \"$s\" > /root/phase-{phase}\n---\n",
                p = phase.to_lowercase()
            )
        };
        let phases: String = ["Originally", "PreInstall", "PreInit", "PreJoin", "PostJoin", "PreGuest", "PostInstall"]
            .map(evidence)
            .concat();
        format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: {CLUSTER}\nspec:\n  image: {SIMULATED_IMAGE}\n  ssh:\n{ssh}  \
             env:\n    - docker-dir=/var/lib/my docker\n    - QUOTED=it's \"quoted\" and  spaced\n    - DB_TOKEN={env}\n  \
             hosts:\n    - ips: [{masters}]\n      roles: [master]\n    - ips: [{nodes}]\n      roles: [node]\n---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: names\nspec:\n  type: HOSTNAME\n  action: PreInit\n  data: |\n{names}---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: labels\nspec:\n  type: LABEL\n  action: PostInstall\n  data: |\n{labels}---\n\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: taints\nspec:\n  type: TAINT\n  action: PostInstall\n  data: |\n{taints}---\n\
             {phases}\
             apiVersion: sealer.aliyun.com/v1alpha1\nkind: Config\nmetadata:\n  name: db-secret\nspec:\n  path: etc/db-secret.yaml\n  process: toSecret\n  data: |\n    password: {config}\n",
            ssh = self.ssh_section(),
            env = self.canaries.env,
            masters = list(masters),
            nodes = list(nodes),
            config = self.canaries.config,
        )
    }

    fn write_clusterfile(&self, text: &str) {
        std::fs::write(self.dir.path().join("Clusterfile"), text).unwrap();
    }

    /// `label` lines: every node `disk=ssd`.
    fn labels(&self, nodes: &[usize]) -> String {
        nodes.iter().map(|&i| format!("    {} disk=ssd\n", self.ip(i))).collect()
    }

    fn taints(&self, nodes: &[usize]) -> String {
        nodes.iter().map(|&i| format!("    {} gpu=nvidia:NoSchedule\n", self.ip(i))).collect()
    }

    /// Every file of the image is on the host byte for byte (the workstation's store is the reference),
    /// but for what the install writes over on purpose (the kubeadm configuration).
    fn check_image_files(&self, host: usize) {
        let name = self.run.name;
        let stored = sealer_providers::image::store::ImageStore::new(&self.home()).get(SIMULATED_IMAGE).unwrap();
        let mut expected = BTreeSet::new();
        let mut stack = vec![stored.rootfs.clone()];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if meta.is_file() {
                let rel = p.strip_prefix(&stored.rootfs).unwrap().display().to_string();
                let digest = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&p).unwrap());
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                if rel != "etc/kubeadm.yml" {
                    expected.insert(format!("{hex}  ./{rel}"));
                }
            }
        }
        let list = format!(
            "cd /var/lib/sealer/{CLUSTER}/rootfs && find . -type f ! -path ./etc/kubeadm.yml -print0 | xargs -0 sha256sum"
        );
        let on_host: BTreeSet<String> = self.host(host, &list).lines().map(str::to_string).collect();
        let missing: Vec<&String> = expected.difference(&on_host).collect();
        assert!(
            expected.len() > 5 && missing.is_empty(),
            "[{name}] image files that differ on host {host}: {missing:?}"
        );
    }

    /// What the run checks on the hosts after each apply: every host in the cluster, named, every phase's
    /// evidence where it ran, the secret Config 0600.
    fn check_hosts(&self, members: &[usize], nodes: &[usize]) {
        let name = self.run.name;
        let nodes_json: Json = serde_json::from_str(&self.kubectl("get nodes -o json")).unwrap();
        let ready: BTreeSet<String> = nodes_json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = members.iter().map(|i| format!("mx-{i}")).collect();
        assert_eq!(ready, expected, "[{name}] the cluster's nodes");
        let digest = {
            let out = Command::new("sh")
                .args(["-c", "printf %s \"$V\" | sha256sum | cut -c1-16"])
                .env("V", &self.canaries.env)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let rootfs = format!("/var/lib/sealer/{CLUSTER}/rootfs");
        for &i in members {
            assert_eq!(self.host(i, "hostname"), format!("mx-{i}"), "[{name}] hostname of host {i}");
            let mut phases = vec!["Originally", "PreInstall", "PostInstall", "PreGuest"];
            if i != members[0] {
                phases.extend(["PreJoin", "PostJoin"]);
            }
            if i == members[0] {
                phases.push("PreInit");
            }
            for phase in phases {
                // Originally runs on a fresh host, in the cluster's directory; the rest in the rootfs.
                let dir = if phase == "Originally" { format!("/var/lib/sealer/{CLUSTER}") } else { rootfs.clone() };
                let seen = self.host(i, &format!("cat /root/phase-{phase}"));
                assert_eq!(
                    seen,
                    format!("{dir}|it's \"quoted\" and  spaced|/var/lib/my docker|{digest}"),
                    "[{name}] {phase} on host {i}"
                );
            }
            let mode = self.host(i, &format!("stat -c %a {rootfs}/etc/db-secret.yaml"));
            assert_eq!(mode, "600", "[{name}] the toSecret file on host {i}");
        }
        let want: BTreeSet<String> = nodes.iter().map(|i| format!("mx-{i}")).collect();
        assert_eq!(self.labelled(), want, "[{name}] labelled nodes");
        assert_eq!(self.tainted(), want, "[{name}] tainted nodes");
    }

    fn nodes(&self) -> Vec<Json> {
        let list: Json = serde_json::from_str(&self.kubectl("get nodes -o json")).unwrap();
        list["items"].as_array().unwrap().clone()
    }

    /// The nodes labelled `disk=ssd`.
    fn labelled(&self) -> BTreeSet<String> {
        let nodes = self.nodes();
        let with = nodes.iter().filter(|n| n["metadata"]["labels"]["disk"] == "ssd");
        with.map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect()
    }

    /// The nodes tainted `gpu=nvidia:NoSchedule`.
    fn tainted(&self) -> BTreeSet<String> {
        let nodes = self.nodes();
        let with = nodes.iter().filter(|n| {
            n["spec"]["taints"].as_array().is_some_and(|t| {
                t.iter().any(|t| t["key"] == "gpu" && t["value"] == "nvidia" && t["effect"] == "NoSchedule")
            })
        });
        with.map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect()
    }
}

/// Samples every process's command line on the machine (the hosts' processes are in PID namespaces
/// below this one, so they are here too) until stopped, keeping every distinct one: secrets learned only
/// at the end (the cluster's join tokens) are searched for in them too.
struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let (s, f) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut rounds = 0;
            while !s.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) else { continue };
                    f.lock().unwrap().insert(String::from_utf8_lossy(&bytes).replace('\0', " "));
                }
                rounds += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            rounds
        });
        Sampler { stop, seen, thread: Some(thread) }
    }

    /// How many rounds were sampled, and every distinct command line seen.
    fn finish(mut self) -> (usize, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.thread.take().unwrap().join().unwrap();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (rounds, seen)
    }
}

/// Files under `root` that contain any of `needles`, with the needle and the file's mode.
fn files_holding(root: &Path, needles: &[String]) -> Vec<(PathBuf, String, u32)> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
        } else if meta.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for n in needles {
                if text.contains(n.as_str()) {
                    hits.push((p.clone(), n.clone(), meta.permissions().mode() & 0o777));
                }
            }
        }
    }
    hits
}

/// Taints removed both ways and a saved plan outliving a rebuild of its image (run once: it does not
/// depend on the login).
fn day_two(j: &mut Journey) {
    let name = j.run.name;
    // The documented removal of a taint sealer added: `key:Effect-`, applied twice (the second is a no-op).
    let removal = format!("{}\n    {} gpu:NoSchedule-\n", j.taints(&[2]).trim_end(), j.ip(4));
    j.write_clusterfile(&j.clusterfile(&[0, 1, 3], &[2, 4], &j.labels(&[2]), &removal));
    j.ok(&["apply", "--auto-approve"]);
    assert_eq!(j.tainted(), BTreeSet::from(["mx-2".to_string()]), "[{name}] `gpu:NoSchedule-` removed the taint");
    j.ok(&["apply", "--auto-approve"]);
    // A whole TAINT line deleted: the node loses the taint, and the next plan is clean.
    j.write_clusterfile(&j.clusterfile(
        &[0, 1, 3],
        &[2, 4],
        &j.labels(&[2]),
        &format!("    {} other=x:NoSchedule\n", j.ip(2)),
    ));
    j.ok(&["apply", "--auto-approve"]);
    assert!(j.tainted().is_empty(), "[{name}] the deleted TAINT line left no taint");
    let out = j.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(out.status.code(), Some(0), "[{name}] clean after the deletion: {}", stdout(&out));

    // A saved plan, then the image rebuilt under the same name: the plan is refused, naming the digest.
    j.write_clusterfile(&j.clusterfile(
        &[0, 1, 3],
        &[2, 4],
        &j.labels(&[2, 4]),
        &format!("    {} other=x:NoSchedule\n", j.ip(2)),
    ));
    j.ok(&["plan", "--out", "rebuilt.plan"]);
    let context = j.dir.path().join("image");
    let copied = Command::new("cp")
        .args(["-a", repo_root().join("examples/images/simulated-k8s").to_str().unwrap(), context.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let manifest = context.join("rootfs/manifests/hello.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap() + "# rebuilt\n";
    std::fs::write(&manifest, text).unwrap();
    j.ok(&["build", "-t", SIMULATED_IMAGE, context.to_str().unwrap()]);
    let refused = j.sealer(&["apply", "rebuilt.plan"], "");
    let said = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "[{name}] a saved plan made before the rebuild: {said}");
    assert!(said.contains("saved plan is stale") && said.contains("digest: planned `sha256:"), "[{name}] {said}");
    assert_eq!(j.labelled(), BTreeSet::from(["mx-2".to_string()]), "[{name}] nothing of the refused plan ran");
    // Planned again, it installs the new image and converges.
    j.ok(&["plan", "--out", "again.plan"]);
    j.ok(&["apply", "again.plan"]);
    assert!(j.host(4, &format!("tail -1 /var/lib/sealer/{CLUSTER}/rootfs/manifests/hello.yaml")).contains("# rebuilt"));
    for host in 0..5 {
        j.check_image_files(host);
    }
    let out = j.sealer(&["plan", "--detailed-exitcode"], "");
    assert_eq!(out.status.code(), Some(0), "[{name}] clean after the new image: {}", stdout(&out));
}

fn journey(run: Run) {
    if !testbed_available() {
        return;
    }
    let name = run.name;
    let dir = tempfile::tempdir().unwrap();
    let canaries = Canaries::new(name);
    let key = dir.path().join("id_matrix");
    let phrase = if run.login == Login::KeyWithPassphrase { canaries.passphrase.as_str() } else { "" };
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", "matrix", "-N", phrase, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&keygen.stderr));
    let mut j = Journey { run, tb: Testbed::up(5), dir, canaries, key, outputs: Vec::new() };
    j.prepare_hosts();
    let context = repo_root().join("examples/images/simulated-k8s");
    j.ok(&["build", "-t", SIMULATED_IMAGE, context.to_str().unwrap()]);
    let registry = j.canaries.registry.clone();
    // A registry whose login is the canary: `sealer login` checks it there before storing it.
    let Some(served) = sealer_tests::Registry::serving(None, Some(("matrix", &registry))) else { return };
    let address = format!("127.0.0.1:{}", served.port);
    let login = j.sealer(&["login", &address, "-u", "matrix", "--password-stdin"], &format!("{registry}\n"));
    assert!(login.status.success(), "[{name}] login: {}", stderr(&login));

    let c = &j.canaries;
    let mut needles = vec![c.password.clone(), c.passphrase.clone(), c.registry.clone(), c.config.clone()];
    let sampler = Sampler::start();

    // Install: 2 masters and a node.
    j.write_clusterfile(&j.clusterfile(&[0, 1], &[2], &j.labels(&[2]), &j.taints(&[2])));
    let started = Instant::now();
    let installed = j.ok(&["apply", "--auto-approve", "--json"]);
    let install_time = started.elapsed();
    assert!(installed.lines().all(|l| serde_json::from_str::<Json>(l).is_ok()), "[{name}] --json prints JSON lines");
    j.check_hosts(&[0, 1, 2], &[2]);
    for host in 0..3 {
        j.check_image_files(host);
    }

    // Scale up by a master and a node.
    j.write_clusterfile(&j.clusterfile(&[0, 1, 3], &[2, 4], &j.labels(&[2, 4]), &j.taints(&[2, 4])));
    j.ok(&["apply", "--auto-approve"]);
    j.check_hosts(&[0, 1, 3, 2, 4], &[2, 4]);
    for host in 0..5 {
        j.check_image_files(host);
    }

    // A saved plan, then two no-op applies: the serial stays, and the saved plan still applies.
    j.ok(&["plan", "--out", "before.plan"]);
    let serial = j.serial();
    for _ in 0..2 {
        let out = j.ok(&["apply", "--auto-approve"]);
        assert!(!out.contains("Recorded the changed ssh"), "[{name}] a no-op apply reseals nothing: {out}");
    }
    assert_eq!(j.serial(), serial, "[{name}] two no-op applies leave the serial");
    j.ok(&["apply", "before.plan"]);

    // A saved plan with a change: the second node loses its label line, applied from the file.
    j.write_clusterfile(&j.clusterfile(&[0, 1, 3], &[2, 4], &j.labels(&[2]), &j.taints(&[2, 4])));
    j.ok(&["plan", "--out", "change.plan"]);
    j.ok(&["apply", "change.plan"]);
    assert_eq!(j.labelled(), BTreeSet::from(["mx-2".to_string()]), "[{name}] the deleted label line left the node");
    let plan: Json = serde_json::from_str(&j.ok(&["plan", "--json"])).unwrap();
    let pending: Vec<&Json> = plan["changes"].as_array().unwrap().iter().filter(|c| c["action"] != "no-op").collect();
    assert!(pending.is_empty(), "[{name}] converged: {pending:?}");

    if j.run.sudo == Sudo::Root && j.run.login == Login::Password {
        day_two(&mut j);
    }

    let (rounds, command_lines) = sampler.finish();
    assert!(rounds > 10, "[{name}] the command lines were sampled ({rounds} rounds)");
    assert!(
        command_lines.iter().any(|l| l.contains("sshd: ")) && command_lines.iter().any(|l| l.contains("kubeadm")),
        "[{name}] the hosts' processes were sampled"
    );

    // The simulated cluster's join credentials join the canaries.
    let record: Json =
        serde_json::from_str(&j.host(0, "ETCDCTL_API=3 etcdctl get /registry/sim/cluster --print-value-only")).unwrap();
    let tokens: Vec<String> = record["tokens"].as_object().unwrap().keys().cloned().collect();
    let keys: Vec<String> = record["certificateKeys"].as_object().unwrap().keys().cloned().collect();
    assert!(!tokens.is_empty() && !keys.is_empty(), "[{name}] the cluster has join credentials: {record}");
    let c = &j.canaries;
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(&c.config);
    needles.extend(tokens.iter().cloned());
    needles.extend(keys.iter().cloned());
    needles.push(secret_b64.clone());

    let mut found = Vec::new();
    // The env value is not a secret of sealer's (plans show env); it must only stay off command lines.
    for line in &command_lines {
        for n in needles.iter().chain([&c.env]) {
            if line.contains(n.as_str()) {
                found.push(format!("{n} on the command line `{line}`"));
            }
        }
    }
    for (command, output) in &j.outputs {
        for n in &needles {
            if output.contains(n.as_str()) {
                found.push(format!("{n} in the output of `{command}`"));
            }
        }
    }
    // The workstation: the user's own Clusterfile holds what they wrote; sealer login's file is the
    // registry password's destination.
    let clusterfile = j.dir.path().join("Clusterfile");
    let auth = j.home().join("auth.json");
    let workstation = files_holding(j.dir.path(), &needles);
    // The search sees secrets where they are meant to be: it would see them elsewhere.
    assert!(workstation.iter().any(|(p, n, _)| *p == auth && *n == c.registry), "[{name}] the login is found");
    assert!(workstation.iter().any(|(p, _, _)| *p == clusterfile), "[{name}] the Clusterfile's secret is found");
    for (path, needle, mode) in workstation {
        let intended = (path == clusterfile) || (path == auth && needle == c.registry);
        if !intended || (path == auth && mode != 0o600) {
            found.push(format!("{needle} in {} (mode {mode:o})", path.display()));
        }
    }
    // The cluster's copy of the state.
    let copy = j.kubectl("get configmap sealer-state -n kube-system -o json");
    for n in &needles {
        if copy.contains(n.as_str()) {
            found.push(format!("{n} in the cluster's copy of the state"));
        }
    }
    // Every file of every host: their own files (the overlay's upper layer) and their tmpfs mounts. The
    // intended destinations: the toSecret file (0600, base64 as a Secret has it) and the cluster's own
    // store (etcd's data, where the simulated API keeps its tokens as the real one keeps them in Secrets).
    let testbed = PathBuf::from(std::env::var("TESTBED_DIR").unwrap_or_else(|_| "/tmp/sealer-testbed".into()));
    let mut intended_on_hosts = 0;
    for i in 0..j.tb.ips.len() {
        let upper = testbed.join(j.tb.id.to_string()).join(format!("h{}", i + 1)).join("upper");
        assert!(upper.is_dir(), "{}", upper.display());
        let mut hits = files_holding(&upper, &needles);
        // The host's first process, as this machine numbers it (see testbed.sh), shows the host's mounts.
        let pid = std::fs::read_to_string(upper.with_file_name("pid")).unwrap();
        for mount in ["tmp", "run", "dev/shm"] {
            hits.extend(files_holding(&PathBuf::from(format!("/proc/{}/root/{mount}", pid.trim())), &needles));
        }
        for (path, needle, mode) in hits {
            let rel = path
                .strip_prefix(&upper)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.display().to_string());
            let secret_file =
                rel == format!("var/lib/sealer/{CLUSTER}/rootfs/etc/db-secret.yaml") && needle == secret_b64;
            let etcd = rel.starts_with("var/lib/etcd") || rel.contains("/etcd/") || rel.contains("etcd-data");
            let credential = tokens.contains(&needle) || keys.contains(&needle);
            if secret_file && mode == 0o600 {
                intended_on_hosts += 1;
                continue;
            }
            if etcd && credential {
                continue;
            }
            found.push(format!("{needle} on host {i} in /{rel} (mode {mode:o})"));
        }
    }
    assert_eq!(intended_on_hosts, 5, "[{name}] the search sees the secret file on every host");
    assert!(found.is_empty(), "[{name}] secrets where they do not belong:\n{}", found.join("\n"));
    eprintln!("MATRIX {name}: installed 3 hosts in {:.1} s; {rounds} command-line samples", install_time.as_secs_f64());
}

#[test]
fn root_with_a_key_passphrase() {
    journey(Run { name: "root-passphrase", login: Login::KeyWithPassphrase, sudo: Sudo::Root });
}

#[test]
fn root_with_a_password() {
    journey(Run { name: "root-password", login: Login::Password, sudo: Sudo::Root });
}

#[test]
fn sudo_asking_for_the_password() {
    journey(Run { name: "sudo-asks", login: Login::Password, sudo: Sudo::Asks });
}

#[test]
fn nopasswd_sudo_with_a_password_set() {
    journey(Run { name: "sudo-nopasswd", login: Login::KeyAndPassword, sudo: Sudo::Nopasswd });
}

//! The day-to-day verbs on real sshd hosts. `sealer exec`: selection by role and address, each line
//! prefixed with its host, the worst host's status as the exit code (255 for a host the command never ran
//! on), a non-root login whose sudo asks a password, and that password nowhere in what sealer printed or
//! left. `sealer join`, `sealer delete` and `sealer cert` on a cluster `sealer run` made; `sealer gen` of a
//! cluster installed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use sealer_tests::{
    ok, sealer_at as sealer, sealer_at_with_stdin, stderr, stdout, testbed_available, Testbed, TESTBED_ROOT_PASSWORD,
};

const PASSWORD: &str = "Exec-Canary-Pw-31";

/// `hosts` testbed hosts, and a directory holding a sealer home with the test cluster image built and a
/// working directory.
fn site(hosts: usize) -> (Testbed, tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tb = Testbed::up(hosts);
    let dir = tempfile::tempdir().unwrap();
    let (home, work) = (dir.path().join("home"), dir.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    sealer_tests::build_simulated_image(&home, dir.path());
    (tb, dir, home, work)
}

#[test]
fn exec_runs_by_role_and_address_with_the_worst_status_and_no_password_anywhere() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(3);
    let dir = tempfile::tempdir().unwrap();
    let (home, work) = (dir.path().join("home"), dir.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let ip = |i: usize| tb.ips[i].to_string();
    // Every host: a login `ops` whose sudo asks its password (the one the Clusterfile gives).
    for i in 0..3 {
        tb.exec_ok(
            i,
            &format!(
                "useradd -m -s /bin/sh ops && echo 'ops:{PASSWORD}' | chpasswd && \
                 echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops"
            ),
        );
    }
    let clusterfile = format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: ex\nspec:\n  image: sim/kubernetes:v1.29.14\n  \
         ssh:\n    user: ops\n    passwd: {PASSWORD}\n  hosts:\n    - ips: [{}]\n      roles: [master]\n    \
         - ips: [{}, {}]\n      roles: [node]\n",
        ip(0),
        ip(1),
        ip(2)
    );
    std::fs::write(work.join("Clusterfile"), clusterfile).unwrap();
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        let out = sealer(&home, &work, &all);
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let mut printed = String::new();
    // Watchers of every host's command lines while sealer works there: a password passed on one, even
    // for a moment, is seen.
    for i in 0..3 {
        tb.exec_ok(
            i,
            "setsid sh -c 'while :; do grep -l Exec-Canary-Pw-3[1] /proc/[0-9]*/cmdline; sleep 0.02; done \
             >> /root/seen 2>/dev/null' </dev/null >/dev/null 2>&1 &",
        );
    }
    let w = (0..3).map(|i| ip(i).len()).max().unwrap();

    // `sealer check --pre` through the same logins: each host's checks pass, then a port the API server
    // needs, taken on the master, fails them.
    let swap = std::fs::read_to_string("/proc/swaps").unwrap().lines().count() > 1;
    let checked = sealer(&home, &work, &["check", "--pre"]);
    let said = stdout(&checked);
    for i in 0..3 {
        for check in ["ssh", "root", "ports", "clock", "hostname"] {
            assert!(said.contains(&format!("ok   {:<w$}  {check:<8}", ip(i))), "{check} on {i}: {said}");
        }
    }
    assert_eq!(checked.status.code(), Some(if swap { 1 } else { 0 }), "{said}{}", stderr(&checked));
    tb.exec_ok(
        0,
        "setsid python3 -c 'import socket, time; s = socket.socket(); s.bind((\"0.0.0.0\", 6443)); s.listen(); \
         time.sleep(600)' >/dev/null 2>&1 < /dev/null & sleep 0.5",
    );
    let taken = sealer(&home, &work, &["check", "--pre"]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(stdout(&taken).contains(&format!("FAIL {:<w$}  ports     in use: 6443", ip(0))), "{}", stdout(&taken));
    assert!(stderr(&taken).contains("checks before the install failed"), "{}", stderr(&taken));
    tb.exec_ok(0, "pkill -f 'socket[.]socket'");
    printed += &(said + &stdout(&taken) + &stderr(&taken));

    // The nodes only; one of them fails with 3, the exit code; every line names its host.
    tb.exec_ok(2, "touch /tmp/fail");
    let script = "echo \"uid $(id -u) on $(cat /etc/hostname)\"; test ! -e /tmp/fail || { echo broken >&2; exit 3; }";
    let (code, out, err) = exec(&["-r", "node", "--", script]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains(&format!("{} | uid 0 on ", ip(1))) && out.contains(&format!("{} | uid 0 on ", ip(2))),
        "{out}"
    );
    assert!(!out.contains(&ip(0)), "the master was not selected: {out}");
    assert!(
        err.contains(&format!("{} | broken", ip(2))) && err.contains(&format!("{} (node): exit 3", ip(2))),
        "{err}"
    );
    assert!(err.contains(&format!("exec: 2 host(s), 1 failed: {} (exit 3)", ip(2))), "{err}");
    printed += &(out + &err);

    // By address, with arguments that look like flags.
    let (code, out, err) = exec(&["--ips", &ip(0), "ls", "-d", "/"]);
    assert_eq!((code, out.as_str()), (Some(0), format!("{} | /\n", ip(0)).as_str()), "{err}");
    assert!(err.contains("exec: 1 host(s), all succeeded"), "{err}");
    printed += &(out + &err);

    // A command that does not parse ends at once with the shell's own message and status.
    let started = std::time::Instant::now();
    let (code, out, err) = exec(&["--ips", &ip(0), "--", "echo )"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("syntax error") && started.elapsed() < std::time::Duration::from_secs(20), "{err}");

    // A host whose sshd is gone: 255, named; the others still run.
    tb.stop_sshd(1);
    let (code, out, err) = exec(&["-r", "node", "--", "true"]);
    assert_eq!(code, Some(255), "{out}{err}");
    assert!(
        err.contains(&format!("{} (node): did not run: ", ip(1))) && err.contains(&format!("{} (did not run)", ip(1))),
        "{err}"
    );
    assert!(err.contains(&format!("exec: 2 host(s), 1 failed: {} (did not run)", ip(1))), "{err}");
    printed += &(out + &err);

    // Mistakes, sealer's own (255, as ssh's): an address that is not a host of the cluster, a selection
    // of nobody, a cluster name that is not one; clap's usage errors (2): no command.
    let (code, _, err) = exec(&["--ips", "10.9.9.9", "true"]);
    assert_eq!(code, Some(255));
    assert!(err.contains("not hosts of cluster `ex`: 10.9.9.9"), "{err}");
    let (code, _, err) = exec(&["-r", "master"]);
    assert_eq!(code, Some(2), "clap refuses a missing command: {err}");
    let (code, _, err) = exec(&["-r", "master", "--ips", &ip(1), "true"]);
    assert_eq!(code, Some(255));
    assert!(err.contains("no host of cluster `ex` matches the selection"), "{err}");
    let (code, _, err) = exec(&["-c", "../ex", "true"]);
    assert_eq!(code, Some(255));
    assert!(err.contains("cluster name `../ex`"), "{err}");
    printed += &err;

    // The sudo password is in nothing sealer printed, in no file it left, on no host's command line.
    assert!(!printed.contains(PASSWORD), "{printed}");
    let written: Vec<_> = [home.clone(), work.join(".sealer")].into_iter().filter(|d| d.exists()).collect();
    if !written.is_empty() {
        let left = std::process::Command::new("grep").arg("-rl").arg(PASSWORD).args(&written).output().unwrap();
        assert_eq!(
            left.status.code(),
            Some(1),
            "grep found the password, or failed: {}{}",
            stdout(&left),
            stderr(&left)
        );
    }
    for i in 0..3 {
        tb.exec_ok(i, "pkill -f 'Exec-Canary-Pw-3[[]1]' || true");
        let seen = tb.exec_ok(i, "cat /root/seen");
        assert_eq!(seen.trim(), "", "host {i}: a command line held the password");
    }
}

/// `sealer join` adds a node to a cluster `sealer run` made (its kept Clusterfile gains it), `sealer delete`
/// removes it again (the node leaves the API, its host is reset), refuses what it cannot do, `sealer cert`
/// adds names to the API server's certificate, and `--all` tears the cluster down.
#[test]
fn join_then_delete_a_node_then_delete_all() {
    if !testbed_available() {
        return;
    }
    let (tb, _dir, home, work) = site(2);
    let (m, n, key) = (tb.ips[0].to_string(), tb.ips[1].to_string(), tb.key.display().to_string());
    let run = |args: &[&str]| sealer(&home, &work, args);
    let kept = work.join(".sealer/my-cluster/Clusterfile");
    let nodes = || {
        let out = tb.exec_ok(
            0,
            "KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/my-cluster/rootfs/bin/kubectl get nodes -o json",
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut ips: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["status"]["addresses"][0]["address"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    ok(&run(&["run", sealer_tests::SIMULATED_IMAGE, "-m", &m, "--pk", &key, "--auto-approve", "--no-progress"]));
    assert_eq!(nodes(), std::slice::from_ref(&m));
    // `sealer check` after the install (the default once the state has the cluster): the master a Ready node.
    let healthy = ok(&run(&["check", "-f", kept.to_str().unwrap()]));
    assert!(healthy.contains(&format!("ok   {m}  node      Ready")), "{healthy}");

    let nothing = run(&["join", "--auto-approve"]);
    assert!(stderr(&nothing).contains("`sealer join` needs the hosts to add"), "{}", stderr(&nothing));
    let joined = ok(&run(&["join", "-n", &n, "--pk", &key, "--auto-approve", "--no-progress"]));
    assert!(joined.contains("Apply complete!"), "{joined}");
    assert_eq!(nodes(), {
        let mut v = vec![m.clone(), n.clone()];
        v.sort();
        v
    });
    assert!(std::fs::read_to_string(&kept).unwrap().contains(&n), "the kept Clusterfile lists the node");
    let again = ok(&run(&["join", "-n", &n, "--auto-approve", "--no-progress"]));
    assert!(again.contains("No changes."), "{again}");

    // What delete refuses, each naming why; nothing is applied and the kept Clusterfile stays.
    let before = std::fs::read_to_string(&kept).unwrap();
    for (args, why) in [
        (vec!["delete", "-m", n.as_str()], format!("{n} is a node of cluster `my-cluster`, not a master")),
        (vec!["delete", "-n", "10.9.9.9"], "10.9.9.9 is not a host of cluster `my-cluster`".to_string()),
        (vec!["delete", "-m", m.as_str()], "without a master: `sealer delete --all` deletes the cluster".to_string()),
        (vec!["delete"], "needs the hosts to remove".to_string()),
    ] {
        let mut args = args;
        args.push("--auto-approve");
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(&why), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), before);

    let deleted = ok(&run(&["delete", "-n", &n, "--auto-approve", "--no-progress"]));
    assert!(deleted.contains("Apply complete!") && deleted.contains("destroyed"), "{deleted}");
    assert_eq!(nodes(), std::slice::from_ref(&m));
    assert!(!std::fs::read_to_string(&kept).unwrap().contains(&n), "the kept Clusterfile lost the node");
    let history = tb.exec_ok(1, "cat /var/log/sim-k8s/kubeadm-history.log");
    assert!(history.trim_end().ends_with("reset completed"), "the node was reset: {history}");

    // `sealer cert --alt-names`: the names reach the certificate the API serves, and the kept Clusterfile
    // (so the next plan is clean).
    let bad = run(&["cert", "--alt-names", "api.example.test,not a name", "--auto-approve"]);
    assert!(stderr(&bad).contains("`not a name` is neither an IP address nor a DNS name"), "{}", stderr(&bad));
    let cert = ok(&run(&["cert", "--alt-names", "10.77.0.9,api.example.test", "--auto-approve", "--no-progress"]));
    assert!(cert.contains("Apply complete!"), "{cert}");
    let served = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo | openssl s_client -connect {m}:6443 2>/dev/null | openssl x509 -noout -ext subjectAltName"))
        .output()
        .unwrap();
    let served = stdout(&served);
    assert!(served.contains("IP Address:10.77.0.9") && served.contains("DNS:api.example.test"), "{served}");
    assert!(served.contains(&format!("IP Address:{m}")), "the master's own address stays: {served}");
    assert!(std::fs::read_to_string(&kept).unwrap().contains("api.example.test"), "recorded in the Clusterfile");
    let plan = run(&["plan", "-f", kept.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    assert_eq!(nodes(), std::slice::from_ref(&m), "kubectl still trusts the served certificate");

    ok(&run(&["delete", "--all", "--auto-approve", "--no-progress"]));
    let listed = run(&["state", "list", "--cluster", "my-cluster"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed).trim(), "", "the state holds nothing");
    assert!(tb.exec_ok(0, "cat /var/log/sim-k8s/kubeadm-history.log").trim_end().ends_with("reset completed"));
}

/// `sealer gen` takes over a cluster an operator installed by hand (binaries copied with ssh, `kubeadm
/// init` and `kubeadm join` run on the hosts): the flags that misdeclare it are refused with every reason
/// and nothing written; the takeover imports both members without running kubeadm on them, delivers what
/// sealer adds, and leaves a clean plan; `sealer join` then grows the cluster.
#[test]
fn gen_takes_over_a_cluster_installed_by_hand_and_its_next_plan_is_clean() {
    if !testbed_available() {
        return;
    }
    let (tb, dir, home, work) = site(3);
    let (m, n, extra, key) =
        (tb.ips[0].to_string(), tb.ips[1].to_string(), tb.ips[2].to_string(), tb.key.display().to_string());
    let run = |args: &[&str]| sealer(&home, &work, args);

    // By hand: the distribution's files copied over ssh, its runtime started, kubeadm init on the master
    // (with a pod network and a certificate name of the operator's), kubeadm join on the node.
    let files = dir.path().join("k8s");
    let rootfs = sealer_tests::repo_root().join("examples/images/simulated-k8s/rootfs");
    std::fs::create_dir_all(&files).unwrap();
    let copy = format!(
        "set -e; cp -a {}/. {f}/; cp /usr/bin/etcd /usr/bin/etcdctl {f}/bin/; \
         cp /usr/lib/google-cloud-sdk/bin/kubectl.1.29 {f}/bin/kubectl",
        rootfs.display(),
        f = files.display()
    );
    assert!(std::process::Command::new("sh").arg("-c").arg(&copy).status().unwrap().success());
    for ip in [&m, &n] {
        let ship = format!(
            "tar -C {} -cf - . | ssh -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o LogLevel=ERROR root@{ip} 'mkdir -p /opt/k8s && tar -C /opt/k8s -xf - && sh /opt/k8s/scripts/init.sh'",
            files.display()
        );
        let out = std::process::Command::new("sh").arg("-c").arg(&ship).output().unwrap();
        assert!(out.status.success(), "{ip}: {}", stderr(&out));
    }
    for i in 0..2 {
        // On the PATH (the simulation finds its modules beside the real path of its tools).
        tb.exec_ok(
            i,
            "for b in /opt/k8s/bin/*; do printf '#!/bin/sh\\nexec %s \"$@\"\\n' \"$b\" > /usr/local/bin/${b##*/}; \
             chmod 755 /usr/local/bin/${b##*/}; done",
        );
    }
    let config = format!(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n\
         localAPIEndpoint: {{advertiseAddress: {m}, bindPort: 6443}}\n\
         nodeRegistration: {{criSocket: unix:///run/sealer-sim-containerd/containerd.sock}}\n---\n\
         apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: v1.29.14\n\
         controlPlaneEndpoint: apiserver.cluster.local:6443\n\
         networking: {{podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12}}\n\
         apiServer: {{certSANs: [hand.example.test]}}\n---\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n"
    );
    tb.exec_ok(
        0,
        &format!(
            "echo '{m} apiserver.cluster.local' >> /etc/hosts && printf '%s' '{config}' > /root/kubeadm.yaml && \
             kubeadm init --config /root/kubeadm.yaml"
        ),
    );
    let join = tb.exec_ok(0, "kubeadm token create --print-join-command");
    tb.exec_ok(
        1,
        &format!(
            "echo '{m} apiserver.cluster.local' >> /etc/hosts && \
             {} --cri-socket unix:///run/sealer-sim-containerd/containerd.sock",
            join.trim()
        ),
    );
    // What kubeadm made and ran on each member, as it left it: any init, join, reset or reconfiguration
    // (phases included) changes it.
    let members = || {
        let files = "cat /var/log/sim-k8s/kubeadm-history.log; md5sum /etc/kubernetes/*.conf \
                     /etc/kubernetes/pki/*.crt /etc/kubernetes/manifests/* 2>/dev/null; true";
        let config = tb.exec_ok(
            0,
            "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get configmap -n kube-system kubeadm-config \
             -o jsonpath='{.data.ClusterConfiguration}'",
        );
        [tb.exec_ok(0, files), tb.exec_ok(1, files), config]
    };
    let by_hand = members();
    let kept = work.join(".sealer/my-cluster/Clusterfile");
    let gen = |masters: &str, nodes: Option<&str>| -> Vec<String> {
        let mut args = vec!["gen", "--image", sealer_tests::SIMULATED_IMAGE, "-m", masters];
        if let Some(nodes) = nodes {
            args.extend(["-n", nodes]);
        }
        args.extend(["-p", TESTBED_ROOT_PASSWORD, "--no-progress"]);
        args.into_iter().map(str::to_string).collect()
    };
    let gen_approved = |masters: &str, nodes: Option<&str>| {
        let mut args = gen(masters, nodes);
        args.push("--auto-approve".into());
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Misdeclared: every reason at once, and neither a Clusterfile nor a state written.
    let wrong = gen_approved(&m, Some(&extra));
    assert_eq!(wrong.status.code(), Some(1), "{}", stdout(&wrong));
    let why = stderr(&wrong);
    for reason in [
        format!("{extra} is not a node of the cluster"),
        format!("({n}) is not in --masters or --nodes: a cluster is taken over whole"),
    ] {
        assert!(why.contains(&reason), "{reason}: {why}");
    }
    let worker_first = gen_approved(&n, Some(&m));
    assert_eq!(worker_first.status.code(), Some(1));
    let worker_first = stderr(&worker_first);
    let no_master = format!("through {n}, the first of --masters: `{n}` is no control-plane member");
    assert!(worker_first.contains(&no_master), "{worker_first}");
    assert!(!kept.exists(), "nothing written");
    assert_eq!(stdout(&run(&["state", "list", "--cluster", "my-cluster"])).trim(), "");
    // Declined at the confirmation: the import is taken back, and gen may run again.
    let declined =
        sealer_at_with_stdin(&home, &work, &gen(&m, Some(&n)).iter().map(String::as_str).collect::<Vec<_>>(), "no\n");
    assert_ne!(declined.status.code(), Some(0), "{}", stdout(&declined));
    assert!(stdout(&declined).contains("the import is taken back"), "{}", stdout(&declined));
    assert!(!kept.exists(), "the Clusterfile is taken back");
    assert_eq!(stdout(&run(&["state", "list", "--cluster", "my-cluster"])).trim(), "", "the records are taken back");

    let taken = ok(&gen_approved(&m, Some(&n)));
    let imported = format!("(nothing on its hosts changed): kubeadm-init.{m}, kubeadm-join.{n}");
    assert!(taken.contains(&imported), "{taken}");
    assert!(taken.contains("Apply complete!"), "{taken}");
    assert_eq!(members(), by_hand, "kubeadm never ran on the members");
    let clusterfile = std::fs::read_to_string(&kept).unwrap();
    for setting in ["podSubnet: 10.244.0.0/16", "hand.example.test", "Written by `sealer gen`"] {
        assert!(clusterfile.contains(setting), "{setting}: {clusterfile}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the Clusterfile holds the ssh password");
    let leaked = Command::new("grep").args(["-rl", TESTBED_ROOT_PASSWORD]).arg(&work).output().unwrap();
    assert_eq!(stdout(&leaked).trim(), kept.display().to_string(), "the password is in the Clusterfile only");
    assert!(!taken.contains(TESTBED_ROOT_PASSWORD));
    let registry_name = format!("{m} sea.hub");
    assert!(
        tb.exec_ok(1, "cat /etc/hosts").lines().any(|l| l.trim() == registry_name),
        "the node pulls through the cluster's registry"
    );
    let plan = run(&["plan", "-f", kept.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}{}", stdout(&plan), stderr(&plan));
    let again = gen_approved(&m, Some(&n));
    assert!(stderr(&again).contains("already in the state"), "{}", stderr(&again));

    // The cluster taken over grows as any other: a node joins with sealer.
    let joined = ok(&run(&["join", "-n", &extra, "--auto-approve", "--no-progress"]));
    assert!(joined.contains("Apply complete!"), "{joined}");
    let nodes = tb.exec_ok(0, "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get nodes -o name");
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    assert_eq!(members(), by_hand, "the members were left as they were");
    let plan = run(&["plan", "-f", kept.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}{}", stdout(&plan), stderr(&plan));
}

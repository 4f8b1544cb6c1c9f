//! `sealer run` end to end on real sshd hosts, as sealer's guides start: a cluster image carrying its own
//! plugins, a scale-up by flags, and an application image whose container images are served from inside
//! the cluster (the simulated kubelet pulls them through the hosts' registry mirrors, for real, over HTTP).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use sealer_tests::{ok, sealer_at as sealer, stderr, stdout, testbed_available, Registry, Testbed};
use serde_json::Value as Json;

const BASE: &str = sealer_tests::SIMULATED_IMAGE;
const IMAGE: &str = "sim/kubernetes-iscsi:v1.22.15";
const KUBECTL: &str = "/var/lib/sealer/my-cluster/rootfs/bin/kubectl";
const REGISTRY_PASSWORD: &str = "Reg-e2e-Pw-5521";

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn exec(tb: &Testbed, i: usize, command: &str) -> String {
    let out = tb.exec(i, command);
    assert!(out.status.success(), "host {i}: {command}: {}", stderr(&out));
    stdout(&out)
}

fn pods(tb: &Testbed) -> Vec<Json> {
    let v: Json = serde_json::from_str(&exec(tb, 0, &format!("{KUBECTL} get pods -A -o json"))).unwrap();
    v["items"].as_array().unwrap().clone()
}

/// Waits until `done` holds for the cluster's pods (the kubelets pull every 2 s).
fn wait_pods(tb: &Testbed, what: &str, done: impl Fn(&[Json]) -> bool) -> Vec<Json> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pods = pods(tb);
        if done(&pods) {
            return pods;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {pods:#?}");
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

fn named<'a>(pods: &'a [Json], prefix: &str) -> Vec<&'a Json> {
    pods.iter().filter(|p| p["metadata"]["name"].as_str().unwrap().starts_with(prefix)).collect()
}

#[test]
fn run_makes_a_cluster_with_the_images_plugins_scales_it_and_delivers_an_air_gapped_application() {
    if !testbed_available() {
        return;
    }
    // A docker-registry on this machine: the "internet" the application's images come from.
    let Some(source) = Registry::start() else { return };
    let tb = Testbed::up(4);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let ip = |i: usize| tb.ips[i].to_string();
    let key = tb.key.display().to_string();

    // The cluster image of the guide: FROM the Kubernetes image, `COPY shell.yaml plugin`.
    sealer_tests::build_simulated_image(&home, dir.path());
    let iscsi = dir.path().join("iscsi");
    let plugin = |name: &str, action: &str, on: &str, file: &str| {
        format!(
            "apiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  type: SHELL\n  \
             action: {action}\n  on: {on}\n  data: |\n    echo \"$(hostname)\" > /root/{file}\n"
        )
    };
    let shell = format!(
        "{}---\n{}",
        plugin("iscsi-masters", "PostInstall", "master", "from-image-masters"),
        plugin("iscsi-all", "PreInit", "\"\"", "from-image-all")
    );
    // Its registry is configured the sealer way: another port, and a login (htpasswd).
    let registry_config =
        format!("domain: sea.hub\nport: \"5001\"\nusername: e2e-user\npassword: {REGISTRY_PASSWORD}\n");
    write(
        &iscsi,
        &[
            ("shell.yaml", &shell),
            ("registry_config.yaml", &registry_config),
            ("Kubefile", &format!("FROM {BASE}\nCOPY shell.yaml plugin\nCOPY registry_config.yaml etc/\n")),
        ],
    );
    ok(&sealer(&home, dir.path(), &["build", "-m", "lite", "-t", IMAGE, iscsi.to_str().unwrap()]));

    // `sealer run IMAGE -m IP1 -n IP2,IP3` from an empty directory.
    let nodes = format!("{},{}", ip(1), ip(2));
    let run = ["run", IMAGE, "-m", &ip(0), "-n", &nodes, "--pk", &key, "--auto-approve", "--no-progress"];
    let out = ok(&sealer(&home, &work, &run));
    assert!(out.contains(&format!("plugin from the image `{IMAGE}`")), "{out}");
    assert!(out.contains("Apply complete!"), "{out}");
    for i in 0..3 {
        assert!(tb.exec(i, "test -s /root/from-image-all").status.success(), "PreInit plugin on host {i}");
        let on_master = tb.exec(i, "test -s /root/from-image-masters").status.success();
        assert_eq!(on_master, i == 0, "PostInstall plugin on masters only (host {i})");
    }
    let kept = work.join(".sealer/my-cluster/Clusterfile");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(text.contains("apiVersion: sealer.cloud/v2") && text.contains(&key), "{text}");
    let plan = sealer(&home, &work, &["plan", "-f", ".sealer/my-cluster/Clusterfile", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "the kept Clusterfile is what was applied: {}", stdout(&plan));
    assert!(out.contains("username = \"e2e-user\"") && out.contains("port = 5001"), "{out}");
    // The containerd mirror configuration is on every host, with the registry's login (0600).
    let toml = exec(
        &tb,
        1,
        "stat -c %a /etc/containerd/certs.d/docker.io/hosts.toml; cat /etc/containerd/certs.d/docker.io/hosts.toml",
    );
    assert!(toml.starts_with("600\n") && toml.contains("[host.\"http://sea.hub:5001\"]"), "{toml}");
    assert!(toml.contains("Authorization = \"Basic "), "{toml}");
    // Without the login, the cluster's registry refuses.
    let anonymous = exec(&tb, 1, "python3 -c 'import urllib.request as u\ntry: u.urlopen(\"http://sea.hub:5001/v2/\")\nexcept Exception as e: print(e)'");
    assert!(anonymous.contains("401"), "{anonymous}");

    // Again: nothing changes.
    let again = ok(&sealer(&home, &work, &run));
    assert!(again.contains("No changes."), "{again}");

    // `-n IP2-IP4`: only IP4 joins.
    let range = format!("{}-{}", ip(1), ip(3));
    let grown =
        ok(&sealer(&home, &work, &["run", IMAGE, "-n", &range, "--pk", &key, "--auto-approve", "--no-progress"]));
    assert!(grown.contains(&format!("host.{} will be created", ip(3))), "{grown}");
    for i in 0..3 {
        assert!(!grown.contains(&format!("host.{} will be created", ip(i))), "{grown}");
    }
    assert!(grown.contains("Apply complete!"), "{grown}");
    assert!(tb.exec(3, "test -s /root/from-image-all").status.success());
    let refused = sealer(&home, &work, &["run", IMAGE, "-m", &ip(1), "--auto-approve"]);
    assert!(stderr(&refused).contains("is a node of the cluster, not a master"), "{}", stderr(&refused));

    // An application image, FROM scratch: its container image is collected through a mirror of docker.io.
    let web = "docker.io/library/web:1.0";
    let layer = dir.path().join("layer");
    write(&layer, &[("f", "a container image"), ("Kubefile", "FROM scratch\nCOPY f f\n")]);
    let upstream = format!("127.0.0.1:{}/library/web:1.0", source.port);
    ok(&sealer(&home, dir.path(), &["build", "-t", &upstream, layer.to_str().unwrap()]));
    ok(&sealer(&home, dir.path(), &["push", &upstream]));
    let app = dir.path().join("app");
    let deployment = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  template:\n    \
             spec:\n      containers:\n        - name: web\n          image: {web}\n"
        )
    };
    write(
        &app,
        &[
            ("manifests/app.yaml", &deployment(2)),
            // Outside manifests/: the lite build does not collect it, so the cluster's registry lacks it.
            (
                "extra/missing.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n    - name: m\n      image: docker.io/library/not-carried:1\n",
            ),
            (
                "Kubefile",
                "FROM scratch\nCOPY manifests manifests\nCOPY extra extra\nLABEL sealer.io/clean=\"kubectl delete -f manifests/app.yaml\"\n\
                 CMD kubectl apply -f manifests/app.yaml\nCMD kubectl apply -f extra/missing.yaml\n",
            ),
        ],
    );
    let mirror = format!("docker.io=http://127.0.0.1:{}", source.port);
    let build_app = || {
        ok(&sealer(
            &home,
            dir.path(),
            &["build", "-t", "web-app:1", app.to_str().unwrap(), "--registry-mirror", &mirror],
        ))
    };
    assert!(build_app().contains(&format!("image {web}")));
    let delivered = ok(&sealer(&home, &work, &["run", "web-app:1", "--auto-approve", "--no-progress"]));
    assert!(delivered.contains("app.web-app will be created") && delivered.contains("Apply complete!"), "{delivered}");
    assert!(delivered.contains("Application `web-app:1` joins `spec.apps`"), "{delivered}");
    assert!(std::fs::read_to_string(&kept).unwrap().contains("web-app:1"), "the application joined spec.apps");
    let running = wait_pods(&tb, "web Running on nodes, missing in ErrImagePull", |pods| {
        let web = named(pods, "web-");
        web.len() == 2
            && web.iter().all(|p| p["status"]["phase"] == "Running")
            && named(pods, "missing").iter().any(|p| p["status"]["reason"] == "ErrImagePull")
    });
    let log = exec(&tb, 0, "cat /var/log/sealer-registry.log");
    for pod in named(&running, "web-") {
        let host_ip = pod["status"]["hostIP"].as_str().unwrap();
        assert_ne!(host_ip, ip(0), "the master is tainted: pods run on nodes");
        let served = log
            .lines()
            .any(|l| l.contains(host_ip) && l.contains("/v2/library/web/manifests/1.0") && l.contains(" 200 "));
        assert!(served, "the registry served {host_ip}'s pull: {log}");
    }
    let missing = &named(&running, "missing")[0]["status"]["message"];
    assert!(missing.as_str().unwrap().contains("sea.hub:5001"), "{missing}");
    let wide = exec(&tb, 0, &format!("{KUBECTL} get pods -o wide"));
    assert!(wide.contains("ErrImagePull") && wide.contains("Running"), "{wide}");

    // Running it again changes nothing; a rebuilt application runs again.
    let same = ok(&sealer(&home, &work, &["run", "web-app:1", "--auto-approve", "--no-progress"]));
    assert!(same.contains("No changes."), "{same}");
    assert!(same.contains("Application `web-app:1` is already in `spec.apps`") && !same.contains("joins"), "{same}");
    write(&app, &[("manifests/app.yaml", &deployment(3))]);
    build_app();
    let rerun = ok(&sealer(&home, &work, &["run", "web-app:1", "--auto-approve", "--no-progress"]));
    assert!(rerun.contains("app.web-app will be updated in-place"), "{rerun}");
    wait_pods(&tb, "3 web pods Running", |pods| {
        let web = named(pods, "web-");
        web.len() == 3 && web.iter().all(|p| p["status"]["phase"] == "Running")
    });

    // Dropped from `spec.apps`: its cleanup label runs (the Deployment and its pods go), then its files.
    let text = std::fs::read_to_string(&kept).unwrap();
    let without: String =
        text.lines().filter(|l| l.trim() != "apps:" && !l.contains("web-app:1")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&kept, without).unwrap();
    let dropped = ok(&sealer(
        &home,
        &work,
        &["apply", "-f", ".sealer/my-cluster/Clusterfile", "--auto-approve", "--no-progress"],
    ));
    assert!(dropped.contains("app.web-app will be destroyed"), "{dropped}");
    assert!(named(&pods(&tb), "web-").is_empty(), "the cleanup line deleted the Deployment's pods");
    for i in 0..2 {
        assert!(!tb.exec(i, "test -e /var/lib/sealer/my-cluster/apps/web-app").status.success(), "host {i}");
    }

    // The registry's password is in no output, state or log.
    let mut shown = vec![std::fs::read(work.join(".sealer/state.db")).unwrap()];
    shown.extend([&out, &grown, &delivered, &rerun].map(|o| o.as_bytes().to_vec()));
    for entry in walk(&work.join(".sealer/logs")) {
        shown.push(std::fs::read(entry).unwrap());
    }
    for bytes in shown {
        assert!(!String::from_utf8_lossy(&bytes).contains(REGISTRY_PASSWORD), "the registry password leaked");
    }

    // Destroyed: the mirror configuration goes with the cluster.
    ok(&sealer(&home, &work, &["destroy", "-f", ".sealer/my-cluster/Clusterfile", "--auto-approve", "--no-progress"]));
    for i in 0..4 {
        assert!(!tb.exec(i, "test -e /etc/containerd/certs.d/docker.io").status.success(), "host {i}");
    }
}

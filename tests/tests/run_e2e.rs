//! `sealer run` end to end on real sshd hosts, as sealer's guides start: a cluster image carrying its own
//! plugins, a scale-up by flags, and an application image whose container images are served from inside
//! the cluster, offline: every host runs a real containerd (the test image's scripts/init.sh), which pulls
//! the pods' `docker.io/...` images through the hosts' registry mirrors and runs them as real containers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use sealer_tests::{ok, sealer_at as sealer, stderr, stdout, testbed_available, Registry, Testbed};
use serde_json::Value as Json;

const BASE: &str = sealer_tests::SIMULATED_IMAGE;
const IMAGE: &str = "sim/kubernetes-iscsi:v1.29.14";
const KUBECTL: &str = "KUBECONFIG=/etc/kubernetes/admin.conf /var/lib/sealer/my-cluster/rootfs/bin/kubectl";
const REGISTRY_PASSWORD: &str = "Reg-e2e-Pw-5521";
/// The host port the application's web server listens on.
const WEB_PORT: u16 = 8080;
const CTR: &str = sealer_tests::SIMULATED_CTR;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn exec(tb: &Testbed, i: usize, command: &str) -> String {
    tb.exec_ok(i, command)
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

/// The Kubefile of the test's cluster image: the guide's (`FROM` the Kubernetes image, `COPY shell.yaml
/// plugin`), a registry configuration, a template rendered with the image's ENV `e2e_version`, and `more`.
fn cluster_kubefile(version: &str, more: &str) -> String {
    format!(
        "FROM {BASE}\nCOPY shell.yaml plugin\nCOPY registry_config.yaml etc/\nCOPY e2e.conf.tmpl etc/\n\
         ENV e2e_version={version}\n{more}"
    )
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The reason its first container waits, if it does (ErrImagePull, CrashLoopBackOff, ...).
fn waiting(pod: &Json) -> Option<String> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find_map(|c| c["state"]["waiting"]["reason"].as_str().map(String::from))
}

fn restarts(pod: &Json) -> u64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |cs| cs.iter().map(|c| c["restartCount"].as_u64().unwrap()).sum())
}

/// GET / of the web server at `host:port`, as `curl` from the workstation: the body.
fn http_get(host: &str, port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((host, port)).unwrap_or_else(|e| panic!("{host}:{port}: {e}"));
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
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
            ("e2e.conf.tmpl", "version={{ .e2e_version }}\n"),
            ("Kubefile", &cluster_kubefile("1", "")),
        ],
    );
    let build_cluster_image =
        || ok(&sealer(&home, dir.path(), &["build", "-m", "lite", "-t", IMAGE, iscsi.to_str().unwrap()]));
    build_cluster_image();

    // An application image, FROM scratch: its container image (a real one: busybox's httpd serving a
    // page) is collected through a mirror of docker.io from the "internet" registry.
    let web = "docker.io/library/web:1.0";
    let page = "served by a container of the cluster\n";
    let push_web = |source: &Registry| {
        sealer_tests::busybox_image(&format!("127.0.0.1:{}/library/web:1.0", source.port), page);
        format!("docker.io=http://127.0.0.1:{}", source.port)
    };
    let mirror = push_web(&source);
    // Seed 001's dashboard journey in the same image: a RUN downloads `recommended.yaml` (from a server on
    // this machine standing for the internet; no host can reach it) and a CMD applies it; the lite build
    // carries its image.
    let dashboard = "docker.io/kubernetesui/dashboard:v2.0.0";
    let push_dashboard = |source: &Registry| {
        sealer_tests::busybox_image(&format!("127.0.0.1:{}/kubernetesui/dashboard:v2.0.0", source.port), page)
    };
    push_dashboard(&source);
    let recommended = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dashboard\nspec:\n  replicas: 1\n  selector:\n    \
         matchLabels: {{app: dashboard}}\n  template:\n    metadata:\n      labels: {{app: dashboard}}\n    \
         spec:\n      containers:\n        - name: dashboard\n          image: {dashboard}\n          \
         command: [sleep, \"3600\"]\n"
    );
    let http = sealer_tests::serve_http(recommended);
    let app = dir.path().join("app");
    let deployment = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    \
             matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    \
             spec:\n      hostNetwork: true\n      containers:\n        - name: web\n          image: {web}\n          \
             command: [httpd, -f, -p, \"{WEB_PORT}\", -h, /www]\n          ports:\n            - containerPort: {WEB_PORT}\n              \
             hostPort: {WEB_PORT}\n"
        )
    };
    write(
        &app,
        &[
            ("manifests/app.yaml", &deployment(2)),
            // Applied from stdin, out of the lite build's sight (it reads what CMDs name with `-f FILE` and
            // YAML files): the cluster's registry lacks the first's image; the second's container exits 1.
            (
                "extra/others.txt",
                &format!(
                    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n    - name: m\n      \
                     image: docker.io/library/not-carried:1\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: crash\n\
                     spec:\n  containers:\n    - name: c\n      image: {web}\n      command: [sh, -c, \"echo crashing; exit 1\"]\n"
                ),
            ),
            (
                "Kubefile",
                &format!(
                    "FROM scratch\nCOPY manifests manifests\nCOPY extra extra\n\
                     RUN wget -q http://127.0.0.1:{http}/recommended.yaml\n\
                     LABEL sealer.io/clean=\"kubectl delete -f manifests/app.yaml\"\n\
                     LABEL sealer.io/clean.others=\"kubectl delete -f - < extra/others.txt\"\n\
                     LABEL sealer.io/clean.dashboard=\"kubectl delete -f recommended.yaml\"\n\
                     CMD kubectl apply -f manifests/app.yaml\nCMD kubectl apply -f - < extra/others.txt\n\
                     CMD kubectl apply -f recommended.yaml\n"
                ),
            ),
        ],
    );
    let build_app = |mirror: &str| {
        ok(&sealer(
            &home,
            dir.path(),
            &["build", "-t", "web-app:1", app.to_str().unwrap(), "--registry-mirror", mirror],
        ))
    };
    let built = build_app(&mirror);
    assert!(built.contains(&format!("image {web}")) && built.contains(&format!("image {dashboard}")), "{built}");
    // The "internet" is gone before the cluster is installed: everything comes from the cluster's registry.
    drop(source);

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
    // Every host runs the image's containerd, and no route leads beyond the cluster's network.
    for i in 0..3 {
        let runtime = exec(&tb, i, &format!("{CTR} version | grep -c Version; ip route"));
        assert!(runtime.starts_with("2\n"), "containerd answers on host {i}: {runtime}");
        // A node also routes the API's virtual IP (its balancer rewrites it to a master): on the same link.
        let routes: Vec<&str> =
            runtime.lines().skip(1).map(str::trim_end).filter(|r| *r != "10.103.97.2 dev eth0 scope link").collect();
        assert_eq!(
            routes,
            [format!("10.251.{}.0/24 dev eth0 proto kernel scope link src {}", tb.id, ip(i))],
            "host {i}"
        );
        let out = tb.exec(i, "ip route get 1.1.1.1");
        assert!(!out.status.success() && stderr(&out).contains("unreachable"), "host {i}: {}", stderr(&out));
    }
    // Without the login, the cluster's registry refuses containerd.
    let anonymous = tb.exec(1, &format!("{CTR} images pull --plain-http sea.hub:5001/library/web:1.0"));
    assert!(!anonymous.status.success() && stderr(&anonymous).contains("401 Unauthorized"), "{}", stderr(&anonymous));

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

    let delivered = ok(&sealer(&home, &work, &["run", "web-app:1", "--auto-approve", "--no-progress"]));
    assert!(delivered.contains("app.web-app will be created") && delivered.contains("Apply complete!"), "{delivered}");
    assert!(delivered.contains("Application `web-app:1` joins `spec.apps`"), "{delivered}");
    assert!(std::fs::read_to_string(&kept).unwrap().contains("web-app:1"), "the application joined spec.apps");
    // What a cluster uses cannot be removed by mistake, from any directory: the application, the cluster
    // image, and the image that one was built FROM.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for (image, user) in [
        ("web-app:1", "the application of cluster `my-cluster`"),
        (IMAGE, "the image of cluster `my-cluster`"),
        (BASE, &format!("the base of image `{IMAGE}`")),
    ] {
        let refused = sealer(&home, &elsewhere, &["rmi", image]);
        assert_eq!(refused.status.code(), Some(1), "{image}: {}", stdout(&refused));
        assert!(stderr(&refused).contains(user) && stderr(&refused).contains("--force"), "{}", stderr(&refused));
    }
    let running = wait_pods(&tb, "web Running on nodes, missing in ErrImagePull, crash restarting", |pods| {
        let web = named(pods, "web-");
        web.len() == 2
            && web.iter().all(|p| p["status"]["phase"] == "Running")
            && named(pods, "missing").iter().any(|p| waiting(p).is_some_and(|w| w.contains("ImagePull")))
            && named(pods, "crash").iter().any(|p| restarts(p) >= 1)
            && named(pods, "dashboard-").iter().any(|p| p["status"]["phase"] == "Running")
    });
    let log = exec(&tb, 0, "cat /var/log/sealer-registry.log");
    for pod in named(&running, "web-") {
        let host_ip = pod["status"]["hostIP"].as_str().unwrap();
        assert_ne!(host_ip, ip(0), "the master is tainted: pods run on nodes");
        // containerd asked the cluster's registry for docker.io's image, by its name (`ns=docker.io`).
        let served = log.lines().any(|l| {
            l.contains(host_ip) && l.contains("/v2/library/web/manifests/1.0?ns=docker.io") && l.contains(" 200 ")
        });
        assert!(served, "the registry served {host_ip}'s pull: {log}");
        // On the node, a running task of a container made from the image, by its docker.io name.
        let host = tb.ips.iter().position(|a| a.to_string() == host_ip).unwrap();
        let containers = exec(&tb, host, &format!("{CTR} containers ls"));
        let id = containers.lines().find(|l| l.contains(web)).expect(&containers).split_whitespace().next().unwrap();
        let tasks = exec(&tb, host, &format!("{CTR} tasks ls; {CTR} containers info {id}"));
        assert!(tasks.lines().any(|l| l.starts_with(id) && l.contains("RUNNING")), "{tasks}");
        let pod = pod["metadata"]["name"].as_str().unwrap();
        assert!(tasks.contains(&format!("\"io.kubernetes.pod.name\": \"{pod}\"")), "{tasks}");
        // And the page its httpd serves, fetched from this machine.
        assert_eq!(http_get(host_ip, WEB_PORT), page, "the page of {host_ip}'s container");
    }
    let missing = named(&running, "missing")[0]["status"]["message"].as_str().unwrap().to_string();
    assert!(missing.contains("failed to pull and unpack image \"docker.io/library/not-carried:1\""), "{missing}");
    assert!(
        missing.contains("sea.hub:5001: http.StatusNotFound"),
        "containerd's answer from the cluster's registry: {missing}"
    );
    let crash = named(&running, "crash")[0].clone();
    assert_eq!(waiting(&crash).as_deref(), Some("CrashLoopBackOff"), "{crash:#?}");
    let before = restarts(&crash);
    wait_pods(&tb, "crash restarted again", |pods| named(pods, "crash").iter().any(|p| restarts(p) > before));
    assert_eq!(exec(&tb, 0, &format!("{KUBECTL} logs crash")), "crashing\n");
    let wide = exec(&tb, 0, &format!("{KUBECTL} get pods -o wide"));
    assert!(wide.contains("ImagePull") && wide.contains("Running") && wide.contains("CrashLoopBackOff"), "{wide}");

    // Running it again changes nothing; a rebuilt application runs again.
    let same = ok(&sealer(&home, &work, &["run", "web-app:1", "--auto-approve", "--no-progress"]));
    assert!(same.contains("No changes."), "{same}");
    assert!(same.contains("Application `web-app:1` is already in `spec.apps`") && !same.contains("joins"), "{same}");
    write(&app, &[("manifests/app.yaml", &deployment(3))]);
    {
        // The "internet" is back for the build only.
        let source = Registry::start().expect("docker-registry ran at the start of this test");
        push_dashboard(&source);
        build_app(&push_web(&source));
    }
    let rerun = ok(&sealer(&home, &work, &["run", "web-app:1", "--auto-approve", "--no-progress"]));
    assert!(rerun.contains("app.web-app will be updated in-place"), "{rerun}");
    let three = wait_pods(&tb, "3 web pods Running, one per node (their host port)", |pods| {
        let web = named(pods, "web-");
        web.len() == 3 && web.iter().all(|p| p["status"]["phase"] == "Running")
    });
    for pod in named(&three, "web-") {
        assert_eq!(http_get(pod["status"]["hostIP"].as_str().unwrap(), WEB_PORT), page);
    }

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
    assert!(pods(&tb).is_empty(), "the cleanup lines deleted the application's pods");
    // Their containers go with them (the kubelets sync every second).
    for i in 1..4 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = exec(&tb, i, &format!("{CTR} containers ls -q; {CTR} tasks ls -q"));
            if left.trim().is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "host {i} still has containers: {left}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    for i in 0..2 {
        assert!(!tb.exec(i, "test -e /var/lib/sealer/my-cluster/apps/web-app").status.success(), "host {i}");
    }

    // The image's identity is its configuration too: a rebuild that changes only a CMD is planned as an
    // update and the new CMD runs; one that changes only an ENV re-renders the templates that use it.
    let kept_path = ".sealer/my-cluster/Clusterfile";
    write(&iscsi, &[("Kubefile", &cluster_kubefile("1", "CMD echo second-cmd > /root/cmd-ran\n"))]);
    build_cluster_image();
    let plan = sealer(&home, &work, &["plan", "-f", kept_path, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "a CMD-only rebuild is a change: {}", stdout(&plan));
    assert!(stdout(&plan).contains(&format!("guest.{} will be updated in-place", ip(0))), "{}", stdout(&plan));
    ok(&sealer(&home, &work, &["apply", "-f", kept_path, "--auto-approve", "--no-progress"]));
    assert_eq!(exec(&tb, 0, "cat /root/cmd-ran"), "second-cmd\n", "the new CMD ran");
    write(&iscsi, &[("Kubefile", &cluster_kubefile("2", "CMD echo second-cmd > /root/cmd-ran\n"))]);
    build_cluster_image();
    let plan = ok(&sealer(&home, &work, &["plan", "-f", kept_path]));
    assert!(
        plan.contains(&format!("image.{} will be updated in-place", ip(1))) && plan.contains("version=2"),
        "{plan}"
    );
    ok(&sealer(&home, &work, &["apply", "-f", kept_path, "--auto-approve", "--no-progress"]));
    for i in 0..4 {
        assert_eq!(exec(&tb, i, "cat /var/lib/sealer/my-cluster/rootfs/etc/e2e.conf"), "version=2\n", "host {i}");
    }
    let plan = sealer(&home, &work, &["plan", "-f", kept_path, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));

    // $SEALER_HOME/states, which lists where states are (for `rmi`), is its owner's alone and names no secret.
    {
        use std::os::unix::fs::PermissionsExt;
        let states = home.join("states");
        assert_eq!(std::fs::metadata(&states).unwrap().permissions().mode() & 0o777, 0o600);
        let listed = std::fs::read_to_string(&states).unwrap();
        assert!(listed.contains("state.db") && !listed.contains(REGISTRY_PASSWORD), "{listed}");
    }

    // The registry's password is in no output, state or log.
    let mut shown = vec![std::fs::read(work.join(".sealer/state.db")).unwrap()];
    shown.extend([&out, &grown, &delivered, &rerun].map(|o| o.as_bytes().to_vec()));
    for entry in walk(&work.join(".sealer/logs")) {
        shown.push(std::fs::read(entry).unwrap());
    }
    // Nor is the login header the hosts' containerd sends (base64 of user:password), outside its 0600 file.
    let header = base64_of(&format!("e2e-user:{REGISTRY_PASSWORD}"));
    for bytes in shown {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(REGISTRY_PASSWORD) && !text.contains(&header), "the registry login leaked");
    }

    // A container still runs on host 1 when its containerd dies (kill -9): the destroy still stops it.
    let node = exec(&tb, 0, &format!("{KUBECTL} get nodes -o json"));
    let node: Json = serde_json::from_str(&node).unwrap();
    let name = node["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["status"]["addresses"][0]["address"] == ip(1).as_str())
        .unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let sleeper = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sleeper}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {name}}}\n  \
         containers: [{{name: s, image: \"{web}\", command: [sleep, \"7777\"]}}]\n"
    );
    exec(&tb, 0, &format!("printf '%s' '{sleeper}' > /tmp/sleeper.yaml && {KUBECTL} apply -f /tmp/sleeper.yaml"));
    wait_pods(&tb, "the sleeper runs", |pods| named(pods, "sleeper").iter().any(|p| p["status"]["phase"] == "Running"));
    exec(&tb, 1, "pkill -9 -x containerd");

    // Destroyed: the mirror configuration goes with the cluster, and so does the runtime: no containerd,
    // no shim, no container (nor its process), no container's cgroup, no containerd files.
    ok(&sealer(&home, &work, &["destroy", "-f", ".sealer/my-cluster/Clusterfile", "--auto-approve", "--no-progress"]));
    for i in 0..4 {
        assert!(!tb.exec(i, "test -e /etc/containerd/certs.d/docker.io").status.success(), "host {i}");
        let processes = exec(&tb, i, "ps -eo args");
        assert!(
            !processes.contains("containerd") && !processes.contains("httpd") && !processes.contains("sleep 7777"),
            "host {i}: {processes}"
        );
        let mounts = exec(&tb, i, "cat /proc/mounts");
        assert!(!mounts.contains("sealer-sim-containerd"), "host {i}: {mounts}");
        assert!(tb.cgroups_left(i).is_empty(), "host {i}: {:?}", tb.cgroups_left(i));
        let files = tb.exec(
            i,
            "ls -d /var/lib/sealer-sim-containerd /run/sealer-sim-containerd /var/log/pods /opt/containerd 2>/dev/null",
        );
        assert!(stdout(&files).is_empty(), "host {i}: {}", stdout(&files));
    }
}

//! Cluster images: Kubefile errors, and push/pull against a real distribution registry (Debian's
//! docker-registry), cross-checked with skopeo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command};

use sealer_tests::{ok, repo_root, sealer_at as sealer, sealer_bin, stderr, stdout, Registry};

#[test]
fn kubefile_errors_name_the_line_and_leave_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let good = "FROM scratch\nCOPY a.txt etc/\n";
    std::fs::write(dir.path().join("Kubefile"), good).unwrap();
    ok(&sealer(&home, dir.path(), &["build", "-t", "good:1", "."]));
    let before = ok(&sealer(&home, dir.path(), &["images"]));
    let cases = [
        ("FROM scratch\nFETCH x\n", "line 2, column 1: `FETCH`: unknown instruction"),
        ("FROM scratch\nCOPY missing.txt etc/\n", "line 2: COPY source `missing.txt` does not exist"),
        ("FROM nothing:here\n", "line 1: cannot pull the base image `nothing:here`"),
        ("ARG\nFROM scratch\n", "line 1: `ARG`: needs an argument"),
        ("FROM scratch\nRUN exit 3\n", "line 2: RUN failed"),
    ];
    for (kubefile, expected) in cases {
        std::fs::write(dir.path().join("Kubefile"), kubefile).unwrap();
        let out = sealer(&home, dir.path(), &["build", "-t", "good:1", "."]);
        assert_eq!(out.status.code(), Some(1), "{kubefile}");
        assert!(stderr(&out).contains(expected), "{kubefile}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
        assert_eq!(ok(&sealer(&home, dir.path(), &["images"])), before, "{kubefile}: the store changed");
        let inspect = ok(&sealer(&home, dir.path(), &["inspect", "good:1"]));
        assert!(inspect.contains("\"name\": \"good:1\""));
    }
    // Unchanged content builds to the same digest.
    std::fs::write(dir.path().join("Kubefile"), good).unwrap();
    ok(&sealer(&home, dir.path(), &["build", "-t", "again:1", "."]));
    let digest = |name: &str| {
        let v: serde_json::Value = serde_json::from_str(&ok(&sealer(&home, dir.path(), &["inspect", name]))).unwrap();
        v["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(digest("good:1"), digest("again:1"));
}

fn field(text: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v[key].as_str().unwrap().to_string()
}

#[test]
fn push_remove_pull_gives_the_same_image_and_tampered_blobs_are_refused() {
    let Some(registry) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let context = repo_root().join("examples/images/simulated-k8s");
    ok(&sealer(&home, dir.path(), &["build", "-t", "sim/kubernetes:v1.29.14", context.to_str().unwrap()]));
    let name = format!("127.0.0.1:{}/sim/kubernetes:v1.29.14", registry.port);
    ok(&sealer(&home, dir.path(), &["tag", "sim/kubernetes:v1.29.14", &name]));
    let local = ok(&sealer(&home, dir.path(), &["inspect", &name]));
    let pushed = ok(&sealer(&home, dir.path(), &["push", &name]));
    let manifest_digest = pushed.split_whitespace().last().unwrap().to_string();
    assert!(manifest_digest.starts_with("sha256:"), "{pushed}");
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    assert!(!ok(&sealer(&home, dir.path(), &["images"])).contains(&name));
    let pulled = ok(&sealer(&home, dir.path(), &["pull", &name]));
    assert!(pulled.contains(&manifest_digest), "{pulled}");
    let back = ok(&sealer(&home, dir.path(), &["inspect", &name]));
    assert_eq!(field(&back, "digest"), field(&local, "digest"), "the rootfs came back identical");
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&local).unwrap(), serde_json::from_str(&back).unwrap());
    assert_eq!((&a["cmds"], &a["env"], &a["labels"]), (&b["cmds"], &b["env"], &b["labels"]));

    // A third-party client reads the same image.
    if Path::new("/usr/bin/skopeo").exists() {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &format!("docker://{name}")])
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["Digest"], manifest_digest.as_str());
        let extension: serde_json::Value =
            serde_json::from_str(v["Labels"]["sealer.image.extension"].as_str().unwrap()).unwrap();
        assert_eq!(extension["launch"]["cmds"][0], "kubectl apply -f manifests/hello.yaml");
    } else {
        sealer_tests::skip_without("skopeo is not installed (the third-party cross-check)");
    }

    // A Kubefile `FROM` an image the store lacks pulls it first (digest-checked), then builds on it.
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    let derived = dir.path().join("derived");
    std::fs::create_dir_all(&derived).unwrap();
    std::fs::write(derived.join("extra.yaml"), "kind: List\n").unwrap();
    std::fs::write(
        derived.join("Kubefile"),
        format!("FROM {name}\nCOPY extra.yaml manifests\nRUN mkdir -p statics && echo made > statics/made-by-run\n"),
    )
    .unwrap();
    let built = ok(&sealer(&home, dir.path(), &["build", "-m", "lite", "-t", "derived:1", derived.to_str().unwrap()]));
    assert!(built.contains("not in the local store, pulling it") && built.contains(&manifest_digest), "{built}");
    let derived_image: serde_json::Value =
        serde_json::from_str(&ok(&sealer(&home, dir.path(), &["inspect", "derived:1"]))).unwrap();
    let files = derived_image["files"].as_array().unwrap();
    for file in ["manifests/extra.yaml", "bin/kubectl", "statics/made-by-run"] {
        assert!(files.contains(&file.into()), "{file} in {files:?}");
    }
    assert_eq!(derived_image["base"], name.as_str());
    assert_eq!(derived_image["cmds"][0], "kubectl apply -f manifests/hello.yaml", "the base's CMDs come along");
    let mode = sealer(&home, dir.path(), &["build", "-m", "cloud", "-t", "derived:2", derived.to_str().unwrap()]);
    assert_eq!(mode.status.code(), Some(1));
    assert!(stderr(&mode).contains("build mode `cloud` is not supported"), "{}", stderr(&mode));

    // An image another was built FROM is in use: refused until that one goes.
    let refused = sealer(&home, dir.path(), &["rmi", &name]);
    assert!(stderr(&refused).contains("the base of image `derived:1`"), "{}", stderr(&refused));
    ok(&sealer(&home, dir.path(), &["rmi", "derived:1"]));

    // `sealer apply` of an image the store lacks pulls it before anything else (the host here refuses
    // connections at once: only the pull is under test).
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    std::fs::write(
        dir.path().join("Clusterfile"),
        format!(
            "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: pulled\nspec:\n  image: {name}\n  ssh:\n    \
             port: 1\n    passwd: not-used\n  hosts:\n    - ips: [127.0.0.1]\n      roles: [master]\n"
        ),
    )
    .unwrap();
    let applied = sealer(&home, dir.path(), &["apply", "--auto-approve", "--no-progress"]);
    let out = String::from_utf8_lossy(&applied.stdout);
    assert!(out.contains("is not in the local store: pulling it") && out.contains(&manifest_digest), "{out}");
    assert!(ok(&sealer(&home, dir.path(), &["images"])).contains(&name));
    assert_eq!(applied.status.code(), Some(1), "the host is unreachable: {}", stderr(&applied));

    // Tamper with the layer blob in the registry's storage: the pull is refused and the store unchanged.
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    let blobs = registry.storage.path().join("data/docker/registry/v2/blobs/sha256");
    let mut biggest: Option<(u64, std::path::PathBuf)> = None;
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            let len = std::fs::metadata(&data).unwrap().len();
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, data));
            }
        }
    }
    let (_, layer) = biggest.unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let refused = sealer(&home, dir.path(), &["pull", &name]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).to_lowercase().contains("digest"), "{}", stderr(&refused));
    assert!(!ok(&sealer(&home, dir.path(), &["images"])).contains(&name), "a tampered image reached the store");
}

#[test]
fn lite_build_carries_every_named_container_image_in_a_registry_that_serves_them() {
    let Some(source) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // Two small container images in the source registry (sealer images are valid OCI images).
    std::fs::write(dir.path().join("f"), "x").unwrap();
    std::fs::write(dir.path().join("Kubefile"), "FROM scratch\nCOPY f f\n").unwrap();
    let app1 = format!("127.0.0.1:{}/library/app1:1.0", source.port);
    let app2 = format!("127.0.0.1:{}/team/app2:2.0", source.port);
    let mut digests = Vec::new();
    for name in [&app1, &app2] {
        ok(&sealer(&home, dir.path(), &["build", "-t", name, "."]));
        let pushed = ok(&sealer(&home, dir.path(), &["push", name]));
        digests.push(pushed.split_whitespace().last().unwrap().to_string());
    }
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("manifests")).unwrap();
    std::fs::write(
        ctx.join("manifests/app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: a}}\nspec:\n  template:\n    spec:\n      \
             initContainers: [{{name: i, image: \"{app2}\"}}]\n      containers: [{{name: c, image: \"{app1}\"}}]\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("manifests/imageList"), format!("# again\n{app1}\n")).unwrap();
    std::fs::write(ctx.join("manifests/notes.yaml"), "title: not a kubernetes object\n").unwrap();
    std::fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY manifests manifests\n").unwrap();
    let built = ok(&sealer(&home, dir.path(), &["build", "-t", "lite:1", ctx.to_str().unwrap()]));
    assert!(built.contains("lite build: 2 container image(s)"), "{built}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&sealer(&home, dir.path(), &["inspect", "lite:1"]))).unwrap();
    assert_eq!(inspect["images"], serde_json::json!([app1, app2]));

    // Seed 001's journey: a RUN downloads a YAML into the rootfs (from a local server standing for the
    // internet) and a CMD applies it; `build -m lite` carries its image. A workload YAML elsewhere in the
    // rootfs is carried too.
    let recommended = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n  template:\n    spec:\n      containers: [{{name: c, image: \"{app2}\"}}]\n");
    let http = sealer_tests::serve_http(recommended);
    let dash = dir.path().join("dashboard");
    std::fs::create_dir_all(dash.join("extra")).unwrap();
    std::fs::write(
        dash.join("extra/job.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{{name: c, image: \"{app1}\"}}]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dash.join("Kubefile"),
        format!(
            "FROM scratch\nCOPY extra extra\nRUN wget -q http://127.0.0.1:{http}/recommended.yaml\n\
             CMD kubectl apply -f recommended.yaml\n"
        ),
    )
    .unwrap();
    let built =
        ok(&sealer(&home, dir.path(), &["build", "-m", "lite", "-t", "dashboard:latest", dash.to_str().unwrap()]));
    assert!(built.contains("lite build: 2 container image(s)"), "{built}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&sealer(&home, dir.path(), &["inspect", "dashboard:latest"]))).unwrap();
    assert_eq!(inspect["images"], serde_json::json!([app1, app2]));

    // Behind a mirror: `docker.io/...` names are fetched from the mirror and kept under their own name.
    let hub = ctx.join("hub");
    std::fs::create_dir_all(hub.join("manifests")).unwrap();
    std::fs::write(
        hub.join("manifests/app.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: \"app1:1.0\"}]\n",
    )
    .unwrap();
    std::fs::write(hub.join("Kubefile"), "FROM scratch\nCOPY manifests manifests\n").unwrap();
    let mirror = format!("docker.io=http://127.0.0.1:{}", source.port);
    let refused =
        sealer(&home, dir.path(), &["build", "-t", "hub:1", hub.to_str().unwrap(), "--registry-mirror", "docker.io"]);
    assert!(stderr(&refused).contains("expected REGISTRY=http[s]://HOST[:PORT]"), "{}", stderr(&refused));
    let built =
        ok(&sealer(&home, dir.path(), &["build", "-t", "hub:1", hub.to_str().unwrap(), "--registry-mirror", &mirror]));
    assert!(built.contains(&format!("image docker.io/library/app1:1.0 {}", digests[0])), "{built}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&sealer(&home, dir.path(), &["inspect", "hub:1"]))).unwrap();
    assert_eq!(inspect["images"], serde_json::json!(["docker.io/library/app1:1.0"]));
    // The same mirror from $SEALER_HOME/registries.yaml.
    std::fs::write(
        home.join("registries.yaml"),
        format!("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{}\"]\n", source.port),
    )
    .unwrap();
    ok(&sealer(&home, dir.path(), &["build", "-t", "hub:2", hub.to_str().unwrap()]));
    std::fs::remove_file(home.join("registries.yaml")).unwrap();

    // A registry started on the image's registry directory serves each of them, unchanged.
    let served = Registry::serving(Some(&home.join("images/lite_3a1/rootfs/registry")), None).unwrap();
    let other_home = dir.path().join("other");
    for (name, digest) in [(&app1, &digests[0]), (&app2, &digests[1])] {
        let through = name.replace(&format!("127.0.0.1:{}", source.port), &format!("127.0.0.1:{}", served.port));
        let pulled = ok(&sealer(&other_home, dir.path(), &["pull", &through]));
        assert!(pulled.contains(digest.as_str()), "{pulled}");
    }
}

#[test]
fn save_and_load_round_trip_through_an_oci_archive() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("f"), "content").unwrap();
    std::fs::write(dir.path().join("Kubefile"), "FROM scratch\nCOPY f etc/f\nCMD echo hi\n").unwrap();
    ok(&sealer(&home, dir.path(), &["build", "-t", "app:1", "."]));
    let before = ok(&sealer(&home, dir.path(), &["inspect", "app:1"]));
    ok(&sealer(&home, dir.path(), &["save", "app:1", "-o", "app.tar"]));
    if Path::new("/usr/bin/skopeo").exists() {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", dir.path().join("app.tar").display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    } else {
        sealer_tests::skip_without("skopeo is not installed (the third-party cross-check)");
    }
    ok(&sealer(&home, dir.path(), &["rmi", "app:1"]));
    ok(&sealer(&home, dir.path(), &["load", "-i", "app.tar"]));
    let after = ok(&sealer(&home, dir.path(), &["inspect", "app:1"]));
    assert_eq!(field(&before, "digest"), field(&after, "digest"));
    // A corrupted archive is refused and nothing reaches the store.
    ok(&sealer(&home, dir.path(), &["rmi", "app:1"]));
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xf")
        .arg(dir.path().join("app.tar"))
        .status()
        .unwrap()
        .success());
    for blob in std::fs::read_dir(unpacked.join("blobs/sha256")).unwrap().flatten() {
        let mut data = std::fs::read(blob.path()).unwrap();
        if data.len() > 4096 {
            data[2048] ^= 1;
            std::fs::write(blob.path(), data).unwrap();
        }
    }
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-cf")
        .arg(dir.path().join("bad.tar"))
        .arg(".")
        .status()
        .unwrap()
        .success());
    let refused = sealer(&home, dir.path(), &["load", "-i", "bad.tar"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("refused (damaged or tampered)"), "{}", stderr(&refused));
    assert!(!ok(&sealer(&home, dir.path(), &["images"])).contains("app:1"));
}

const REGISTRY_PASSWORD: &str = "Reg-basic-Pw-2208";

fn spawn_sealer(home: &Path, cwd: &Path, args: &[&str]) -> Child {
    Command::new(sealer_bin())
        .args(args)
        .current_dir(cwd)
        .env("SEALER_HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `grown` says a transfer is under way, then kills it (as a lost connection or Ctrl-C
/// would); returns whether it was caught mid-way rather than after it finished.
fn interrupt(mut child: Child, grown: impl Fn() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if grown() {
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("the transfer never started");
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn basic_auth_login_and_interrupted_push_and_pull_are_rerun() {
    let Some(registry) = Registry::serving(None, Some(("ci-user", REGISTRY_PASSWORD))) else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Kubefile"), "FROM scratch\nCOPY big data/big\nCMD echo hello\n").unwrap();
    // Incompressible content, large enough that a transfer can be caught half-way.
    let big = Command::new("head").args(["-c", "200000000", "/dev/urandom"]).output().unwrap().stdout;
    std::fs::write(context.join("big"), big).unwrap();
    let name = format!("127.0.0.1:{}/big/image:v1", registry.port);
    ok(&sealer(&home, dir.path(), &["build", "-t", &name, context.to_str().unwrap()]));
    let local = ok(&sealer(&home, dir.path(), &["inspect", &name]));

    // No login: refused, and the registry says why.
    let refused = sealer(&home, dir.path(), &["push", &name]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused).to_lowercase();
    assert!(err.contains("unauthorized") || err.contains("401") || err.contains("authentication"), "{err}");

    // A wrong password is refused at login (the registry is asked), with rc 1, and nothing is stored;
    // so is a registry that is not there, named as such.
    let wrong =
        sealer(&home, dir.path(), &["login", &format!("127.0.0.1:{}", registry.port), "-u", "ci-user", "-p", "not-it"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", stdout(&wrong));
    assert!(stderr(&wrong).contains("refused the credentials of `ci-user` (401 Unauthorized)"), "{}", stderr(&wrong));
    assert!(!stdout(&wrong).contains("Login Succeeded") && !home.join("auth.json").exists(), "nothing stored");
    let gone = sealer(&home, dir.path(), &["login", "127.0.0.1:9", "-u", "ci-user", "-p", REGISTRY_PASSWORD]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("connection refused"), "{}", stderr(&gone));
    assert!(!stderr(&gone).contains(REGISTRY_PASSWORD) && !home.join("auth.json").exists());

    // `-p` works too, with docker's warning; the password is in no output.
    let with_flag = sealer(
        &home,
        dir.path(),
        &["login", &format!("127.0.0.1:{}", registry.port), "-u", "ci-user", "-p", REGISTRY_PASSWORD],
    );
    assert!(with_flag.status.success(), "{}", stderr(&with_flag));
    assert!(stderr(&with_flag).contains("Use --password-stdin"), "{}", stderr(&with_flag));
    let shown = format!("{}{}", stdout(&with_flag), stderr(&with_flag));
    assert!(!shown.contains(REGISTRY_PASSWORD), "{shown}");
    ok(&sealer(&home, dir.path(), &["logout", &format!("127.0.0.1:{}", registry.port)]));
    let mut login = spawn_sealer(
        &home,
        dir.path(),
        &["login", &format!("127.0.0.1:{}", registry.port), "-u", "ci-user", "--password-stdin"],
    );
    {
        use std::io::Write;
        login.stdin.take().unwrap().write_all(format!("{REGISTRY_PASSWORD}\n").as_bytes()).unwrap();
    }
    let login = login.wait_with_output().unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("auth.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "credentials are readable by their owner only");
    }

    // Pushes killed mid-request, after a random number of pieces: the re-run sends only what the registry
    // does not hold whole, so all the pushes together send the image once plus at most one piece per kill.
    let v2 = registry.storage.path().join("data/docker/registry/v2");
    let bytes_of = |dir: &Path, pattern: &str| -> u64 {
        files_under(dir)
            .iter()
            .filter(|f| f.ends_with("data") && f.to_string_lossy().contains(pattern))
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let held = || bytes_of(&v2.join("blobs"), "/");
    let uploads = || bytes_of(&v2.join("repositories"), "/_uploads/");
    let blobs_held = || files_under(&v2.join("blobs")).iter().filter(|f| f.ends_with("data")).count();
    let settled = || {
        let mut last = (held(), uploads());
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = (held(), uploads());
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let (mut received, mut cut_offs) = (0, Vec::new());
    for round in 0..3 {
        let (held_before, uploads_before) = settled();
        let blobs_before = blobs_held();
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let pieces = 1 + (seed >> 16) as usize % 3;
        let push = spawn_sealer(&home, dir.path(), &["push", &name]);
        // Killed once `pieces` blobs of this run are in and the next one is arriving.
        let caught = interrupt(push, || blobs_held() >= blobs_before + pieces && uploads() > uploads_before);
        assert!(caught, "round {round}: the push ended before the kill");
        let (held_after, uploads_after) = settled();
        let cut_off = uploads_after - uploads_before;
        received += held_after - held_before + cut_off;
        cut_offs.push(cut_off);
    }
    let complete = held();
    let pushed = ok(&sealer(&home, dir.path(), &["push", &name]));
    let numbers: Vec<u64> = pushed
        .lines()
        .find(|l| l.starts_with("sent "))
        .unwrap_or_else(|| panic!("{pushed}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [sent, skipped_blobs, blobs, skipped] = numbers[..] else { panic!("{pushed}") };
    let total = sent + skipped;
    assert!(total > 200_000_000 && blobs > 20, "the layer went as pieces: {pushed}");
    assert!(cut_offs.iter().any(|c| *c > 0), "no kill landed mid-request: {cut_offs:?}");
    assert_eq!(skipped, complete, "every blob the registry holds whole was used, none sent again: {pushed}");
    assert!(skipped_blobs > 0, "{pushed}");
    let piece = 8 * 1024 * 1024;
    assert!(
        received + sent <= total + 3 * piece,
        "the 4 pushes sent {} bytes for an image of {total} (cut-off uploads: {cut_offs:?}): {pushed}",
        received + sent
    );
    eprintln!(
        "FIGURE 3 pushes killed mid-request, then a re-push: {} bytes sent for {total} ({:.3}x); the re-push sent \
         {sent}; cut-off uploads {cut_offs:?}",
        received + sent,
        (received + sent) as f64 / total as f64
    );
    let manifest_digest = pushed.split_whitespace().last().unwrap().to_string();
    assert!(manifest_digest.starts_with("sha256:"), "{pushed}");

    // A pull killed half-way leaves the store unchanged; the re-run resumes the download.
    let partial = home.join("images/.partial");
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    let pull = spawn_sealer(&home, dir.path(), &["pull", &name]);
    let caught = interrupt(pull, || {
        files_under(&partial).iter().any(|f| std::fs::metadata(f).map(|m| m.len() > 1_000_000).unwrap_or(false))
    });
    assert!(caught, "the pull finished before it could be interrupted");
    assert!(!ok(&sealer(&home, dir.path(), &["images"])).contains(&name), "a half-pulled image reached the store");
    let pulled = ok(&sealer(&home, dir.path(), &["pull", &name]));
    assert!(pulled.contains("resumed an interrupted download") && pulled.contains(&manifest_digest), "{pulled}");
    let back = ok(&sealer(&home, dir.path(), &["inspect", &name]));
    assert_eq!(field(&back, "digest"), field(&local, "digest"));
    assert!(files_under(&partial).is_empty(), "the finished download was cleaned up");

    // Logged out: refused again. The password was never printed.
    ok(&sealer(&home, dir.path(), &["logout", &format!("127.0.0.1:{}", registry.port)]));
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    let refused = sealer(&home, dir.path(), &["pull", &name]);
    assert_eq!(refused.status.code(), Some(1));
    for out in [&refused, &login] {
        assert!(!format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out)).contains(REGISTRY_PASSWORD));
    }
}

/// A token service for a registry with `auth: token` (the flow of Docker Hub and most private
/// registries): it checks the user's password and issues an ES256 JWT, with its certificate in `x5c`,
/// granting the scopes asked for.
struct TokenService {
    port: u16,
    certificate: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const ISSUER: &str = "sealer-test-issuer";
const SERVICE: &str = "sealer-test-registry";

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenService {
    fn start(user: &'static str, password: &'static str) -> TokenService {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem"]);
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sealer-test-token",
        ]);
        openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.p8"]);
        openssl(&["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"]);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = std::fs::read(dir.path().join("key.p8")).unwrap();
        let key =
            ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                .unwrap();
        let cert =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.path().join("cert.der")).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                use std::io::{BufRead, Write};
                let mut reader = std::io::BufReader::new(&stream);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                let target = head.first().and_then(|l| l.split_whitespace().nth(1)).unwrap_or_default().to_string();
                let authorized = head
                    .iter()
                    .any(|l| l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == expected);
                let mut writer = &stream;
                if !authorized {
                    let _ = writer
                        .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
                let access: Vec<serde_json::Value> = query
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .map(percent_decode)
                    .filter_map(|scope| {
                        let mut parts = scope.splitn(3, ':');
                        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [cert]});
                let claims = serde_json::json!({"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300,
                    "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()), "access": access});
                let signing_input =
                    format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
                let signature = key.sign(&rng, signing_input.as_bytes()).unwrap();
                let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
                let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
                let _ = write!(
                    writer,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenService { port, certificate: dir.path().join("cert.pem"), _dir: dir }
    }
}

#[test]
fn bearer_token_registry_login_push_and_pull() {
    if !Path::new("/usr/bin/openssl").exists() {
        sealer_tests::skip_without("openssl is not installed");
        return;
    }
    let tokens = TokenService::start("token-user", REGISTRY_PASSWORD);
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        tokens.port,
        tokens.certificate.display()
    );
    let Some(registry) = Registry::with_config(&auth) else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Kubefile"), "FROM scratch\nCOPY app etc/app\nCMD echo hello\n").unwrap();
    std::fs::write(context.join("app"), "token test\n").unwrap();
    let name = format!("127.0.0.1:{}/team/app:v1", registry.port);
    ok(&sealer(&home, dir.path(), &["build", "-t", &name, context.to_str().unwrap()]));
    let local = ok(&sealer(&home, dir.path(), &["inspect", &name]));

    let refused = sealer(&home, dir.path(), &["push", &name]);
    assert_eq!(refused.status.code(), Some(1), "an anonymous push must be refused");

    let mut login = spawn_sealer(
        &home,
        dir.path(),
        &["login", &format!("127.0.0.1:{}", registry.port), "-u", "token-user", "--password-stdin"],
    );
    {
        use std::io::Write;
        login.stdin.take().unwrap().write_all(format!("{REGISTRY_PASSWORD}\n").as_bytes()).unwrap();
    }
    assert!(login.wait_with_output().unwrap().status.success());
    let pushed = ok(&sealer(&home, dir.path(), &["push", &name]));
    let manifest_digest = pushed.split_whitespace().last().unwrap().to_string();
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    let pulled = ok(&sealer(&home, dir.path(), &["pull", &name]));
    assert!(pulled.contains(&manifest_digest), "{pulled}");
    assert_eq!(field(&ok(&sealer(&home, dir.path(), &["inspect", &name])), "digest"), field(&local, "digest"));
    if Path::new("/usr/bin/skopeo").exists() {
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                &format!("token-user:{REGISTRY_PASSWORD}"),
                &format!("docker://{name}"),
            ])
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["Digest"], manifest_digest.as_str(), "skopeo sees what we pushed through the same tokens");
    } else {
        sealer_tests::skip_without("skopeo is not installed (the third-party cross-check)");
    }
}

/// The forms of Docker's Kubefile (Dockerfile) reference, built and pushed, read back by a third party:
/// `skopeo inspect --config` shows the Env and Labels Docker would have made, and the pushed layer holds
/// what the COPY patterns matched.
#[test]
fn dockers_reference_forms_reach_the_pushed_oci_config() {
    let Some(registry) = Registry::start() else { return };
    if !Path::new("/usr/bin/skopeo").exists() {
        sealer_tests::skip_without("skopeo is not installed (the third-party cross-check)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    for f in ["a.yaml", "b.yaml", "x1.txt", "x2.txt", "a.md", "c.md", "with space.txt", "sub/d.yaml"] {
        std::fs::write(ctx.join(f), f).unwrap();
    }
    let kubefile = r#"ARG VER
ARG BASE_DIR=/opt
FROM scratch
ENV MY_NAME="John Doe"
ENV MY_DOG=Rex\ The\ Dog \
    MY_CAT=fluffy
ENV NAME=app-${VER:-none} MORE=yes
ENV A=1 B=2
ENV LEGACY some value
ENV DIR=$BASE_DIR/app QUOTED='$BASE_DIR'
LABEL "com.example.vendor"="ACME Incorporated"
LABEL com.example.label-with-value="foo"
LABEL version="1.0"
LABEL description="This text illustrates \
that label-values can span multiple lines."
LABEL multi.label1="value1" multi.label2="value2" other="value3"
COPY *.yaml manifests
COPY x?.txt [ab].md etc/
COPY ["with space.txt", "etc/"]
CMD ["kubectl", "apply", "-f", "manifests/"]
"#;
    std::fs::write(ctx.join("Kubefile"), kubefile).unwrap();
    let name = format!("127.0.0.1:{}/forms/docker:1", registry.port);
    ok(&sealer(&home, dir.path(), &["build", "-t", &name, ctx.to_str().unwrap()]));
    ok(&sealer(&home, dir.path(), &["push", &name]));
    let out = Command::new("skopeo")
        .args(["inspect", "--config", "--tls-verify=false", &format!("docker://{name}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let env: Vec<&str> = config["config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(
        env,
        [
            "A=1",
            "B=2",
            // BASE_DIR is declared before FROM: Docker does not give it to the stage.
            "DIR=/app",
            "LEGACY=some value",
            "MORE=yes",
            "MY_CAT=fluffy",
            "MY_DOG=Rex The Dog",
            "MY_NAME=John Doe",
            "NAME=app-none",
            "QUOTED=$BASE_DIR",
        ]
    );
    let labels: std::collections::BTreeMap<String, String> = config["config"]["Labels"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("sealer."))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let expected: std::collections::BTreeMap<String, String> = [
        ("com.example.vendor", "ACME Incorporated"),
        ("com.example.label-with-value", "foo"),
        ("version", "1.0"),
        ("description", "This text illustrates that label-values can span multiple lines."),
        ("multi.label1", "value1"),
        ("multi.label2", "value2"),
        ("other", "value3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expected);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&sealer(&home, dir.path(), &["inspect", &name]))).unwrap();
    assert_eq!(inspect["cmds"], serde_json::json!(["kubectl apply -f manifests/"]));
    // What the patterns matched, in the image's files.
    let rootfs =
        home.join("images").read_dir().unwrap().flatten().find(|e| e.path().join("rootfs").is_dir()).unwrap().path();
    let mut files: Vec<String> = std::fs::read_to_string(rootfs.join("manifest"))
        .unwrap()
        .lines()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["etc/a.md", "etc/with space.txt", "etc/x1.txt", "etc/x2.txt", "manifests/a.yaml", "manifests/b.yaml"]
    );
}

/// A pull killed after the last byte of a layer arrived does not fetch it again: the complete partial
/// blob is checked and used. Shown by corrupting the registry's copy: fetching it would fail the digest.
#[test]
fn a_complete_partial_layer_is_not_downloaded_again() {
    let Some(registry) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("f"), "complete partial\n".repeat(1000)).unwrap();
    std::fs::write(dir.path().join("Kubefile"), "FROM scratch\nCOPY f etc/f\n").unwrap();
    let name = format!("127.0.0.1:{}/partial/image:1", registry.port);
    ok(&sealer(&home, dir.path(), &["build", "-t", &name, "."]));
    ok(&sealer(&home, dir.path(), &["push", &name]));
    ok(&sealer(&home, dir.path(), &["rmi", &name]));
    // The layer: the largest blob the registry holds.
    let blobs = registry.storage.path().join("data/docker/registry/v2/blobs/sha256");
    let mut found: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            found.push((std::fs::metadata(&data).unwrap().len(), data));
        }
    }
    let (_, layer) = found.into_iter().max().unwrap();
    let hex = layer.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let partial = home.join("images/.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::copy(&layer, partial.join(format!("sha256-{hex}"))).unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let pulled = ok(&sealer(&home, dir.path(), &["pull", &name]));
    assert!(pulled.contains("pulled"), "{pulled}");
    assert!(ok(&sealer(&home, dir.path(), &["inspect", &name])).contains("etc/f"));
}

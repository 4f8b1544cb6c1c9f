//! Support for sealer's end-to-end tests: the built binary, the repository's files, and a state seeded as
//! if an apply had finished.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sealer_engine::{ImageFacts, PlanOptions, ResourceStatus, State, StateStore, StoredResource};
use sealer_state::SqliteStore;

pub mod fuzz;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Builds the `sealer` binary in a target directory of its own: built beside the tests, cargo would
/// unify features differently and rebuild the shared crates on every alternation.
fn build_sealer(release: bool) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from).join("e2e-bin");
    let mut build = Command::new(cargo);
    // `sealer` carries `sealer-relay` (cli/build.rs): one binary.
    build.args(["build", "--quiet", "-p", "sealer-cli", "--bin", "sealer"]);
    if release {
        build.arg("--release");
    }
    let status = build.env("CARGO_TARGET_DIR", &target).current_dir(repo_root()).status().expect("cargo runs");
    assert!(status.success(), "building sealer failed");
    target.join(if release { "release" } else { "debug" }).join("sealer")
}

/// The `sealer` binary, built once per test process (a test crate cannot depend on a binary).
pub fn sealer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_sealer(false))
}

/// The `sealer` binary built with `--release`, for benchmarks and fuzzing campaigns.
pub fn sealer_release_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_sealer(true))
}

/// Runs `sealer ARGS` in `cwd` with colour off, no inherited state path, and a `SEALER_HOME` of its own.
pub fn sealer(cwd: &Path, args: &[&str]) -> Output {
    sealer_with_stdin(cwd, args, "")
}

/// Runs `sealer ARGS` in `cwd` with `home` as its `SEALER_HOME` (images, logins, the state key shared
/// between the commands of one test), colour off and no inherited state path or key.
pub fn sealer_at(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    sealer_at_with_stdin(home, cwd, args, "")
}

/// [`sealer_at`] with `stdin` on its standard input (an answer to the confirmation, a password).
pub fn sealer_at_with_stdin(home: &Path, cwd: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(sealer_bin())
        .args(args)
        .current_dir(cwd)
        .env("SEALER_HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("SEALER_STATE")
        .env_remove("SEALER_STATE_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sealer starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The name the e2e tests give the simulated-Kubernetes image (`examples/images/simulated-k8s`).
pub const SIMULATED_IMAGE: &str = "sim/kubernetes:v1.29.14";

/// `ctr` on the test image's containerd (its own socket, `etc/containerd.toml`), in the kubelets' namespace.
pub const SIMULATED_CTR: &str = "ctr --address /run/sealer-sim-containerd/containerd.sock -n k8s.io";

/// Builds the simulated-Kubernetes image into `home`'s store as [`SIMULATED_IMAGE`].
pub fn build_simulated_image(home: &Path, cwd: &Path) {
    let context = repo_root().join("examples/images/simulated-k8s");
    ok(&sealer_at(home, cwd, &["build", "-t", SIMULATED_IMAGE, &context.display().to_string()]));
}

pub fn sealer_with_stdin(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    // A home of its own: no image store, credentials or state key of the machine leaks into outputs.
    sealer_at_with_stdin(&cwd.join(".sealer-home"), cwd, args, stdin)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout of a command that must have succeeded; both streams are shown when it did not.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), stdout(out), stderr(out));
    stdout(out)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Records every resource of `clusterfile` in the state at `state_path` as applied, the way a finished
/// apply leaves it; returns the state.
pub fn seed_applied_state(state_path: &Path, clusterfile: &str) -> State {
    seed_applied_state_with(state_path, clusterfile, &ImageFacts::default())
}

/// [`seed_applied_state`] of a cluster installed from an image of which the store knows `image`.
pub fn seed_applied_state_with(state_path: &Path, clusterfile: &str, image: &ImageFacts) -> State {
    let cf = sealer_engine::parse("Clusterfile", clusterfile).unwrap().clusterfile;
    let graph = sealer_engine::compile(&cf, image).unwrap();
    let plan = sealer_engine::plan(&graph, &State::empty(&cf.cluster.name), &PlanOptions::default()).unwrap();
    let mut store = SqliteStore::open(state_path).unwrap();
    let lock = store.lock(&cf.cluster.name, "test@seed", std::process::id(), "seed").unwrap();
    for change in &plan.changes {
        let resource = StoredResource {
            address: change.address.clone(),
            host: change.host,
            status: ResourceStatus::Ready,
            attributes: change.after.clone().unwrap(),
            depends_on: change.depends_on.clone(),
        };
        store.put_resource(&lock, &change.address, Some(&resource)).unwrap();
    }
    store.record_history(&lock, "seeded").unwrap();
    store.unlock(&lock).unwrap();
    store.load(&cf.cluster.name).unwrap().unwrap()
}

/// Builds a small cluster image named `name` into `home`'s store (its rootfs holds only `bin/kubeadm`) and
/// returns what a plan knows of it beyond an empty image's facts: its digest. A plan of a cluster the state
/// records needs the cluster image in the store (it pulls it, or refuses to plan).
pub fn build_stub_image(home: &Path, name: &str) -> ImageFacts {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("kubeadm"), "#!/bin/sh\n").unwrap();
    std::fs::write(context.path().join("Kubefile"), "FROM scratch\nCOPY kubeadm bin/kubeadm\n").unwrap();
    ok(&sealer_at(home, context.path(), &["build", "-t", name, &context.path().display().to_string()]));
    let image = sealer_providers::image::store::ImageStore::new(home).get(name).unwrap();
    ImageFacts { digest: Some(image.config.digest), ..ImageFacts::default() }
}

/// The root password every testbed host gets, for password-authentication tests.
pub const TESTBED_ROOT_PASSWORD: &str = "Tb-root-Pw-7731";

/// Real sshd hosts for one test (see `tests/testbed/testbed.sh`), torn down when dropped.
pub struct Testbed {
    pub id: u32,
    pub ips: Vec<std::net::IpAddr>,
    /// Private key authorised for root on every host.
    pub key: PathBuf,
}

fn testbed_script() -> PathBuf {
    repo_root().join("tests/testbed/testbed.sh")
}

fn testbed_dir() -> PathBuf {
    PathBuf::from(std::env::var("TESTBED_DIR").unwrap_or_else(|_| "/tmp/sealer-testbed".into()))
}

/// A test's prerequisite is missing. A test never passes by skipping: this fails it with one line saying
/// what is missing and how to skip, unless the user opted out with `SEALER_SKIP_E2E=1`; then it returns
/// and the skip is written to the real stderr (not the captured one), one line per skipped test.
pub fn skip_without(what: &str) {
    use std::io::Write;
    let line = skip_line(what);
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The line a skipped test writes (`.ci/run` counts them), or the failure when skipping was not asked for.
fn skip_line(what: &str) -> String {
    if std::env::var("SEALER_SKIP_E2E").as_deref() == Ok("1") {
        let test = std::thread::current().name().unwrap_or("a test").to_string();
        return format!("SKIPPED {test} (SEALER_SKIP_E2E=1): {what}");
    }
    panic!("{what}: install it (`bash .ci/run` installs everything) or set SEALER_SKIP_E2E=1 to skip these tests");
}

/// Whether real hosts can be made here (root, OpenSSH, util-linux); when not, see [`skip_without`].
pub fn testbed_available() -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")));
    // The test image's container runtime is the hosts' own Debian containerd and runc.
    let runtime = ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2"]
        .iter()
        .all(|p| Path::new(p).exists())
        && (Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists());
    let ok =
        uid == Some(true) && Path::new("/usr/sbin/sshd").exists() && Path::new("/usr/bin/nsenter").exists() && runtime;
    if !ok {
        skip_without(
            "real test hosts need root, openssh-server (/usr/sbin/sshd), util-linux (nsenter), containerd and runc",
        );
    }
    ok
}

/// An HTTP/1.0 server on 127.0.0.1 answering every request with `body` (the internet site a Kubefile's
/// `RUN wget` downloads from, as in seed 001); its port. It serves until the test process ends.
pub fn serve_http(body: String) -> u16 {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in server.incoming().flatten() {
            use std::io::{BufRead as _, Write as _};
            let mut request = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while request.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// Pushes a real container image to `reference` (a registry on plain HTTP): one layer of Debian's
/// busybox-static, with `page` at /www/index.html (tests/testbed/busybox-image.py).
pub fn busybox_image(reference: &str, page: &str) {
    if !Path::new("/bin/busybox").exists() || !Path::new("/usr/bin/skopeo").exists() {
        skip_without("a container image is built from busybox-static (/bin/busybox) and pushed with skopeo");
        return;
    }
    let out = Command::new(repo_root().join("tests/testbed/busybox-image.py"))
        .args(["--page", page, reference])
        .output()
        .unwrap();
    assert!(out.status.success(), "busybox image: {}", String::from_utf8_lossy(&out.stderr));
}

impl Testbed {
    pub fn up(hosts: usize) -> Testbed {
        let out = Command::new(testbed_script())
            .args(["up", &hosts.to_string()])
            .env("TESTBED_OWNER", std::process::id().to_string())
            .env("TESTBED_ROOT_PASSWORD", TESTBED_ROOT_PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "testbed up: {}", String::from_utf8_lossy(&out.stderr));
        let id: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let dir = testbed_dir().join(id.to_string());
        let ips = std::fs::read_to_string(dir.join("ips")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        Testbed { id, ips, key: dir.join("id_ed25519") }
    }

    fn script(&self, args: &[&str]) -> Output {
        let id = self.id.to_string();
        let mut all = vec![args[0], id.as_str()];
        all.extend_from_slice(&args[1..]);
        Command::new(testbed_script()).args(&all).output().unwrap()
    }

    /// Runs `sh -c command` inside host `i` (0-based), outside of ssh.
    pub fn exec(&self, i: usize, command: &str) -> Output {
        self.script(&["exec", &(i + 1).to_string(), "sh", "-c", command])
    }

    /// Runs `sh -c command` inside host `i` and returns its output; anything but success fails the test.
    pub fn exec_ok(&self, i: usize, command: &str) -> String {
        let out = self.exec(i, command);
        assert!(out.status.success(), "host {i}: {command}: {}", stderr(&out));
        stdout(&out)
    }

    /// Host `i` goes as a machine switched off: its processes killed, its link down.
    pub fn kill_host(&self, i: usize) {
        let out = self.script(&["kill", &(i + 1).to_string()]);
        assert!(out.status.success(), "kill host {i}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Host `i` stops answering, as behind a partition: everything in or out on its link is dropped
    /// (loopback stays), the host itself running on.
    pub fn partition(&self, i: usize) {
        self.exec_ok(
            i,
            "nft add table inet partition && \
             nft 'add chain inet partition in { type filter hook input priority 0 ; }' && \
             nft 'add chain inet partition out { type filter hook output priority 0 ; }' && \
             nft add rule inet partition in iif != lo drop && nft add rule inet partition out oif != lo drop",
        );
    }

    /// Ends [`Testbed::partition`] of host `i`.
    pub fn heal(&self, i: usize) {
        self.exec_ok(i, "nft delete table inet partition");
    }

    pub fn stop_sshd(&self, i: usize) {
        assert!(self.script(&["sshd-stop", &(i + 1).to_string()]).status.success());
    }

    pub fn start_sshd(&self, i: usize) {
        assert!(self.script(&["sshd-start", &(i + 1).to_string()]).status.success());
    }

    /// The cgroups under host `i`'s own (those a container runtime made in it), in every hierarchy.
    pub fn cgroups_left(&self, i: usize) -> Vec<PathBuf> {
        fn dirs(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(entry.path());
                    dirs(&entry.path(), out);
                }
            }
        }
        let list = testbed_dir().join(self.id.to_string()).join(format!("h{}.cgroups", i + 1));
        let own = std::fs::read_to_string(&list).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
        let mut out = Vec::new();
        for cgroup in own.lines() {
            assert!(Path::new(cgroup).is_dir(), "host {i}'s cgroup {cgroup} is there while the host runs");
            dirs(Path::new(cgroup), &mut out);
        }
        out
    }

    /// The host key of host `i` in OpenSSH format, without comment.
    pub fn host_key(&self, i: usize) -> String {
        let path = testbed_dir()
            .join(self.id.to_string())
            .join(format!("h{}/upper/etc/ssh/sealer_testbed_host_key.pub", i + 1));
        let text = std::fs::read_to_string(path).unwrap();
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(testbed_script()).args(["down", &self.id.to_string()]).status();
    }
}

/// A real distribution registry (Debian's docker-registry) on 127.0.0.1, stopped when dropped.
pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    pub storage: tempfile::TempDir,
}

impl Registry {
    /// A registry with fresh storage, or `None` where docker-registry is missing (see [`skip_without`]).
    pub fn start() -> Option<Registry> {
        Registry::serving(None, None)
    }

    /// A registry with fresh storage and `extra` appended to its configuration (an `auth` section).
    pub fn with_config(extra: &str) -> Option<Registry> {
        Registry::configured(None, |_| extra.to_string())
    }

    /// A registry serving `root` (a registry storage directory), or fresh storage; with `login`, only to
    /// that user and password (htpasswd basic auth).
    pub fn serving(root: Option<&Path>, login: Option<(&str, &str)>) -> Option<Registry> {
        Registry::configured(root, |storage| match login {
            Some((user, password)) => {
                let htpasswd = storage.join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt::hash(password, 5).unwrap())).unwrap();
                format!("auth:\n  htpasswd:\n    realm: sealer-test\n    path: {}\n", htpasswd.display())
            }
            None => String::new(),
        })
    }

    pub fn configured(root: Option<&Path>, extra: impl FnOnce(&Path) -> String) -> Option<Registry> {
        if !Path::new("/usr/bin/docker-registry").exists() {
            skip_without("no registry: the docker-registry package is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let storage = tempfile::tempdir().unwrap();
        let config = storage.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.map_or_else(|| storage.path().join("data"), Path::to_path_buf).display()
        );
        text += &extra(storage.path());
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Registry { child, port, storage });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The password of the test PostgreSQL server: tests assert it never shows in any output.
pub const POSTGRES_PASSWORD: &str = "sealer-test-pg-secret";

/// A fresh, empty database on this test process's PostgreSQL server (`tests/testbed/postgres.sh`),
/// dropped with this value.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

/// A new database, or `None` where no PostgreSQL server can be started here (never under CI).
pub fn postgres_database() -> Option<PgDatabase> {
    let admin = postgres_server()?;
    assert!(admin.contains(POSTGRES_PASSWORD), "the test server's URL changed: keep POSTGRES_PASSWORD in step");
    let name = format!("sealer_test_{}", uuid_like());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Some(PgDatabase { url, admin, name })
}

/// The admin URL of this test process's own PostgreSQL server, started at first use on a free port in a
/// directory of its own, and stopped by `postgres.sh`'s watcher once this process is gone: two test runs
/// never share one, and none outlives its run.
fn postgres_server() -> Option<String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    let started = SERVER.get_or_init(|| {
        let pid = std::process::id().to_string();
        let dir = format!("/tmp/sealer-postgres-{pid}");
        let mut why = String::new();
        // The free port is only free when it is chosen: another process may take it before the server
        // binds it, and then a start on another one does.
        for _ in 0..3 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?;
            let script = repo_root().join("tests/testbed/postgres.sh");
            let run = |what: &str| {
                Command::new(&script)
                    .arg(what)
                    .env("SEALER_TEST_PG_DIR", &dir)
                    .env("SEALER_TEST_PG_PORT", port.port().to_string())
                    .env("SEALER_TEST_PG_OWNER", &pid)
                    .output()
                    .map_err(|e| e.to_string())
            };
            let out = run("start")?;
            if out.status.success() {
                return Ok(stdout(&out).trim().to_string());
            }
            why = stderr(&out).trim().to_string();
            run("stop")?;
        }
        Err(why)
    });
    match started {
        Ok(admin) => Some(admin.clone()),
        Err(why) => {
            skip_without(&format!("no PostgreSQL server ({why})"));
            None
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

#[cfg(test)]
mod tests {
    /// The only test of this binary that touches `SEALER_SKIP_E2E`, so setting it races with nothing.
    #[test]
    fn a_missing_prerequisite_fails_unless_skipping_was_asked_for() {
        std::env::remove_var("SEALER_SKIP_E2E");
        let failed = std::panic::catch_unwind(|| super::skip_line("no sshd")).unwrap_err();
        let message = failed.downcast_ref::<String>().unwrap();
        assert_eq!(
            message,
            "no sshd: install it (`bash .ci/run` installs everything) or set SEALER_SKIP_E2E=1 to skip these tests"
        );
        // Asked for: one line naming the test (not written here, so that no skip is counted).
        std::env::set_var("SEALER_SKIP_E2E", "1");
        let line = super::skip_line("no sshd");
        std::env::remove_var("SEALER_SKIP_E2E");
        assert_eq!(
            line,
            "SKIPPED tests::a_missing_prerequisite_fails_unless_skipping_was_asked_for (SEALER_SKIP_E2E=1): no sshd"
        );
    }
}

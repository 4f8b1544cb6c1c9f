//! Support for sealer's end-to-end tests: the built binary, the repository's files, and a state seeded as
//! if an apply had finished.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sealer_engine::{PlanOptions, ResourceStatus, State, StateStore, StoredResource};
use sealer_state::SqliteStore;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `sealer` binary, built once per test process (the test crate cannot depend on a binary).
pub fn sealer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "sealer-cli", "--bin", "sealer"])
            .current_dir(repo_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building sealer failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from);
        target.join("debug").join("sealer")
    })
}

/// Runs `sealer ARGS` in `cwd` with colour off and no inherited state path.
pub fn sealer(cwd: &Path, args: &[&str]) -> Output {
    sealer_with_stdin(cwd, args, "")
}

pub fn sealer_with_stdin(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(sealer_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("SEALER_STATE")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sealer starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Records every resource of `clusterfile` in the state at `state_path` as applied, the way a finished
/// apply leaves it; returns the state.
pub fn seed_applied_state(state_path: &Path, clusterfile: &str) -> State {
    let cf = sealer_engine::parse("Clusterfile", clusterfile).unwrap().clusterfile;
    let graph = sealer_engine::compile(&cf).unwrap();
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

//! Operations: plan, apply (and destroy), refresh, state pull and migrate, image build, pull and removal. Each takes a
//! [`Workspace`] and plain inputs and returns plain data; none prints (progress goes through the
//! `Reporter` and `TransferProgress` traits the caller passes).

pub mod apply;
pub mod check;
pub mod error;
pub mod exec;
pub mod gen;
pub mod hosts;
pub mod images;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod registry;
pub mod run;
pub mod state;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealer_engine::Clusterfile;
use sealer_providers::cluster::SshRemote;
use sealer_providers::image::store::ImageStore;
use sealer_providers::transport::SshTarget;
use sealer_state::StateLocation;

pub use error::{Error, Result};

/// Where an operation keeps what outlives it: the state, and `SEALER_HOME` (images, credentials, the
/// state key); for a long-running caller (`sealer reconcile`), the SSH connections it keeps open.
pub struct Workspace {
    pub state: StateLocation,
    pub home: PathBuf,
    pub connections: Option<Connections>,
}

/// SSH connections kept between operations, on the one runtime that drives them (a connection lives on
/// the runtime that opened it).
pub struct Connections {
    runtime: tokio::runtime::Runtime,
    remotes: std::sync::Mutex<Vec<Arc<SshRemote>>>,
}

impl Connections {
    pub fn new() -> Result<Connections> {
        Ok(Connections { runtime: runtime()?, remotes: std::sync::Mutex::new(Vec::new()) })
    }
}

/// The states this `SEALER_HOME` wrote to, so that what one of them uses is known from any directory
/// (`rmi` refuses to remove it): `$SEALER_HOME/states`, one absolute SQLite path a line, 0600. A
/// PostgreSQL state is not listed: its URL holds a password, and no password goes to a file; it is
/// checked when it is the `--state` given.
const KNOWN_STATES: &str = "states";

impl Workspace {
    /// Opens the state for writing, and records where it is (see [`KNOWN_STATES`]).
    pub fn open_state(&self) -> Result<Box<dyn sealer_engine::StateStore>> {
        let store = self.state.open()?;
        if let StateLocation::Sqlite(path) = &self.state {
            if let Ok(path) = std::fs::canonicalize(path) {
                let file = self.home.join(KNOWN_STATES);
                let known = std::fs::read_to_string(&file).unwrap_or_default();
                let line = path.display().to_string();
                if !line.contains('\n') && !known.lines().any(|l| l == line) {
                    std::fs::create_dir_all(&self.home)?;
                    sealer_providers::private::write_private(&file, format!("{known}{line}\n").as_bytes())?;
                }
            }
        }
        Ok(store)
    }

    /// The state given, then every other SQLite state this home wrote to that is still there.
    pub fn known_states(&self) -> Vec<StateLocation> {
        let mut out = vec![self.state.clone()];
        let current = match &self.state {
            StateLocation::Sqlite(path) => std::fs::canonicalize(path).ok(),
            StateLocation::Postgres(_) => None,
        };
        let known = std::fs::read_to_string(self.home.join(KNOWN_STATES)).unwrap_or_default();
        for line in known.lines() {
            let path = PathBuf::from(line);
            if path.is_file() && Some(&path) != current.as_ref() {
                out.push(StateLocation::Sqlite(path));
            }
        }
        out
    }

    /// A remote reaching `hosts`: the one kept from an earlier operation when the targets are the same.
    pub fn remote(&self, hosts: BTreeMap<IpAddr, SshTarget>, timeout: Duration) -> Arc<SshRemote> {
        let Some(connections) = &self.connections else { return Arc::new(SshRemote::new(hosts, timeout)) };
        let mut remotes = connections.remotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = remotes.iter().find(|r| r.reaches(&hosts, timeout)) {
            return Arc::clone(kept);
        }
        let remote = Arc::new(SshRemote::new(hosts, timeout));
        // Hosts' targets change rarely (a host key pinned, a host added): the newest few are enough.
        if remotes.len() >= 4 {
            remotes.remove(0);
        }
        remotes.push(Arc::clone(&remote));
        remote
    }

    /// Runs `future` to completion: on the kept connections' runtime, else on a fresh one.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> Result<F::Output> {
        Ok(match &self.connections {
            Some(c) => c.runtime.block_on(future),
            None => {
                let runtime = runtime()?;
                let output = runtime.block_on(future);
                // Whatever a connection left running is not waited for beyond this.
                runtime.shutdown_timeout(Duration::from_secs(5));
                output
            }
        })
    }

    pub fn images(&self) -> ImageStore {
        ImageStore::new(&self.home)
    }

    /// `.sealer/logs/<apply-id>` (beside the state) for one run's per-host command logs.
    pub fn new_log_dir(&self) -> PathBuf {
        let apply_id = format!(
            "{}-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            std::process::id()
        );
        self.state.local_dir().join("logs").join(apply_id)
    }
}

/// The async runtime operations that talk to hosts or registries run on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Says on stderr whose lock a new one replaced (a killed sealer's, on this machine).
pub fn say_replaced(lock: &sealer_engine::LockInfo) {
    if let Some(replaced) = &lock.replaced {
        eprintln!("sealer: replaced the state lock of {replaced}: that process is no longer running");
    }
}

/// `user@host`, recorded with every lock and history entry.
pub fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// The command line as recorded with a lock and in the history: any password in a URL masked, and the
/// value of every secret flag (`-p`, `--passwd`, `--pk-passwd`) too.
pub fn command_line() -> String {
    redact_args(std::env::args())
}

fn redact_args(args: impl Iterator<Item = String>) -> String {
    const SECRET_FLAGS: [&str; 4] = ["-p", "--passwd", "--password", "--pk-passwd"];
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push("(sensitive)".to_string());
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if SECRET_FLAGS.contains(&flag) => out.push(format!("{flag}=(sensitive)")),
            _ if arg.starts_with("-p") && arg.len() > 2 && !arg.starts_with("--") => out.push("-p(sensitive)".into()),
            _ => {
                hide_next = SECRET_FLAGS.contains(&arg.as_str());
                out.push(sealer_state::redact_url(&arg));
            }
        }
    }
    out.join(" ")
}

/// The state recorded for `cluster`, read-only (empty when there is none): reads never create a state.
pub fn recorded_state(ws: &Workspace, cluster: &str) -> Result<sealer_engine::State> {
    Ok(match ws.state.open_read_only()? {
        Some(store) => store.load(cluster)?,
        None => None,
    }
    .unwrap_or_else(|| sealer_engine::State::empty(cluster)))
}

/// The masters the Clusterfile declares, in its order.
pub fn masters(cf: &Clusterfile) -> Vec<std::net::IpAddr> {
    cf.cluster.hosts.iter().filter(|h| h.role == sealer_engine::clusterfile::Role::Master).map(|h| h.ip).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_flags_never_reach_the_recorded_command_line() {
        let args = ["sealer", "run", "img", "-p", "S1", "--passwd=S2", "-pS3", "--pk-passwd", "S4", "-m", "10.0.0.2"];
        let shown = super::redact_args(args.iter().map(ToString::to_string));
        assert!(!["S1", "S2", "S3", "S4"].iter().any(|s| shown.contains(s)), "{shown}");
        assert!(shown.ends_with("-m 10.0.0.2"), "{shown}");
    }
}

//! Operations: plan, apply (and destroy), refresh, state pull and migrate, image build, pull and removal. Each takes a
//! [`Workspace`] and plain inputs and returns plain data; none prints (progress goes through the
//! `Reporter` and `TransferProgress` traits the caller passes).

pub mod apply;
pub mod hosts;
pub mod images;
pub mod plan;
pub mod state;

use std::path::PathBuf;

use sealer_engine::Clusterfile;
use sealer_providers::image::store::ImageStore;
use sealer_state::StateLocation;

/// Where an operation keeps what outlives it: the state, and `SEALER_HOME` (images, credentials, the
/// state key).
pub struct Workspace {
    pub state: StateLocation,
    pub home: PathBuf,
}

impl Workspace {
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
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// `user@host`, recorded with every lock and history entry.
pub fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// The command line as recorded with a lock and in the history, with any password in a URL masked.
pub fn command_line() -> String {
    std::env::args().map(|a| sealer_state::redact_url(&a)).collect::<Vec<_>>().join(" ")
}

/// The masters the Clusterfile declares, in its order.
pub fn masters(cf: &Clusterfile) -> Vec<std::net::IpAddr> {
    cf.cluster.hosts.iter().filter(|h| h.role == sealer_engine::clusterfile::Role::Master).map(|h| h.ip).collect()
}

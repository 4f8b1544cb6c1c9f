//! Private keys, read and decrypted once per process. A key with a passphrase is stretched with
//! bcrypt (OpenSSH's default: 16 rounds), a tenth of a second of CPU in a release build and seconds in
//! a debug one: done once per host, 64 hosts paid it 64 times, and done on the runtime's threads it
//! stalled every other host's handshake past its connect timeout. So the first session to need a key
//! decrypts it on a blocking thread, and every other session waits for that one result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use russh::keys::PrivateKey;
use tokio::sync::OnceCell;

use crate::error::TransportError;

/// What a decrypted key is known by: the file as it is now (a key rewritten in place is read again)
/// and the passphrase it was opened with.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Source {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    passphrase: Option<String>,
}

type Loaded = Result<Arc<PrivateKey>, String>;

static KEYS: LazyLock<Mutex<HashMap<Source, Arc<OnceCell<Loaded>>>>> = LazyLock::new(Default::default);

/// The key at `path`, opened with `passphrase`; a failure names the file, never the passphrase.
pub(super) async fn load(path: &Path, passphrase: Option<&str>) -> Result<Arc<PrivateKey>, TransportError> {
    let fail = |message: String| TransportError::KeyFile { path: path.display().to_string(), message };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let source = Source {
        path: path.to_path_buf(),
        modified: meta.modified().ok(),
        len: meta.len(),
        passphrase: passphrase.map(str::to_string),
    };
    let cell = KEYS.lock().map_err(|_| fail("key cache poisoned".into()))?.entry(source.clone()).or_default().clone();
    let loaded = cell
        .get_or_init(|| async move {
            let opened = tokio::task::spawn_blocking(move || {
                russh::keys::load_secret_key(&source.path, source.passphrase.as_deref()).map_err(|e| e.to_string())
            });
            match opened.await {
                Ok(key) => key.map(Arc::new),
                Err(e) => Err(format!("decrypting the key stopped: {e}")),
            }
        })
        .await;
    loaded.clone().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn keygen(dir: &Path, passphrase: &str) -> PathBuf {
        let path = dir.join("id_ed25519");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (openssh-client) runs");
        assert!(status.success(), "ssh-keygen failed");
        path
    }

    /// The runtime keeps turning while a key is decrypted (a timer on the only worker thread ticks), the
    /// hosts that ask at once share one decryption, and a key rewritten in place is read again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_passphrase_key_is_decrypted_once_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = keygen(dir.path(), "canary-passphrase");
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let started = Instant::now();
        let all = load_at_once(&path, 8).await;
        let took = started.elapsed();
        ticker.abort();
        assert!(all.iter().all(|k| Arc::ptr_eq(k, &all[0])), "eight hosts share one decrypted key");
        let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(ticks >= 3 || took < Duration::from_millis(5), "the runtime stalled for {took:?} ({ticks} ticks)");
        assert!(Arc::ptr_eq(&load(&path, Some("canary-passphrase")).await.unwrap(), &all[0]), "asked again: same key");

        let wrong = load(&path, Some("not-it")).await.unwrap_err().to_string();
        assert!(wrong.contains("id_ed25519") && !wrong.contains("not-it"), "{wrong}");

        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(path.with_extension("pub")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        keygen(dir.path(), "canary-passphrase");
        let again = load(&path, Some("canary-passphrase")).await.unwrap();
        assert!(!Arc::ptr_eq(&again, &all[0]), "a rewritten key file is read again");
    }

    async fn load_at_once(path: &Path, n: usize) -> Vec<Arc<PrivateKey>> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let path = path.to_path_buf();
            set.spawn(async move { load(&path, Some("canary-passphrase")).await.unwrap() });
        }
        set.join_all().await
    }
}

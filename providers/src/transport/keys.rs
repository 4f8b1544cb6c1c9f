//! Private keys, read and decrypted once per process. A key with a passphrase is stretched with
//! bcrypt (OpenSSH's default: 16 rounds), a tenth of a second of CPU in a release build: done once per
//! host, 64 hosts paid it 64 times, and done on the runtime's threads it stalled every other host's
//! handshake past its connect timeout. So the first session to need a key decrypts it on a blocking
//! thread, and every other session waiting at that moment takes that one result.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use russh::keys::PrivateKey;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::error::TransportError;

/// What a decrypted key is known by: the file as it is now, by the identity `DigestCache` also trusts
/// (device, inode, size, modification and change times to the nanosecond: a key replaced, rewritten or
/// `touch`ed is read again), and a digest of the passphrase it was opened with (the map keeps no
/// passphrase).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Source {
    path: PathBuf,
    file: (u64, u64, u64, i64, i64, i64, i64),
    passphrase: Option<[u8; 32]>,
}

/// One entry per key path: the key as its file and passphrase are now, once decrypted. A failure leaves
/// the entry empty: the next connection tries again.
static KEYS: LazyLock<Mutex<HashMap<Source, Decrypted>>> = LazyLock::new(Default::default);

/// A key decrypted once, shared by the connections that wait for it.
type Decrypted = Arc<OnceCell<Arc<PrivateKey>>>;

#[cfg(test)]
static DECRYPTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The key at `path`, opened with `passphrase`; a failure names the file, never the passphrase.
pub(super) async fn load(path: &Path, passphrase: Option<&str>) -> Result<Arc<PrivateKey>, TransportError> {
    let fail = |message: String| TransportError::KeyFile { path: path.display().to_string(), message };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let source = Source {
        path: path.to_path_buf(),
        file: (meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()),
        passphrase: passphrase.map(|p| Sha256::digest(p.as_bytes()).into()),
    };
    let cell = {
        let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        // An older version of this file, or the same file opened with another passphrase, is not used again.
        keys.retain(|s, _| s.path != source.path || *s == source);
        keys.entry(source.clone()).or_default().clone()
    };
    // Connections waiting while a decryption fails each try in turn: the failure is theirs to report.
    let key = cell
        .get_or_try_init(|| async {
            let (path, passphrase) = (path.to_path_buf(), passphrase.map(str::to_string));
            let opened = tokio::task::spawn_blocking(move || {
                #[cfg(test)]
                DECRYPTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                russh::keys::load_secret_key(path, passphrase.as_deref())
            });
            match opened.await {
                Ok(key) => key.map(Arc::new).map_err(|e| fail(e.to_string())),
                Err(_) => Err(fail("decrypting the key stopped before it ended".into())),
            }
        })
        .await?;
    Ok(key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const PASSPHRASE: &str = "canary-passphrase";

    fn keygen(path: &Path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(path.with_extension("pub"));
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", PASSPHRASE, "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen (openssh-client) runs");
        assert!(status.success(), "ssh-keygen failed");
    }

    async fn load_at_once(path: &Path, n: usize) -> Vec<Arc<PrivateKey>> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let path = path.to_path_buf();
            set.spawn(async move { load(&path, Some(PASSPHRASE)).await.unwrap() });
        }
        set.join_all().await
    }

    /// Eight hosts asking at once share one decryption, done while the runtime keeps turning (a timer on
    /// its only thread ticks); a failure is not kept and names the file, not the passphrase; a key file
    /// replaced in place, or only `touch`ed, is read again. (The only test here that opens a key, so the
    /// count is this test's.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_passphrase_key_is_decrypted_once_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        keygen(&path);
        let decryptions = || DECRYPTIONS.load(Ordering::SeqCst);
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let started = Instant::now();
        let all = load_at_once(&path, 8).await;
        let took = started.elapsed();
        ticker.abort();
        assert_eq!(decryptions(), 1, "eight hosts, one decryption");
        assert!(all.iter().all(|k| Arc::ptr_eq(k, &all[0])), "eight hosts share one decrypted key");
        let ticks = ticks.load(Ordering::Relaxed);
        assert!(ticks >= 3, "the runtime stalled while the key was decrypted ({took:?}, {ticks} ticks)");
        let first = load(&path, Some(PASSPHRASE)).await.unwrap();
        assert!(Arc::ptr_eq(&first, &all[0]) && decryptions() == 1, "asked again: the same key, not decrypted again");

        for _ in 0..2 {
            let wrong = load(&path, Some("not-it")).await.unwrap_err().to_string();
            assert!(wrong.contains("id_ed25519") && !wrong.contains("not-it"), "{wrong}");
        }
        assert_eq!(decryptions(), 3, "a failure is tried again by the next connection");

        let again = load(&path, Some(PASSPHRASE)).await.unwrap();
        assert_eq!(decryptions(), 4);
        let touched = std::process::Command::new("touch").arg(&path).status().unwrap();
        assert!(touched.success());
        let after_touch = load(&path, Some(PASSPHRASE)).await.unwrap();
        assert!(!Arc::ptr_eq(&after_touch, &again) && decryptions() == 5, "a touched key file is read again");
        keygen(&path);
        let replaced = load(&path, Some(PASSPHRASE)).await.unwrap();
        assert_ne!(replaced.public_key(), again.public_key(), "a replaced key file is read again");
        assert_eq!(KEYS.lock().unwrap().keys().filter(|s| s.path == path).count(), 1, "one entry a key file");
    }
}

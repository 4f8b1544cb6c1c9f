//! Secrets kept in the state (the ssh password of a host, needed again to remove it once the Clusterfile
//! no longer names it) are sealed with ChaCha20-Poly1305 under the user's state key: `SEALER_STATE_KEY`
//! (64 hex digits) or the key file `state.key` in the sealer home, created with mode 0600 on first use
//! and refused when others can read it. The resource address is the associated data, so a sealed value
//! cannot be moved to another host.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

const KEY_ENV: &str = "SEALER_STATE_KEY";
const KEY_FILE: &str = "state.key";
const FORMAT: &str = "v1:";

#[derive(Debug, Error)]
pub enum SealingError {
    #[error("{KEY_ENV} must be 64 hex digits (32 bytes)")]
    BadEnvKey,
    #[error("the state key file `{0}` must hold 64 hex digits (32 bytes)")]
    BadKeyFile(PathBuf),
    #[error("the state key file `{path}` can be read by others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyFileOpen { path: PathBuf, mode: u32 },
    #[error("cannot use the state key file `{path}`: {source}")]
    KeyFileIo { path: PathBuf, source: std::io::Error },
    #[error("no random numbers from the system")]
    Random,
    #[error(
        "a secret sealed in the state for `{0}` cannot be opened with this state key (another workstation's \
         key? set {KEY_ENV} or copy its `{KEY_FILE}`)"
    )]
    WrongKey(String),
}

/// What a sealed value is bound to (its associated data): the cluster, the resource and the attribute, so
/// that a ciphertext moved to another attribute (the password into the passphrase), host or cluster no
/// longer opens.
pub fn binding(cluster: &str, address: &str, attribute: &str) -> String {
    format!("sealer/v2 {cluster} {address} {attribute}")
}

pub struct SealingKey {
    key: LessSafeKey,
    /// For keyed digests, derived from the key so that the two uses never share a key.
    digests: ring::hmac::Key,
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SealingKey {
    fn from_bytes(bytes: &[u8]) -> Option<SealingKey> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        let derived = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes), b"sealer digests");
        let digests = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        Some(SealingKey { key: LessSafeKey::new(unbound), digests })
    }

    /// A keyed digest of `secret` for `owner` (a [`binding`]): it tells whether a secret changed without
    /// saying anything of it to whoever lacks the key (a plain hash of a short password could be guessed).
    pub fn digest(&self, owner: &str, secret: &str) -> String {
        let mut message = owner.as_bytes().to_vec();
        message.push(0);
        message.extend_from_slice(secret.as_bytes());
        format!("hmac-sha256:{}", hex(ring::hmac::sign(&self.digests, &message).as_ref()))
    }

    /// The key from the environment, else from `home/state.key`, creating that file when `create` and
    /// it does not exist. `None` when there is no key and `create` is false.
    pub fn load(home: &Path, create: bool) -> Result<Option<SealingKey>, SealingError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            let bytes = parse_hex(&text).ok_or(SealingError::BadEnvKey)?;
            return SealingKey::from_bytes(&bytes).map(Some).ok_or(SealingError::BadEnvKey);
        }
        let path = home.join(KEY_FILE);
        let io = |source| SealingError::KeyFileIo { path: path.clone(), source };
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SealingError::KeyFileOpen { path, mode });
                }
                let text = std::fs::read_to_string(&path).map_err(io)?;
                let bytes = parse_hex(&text).ok_or_else(|| SealingError::BadKeyFile(path.clone()))?;
                SealingKey::from_bytes(&bytes).map(Some).ok_or(SealingError::BadKeyFile(path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut bytes = [0u8; 32];
                SystemRandom::new().fill(&mut bytes).map_err(|_| SealingError::Random)?;
                std::fs::create_dir_all(home).map_err(io)?;
                // create_new: two applies starting at once never overwrite each other's key.
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| f.write_all(format!("{}\n", hex(&bytes)).as_bytes()));
                match written {
                    Ok(()) => Ok(SealingKey::from_bytes(&bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => SealingKey::load(home, false),
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// `secret` sealed for `owner` (a [`binding`]).
    pub fn seal(&self, owner: &str, secret: &str) -> Result<String, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealingError::Random)?;
        let mut data = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(owner.as_bytes()), &mut data)
            .map_err(|_| SealingError::Random)?;
        Ok(format!("{FORMAT}{}{}", hex(&nonce), hex(&data)))
    }

    /// Opens `attribute` of `address` in `cluster`, sealed for its [`binding`]; a value sealed by states
    /// before bindings (for the address alone) still opens, with `true` beside it: seal it again.
    pub fn open_bound(
        &self,
        cluster: &str,
        address: &str,
        attribute: &str,
        sealed: &str,
    ) -> Result<(String, bool), SealingError> {
        match self.open(&binding(cluster, address, attribute), sealed) {
            Ok(secret) => Ok((secret, false)),
            Err(e) => self.open(address, sealed).map(|secret| (secret, true)).map_err(|_| e),
        }
    }

    /// The secret sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<String, SealingError> {
        let wrong = || SealingError::WrongKey(owner.to_string());
        let bytes = sealed.strip_prefix(FORMAT).and_then(parse_hex).ok_or_else(wrong)?;
        if bytes.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = data.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(owner.as_bytes()), &mut data).map_err(|_| wrong())?;
        String::from_utf8(plain.to_vec()).map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealingKey::load(dir.path(), true).unwrap().unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = key.seal("host.10.0.0.2", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, key.seal("host.10.0.0.2", "hunter2").unwrap(), "a fresh nonce every time");
        assert_eq!(key.open("host.10.0.0.2", &sealed).unwrap(), "hunter2");
        assert!(matches!(key.open("host.10.0.0.3", &sealed), Err(SealingError::WrongKey(_))));
        let same = SealingKey::load(dir.path(), false).unwrap().unwrap();
        assert_eq!(same.open("host.10.0.0.2", &sealed).unwrap(), "hunter2");
        let other_dir = tempfile::tempdir().unwrap();
        let other = SealingKey::load(other_dir.path(), true).unwrap().unwrap();
        let err = other.open("host.10.0.0.2", &sealed).unwrap_err().to_string();
        assert!(err.contains("host.10.0.0.2") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_sealed_value_is_bound_to_its_cluster_host_and_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealingKey::load(dir.path(), true).unwrap().unwrap();
        let password = key.seal(&binding("c", "host.10.0.0.2", "ssh_password"), "pw").unwrap();
        assert_eq!(key.open_bound("c", "host.10.0.0.2", "ssh_password", &password).unwrap(), ("pw".into(), false));
        // Swapped into the passphrase, moved to another host or to another cluster: it does not open.
        assert!(key.open_bound("c", "host.10.0.0.2", "ssh_key_passphrase", &password).is_err());
        assert!(key.open_bound("c", "host.10.0.0.3", "ssh_password", &password).is_err());
        assert!(key.open_bound("other", "host.10.0.0.2", "ssh_password", &password).is_err());
        // A value an older state sealed for the address alone still opens, flagged to be sealed again.
        let legacy = key.seal("host.10.0.0.2", "pw").unwrap();
        assert_eq!(key.open_bound("c", "host.10.0.0.2", "ssh_password", &legacy).unwrap(), ("pw".into(), true));
    }

    #[test]
    fn keyed_digests_change_with_the_secret_and_the_key() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ka, kb) =
            (SealingKey::load(a.path(), true).unwrap().unwrap(), SealingKey::load(b.path(), true).unwrap().unwrap());
        let d = ka.digest("c config.x data", "user: admin");
        assert_eq!(d, ka.digest("c config.x data", "user: admin"));
        assert_ne!(d, ka.digest("c config.x data", "user: root"));
        assert_ne!(d, ka.digest("c config.y data", "user: admin"));
        assert_ne!(d, kb.digest("c config.x data", "user: admin"), "another key, another digest");
        assert!(!d.contains("admin"));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_and_none_is_made_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SealingKey::load(dir.path(), false).unwrap().is_none());
        assert!(!dir.path().join(KEY_FILE).exists());
        SealingKey::load(dir.path(), true).unwrap();
        std::fs::set_permissions(dir.path().join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(SealingKey::load(dir.path(), false), Err(SealingError::KeyFileOpen { mode: 0o644, .. })));
    }
}

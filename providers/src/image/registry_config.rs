//! The configuration of the registry a cluster image carries, as sealer's users override it: sealer's
//! `etc/registry_config.yaml` (or `.yml`: `domain`, `port`, `username`, `password`, `data`) and the
//! registry's own `etc/registry.yml` (distribution's configuration: storage, auth, http), which the image
//! may carry whole. What the image says wins; sealer fills in only what it leaves out (where the storage
//! is, the address, htpasswd auth for `username`/`password`).

use std::path::Path;

use base64::Engine as _;
use sealer_engine::kubeadm::{REGISTRY_DOMAIN, REGISTRY_PORT};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// The largest configuration file read.
const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("image file `{file}`: {message}")]
pub struct RegistryConfigError {
    file: String,
    message: String,
}

/// sealer's `registry_config.yaml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealerFile {
    domain: Option<String>,
    port: Option<serde_yaml::Value>,
    username: Option<String>,
    password: Option<String>,
    /// Where the registry keeps its storage on the host.
    data: Option<String>,
    ip: Option<String>,
}

/// What the cluster's registry runs with.
#[derive(Clone, Default)]
pub struct RegistrySettings {
    pub port: u16,
    pub username: Option<String>,
    password: Option<String>,
    data: Option<String>,
    /// The image's own `etc/registry.yml`.
    base: Option<Mapping>,
}

impl std::fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySettings").field("port", &self.port).field("username", &self.username).finish()
    }
}

fn read(rootfs: &Path, relative: &str) -> Result<Option<String>, RegistryConfigError> {
    let path = rootfs.join(relative);
    let bad = |message: String| RegistryConfigError { file: relative.to_string(), message };
    match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.is_file() => Err(bad("not a regular file".into())),
        Ok(m) if m.len() > MAX_BYTES => Err(bad(format!("over {MAX_BYTES} bytes"))),
        Ok(_) => std::fs::read_to_string(&path).map(Some).map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The port of `http.addr` (`:5001`, `0.0.0.0:5001`, `IP:5001`).
fn addr_port(base: &Mapping) -> Option<u16> {
    let addr = base.get("http")?.get("addr")?.as_str()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

impl RegistrySettings {
    /// Reads the image's registry configuration; defaults (`sea.hub:5000`, no auth) where it has none.
    pub fn load(rootfs: &Path) -> Result<RegistrySettings, RegistryConfigError> {
        let mut settings = RegistrySettings { port: REGISTRY_PORT, ..Default::default() };
        if let Some(text) = read(rootfs, "etc/registry.yml")? {
            let bad = |message: String| RegistryConfigError { file: "etc/registry.yml".into(), message };
            let base: Mapping = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            settings.port = addr_port(&base).unwrap_or(REGISTRY_PORT);
            settings.base = Some(base);
        }
        for file in ["etc/registry_config.yaml", "etc/registry_config.yml"] {
            let Some(text) = read(rootfs, file)? else { continue };
            let bad = |message: String| RegistryConfigError { file: file.into(), message };
            let sealer: SealerFile = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if sealer.domain.as_deref().is_some_and(|d| d != REGISTRY_DOMAIN) {
                return Err(bad(format!("`domain` must be {REGISTRY_DOMAIN}: every host resolves the registry by it")));
            }
            if sealer.ip.is_some() {
                return Err(bad("`ip` is not supported: the registry runs on the first master".into()));
            }
            if let Some(port) = &sealer.port {
                let text = match port {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                settings.port = text
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(format!("`port` `{text}` is not a TCP port")))?;
            }
            if sealer.username.is_some() != sealer.password.is_some() {
                return Err(bad("`username` and `password` go together".into()));
            }
            if let Some(user) = &sealer.username {
                if user.is_empty() || user.contains([':', '\n']) {
                    return Err(bad("`username` must be non-empty, without `:` or a newline".into()));
                }
            }
            if let Some(data) = &sealer.data {
                if !data.starts_with('/') || data.contains(['\n', '\0']) {
                    return Err(bad("`data` must be an absolute path".into()));
                }
            }
            settings.username = sealer.username;
            settings.password = sealer.password;
            settings.data = sealer.data;
            break;
        }
        Ok(settings)
    }

    /// The `Authorization` header a puller sends (`Basic ...`), when the registry needs a login.
    pub fn authorization(&self) -> Option<String> {
        let (user, password) = (self.username.as_ref()?, self.password.as_ref()?);
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
    }

    /// The htpasswd line for the login, bcrypt-hashed, when the image's own configuration leaves auth to
    /// sealer.
    pub fn htpasswd(&self) -> Option<String> {
        if self.base.as_ref().is_some_and(|b| b.contains_key("auth")) {
            return None;
        }
        let (user, password) = (self.username.as_ref()?, self.password.as_ref()?);
        bcrypt::hash(password, bcrypt::DEFAULT_COST).ok().map(|hash| format!("{user}:{hash}\n"))
    }

    /// The configuration the registry on `ip` runs with: the image's `etc/registry.yml` with what it
    /// leaves out filled in (storage under `rootfs/registry` or `data`, the address, htpasswd auth).
    pub fn config(&self, ip: std::net::IpAddr, rootfs: &str, htpasswd_path: &str) -> String {
        let mut config = self.base.clone().unwrap_or_default();
        let mut set = |key: &str, value: Value| {
            config.entry(key.into()).or_insert(value);
        };
        set("version", "0.1".into());
        let storage = self.data.clone().unwrap_or_else(|| format!("{rootfs}/registry"));
        set(
            "storage",
            serde_yaml::from_str(&format!("filesystem: {{rootdirectory: {}}}", serde_json::json!(storage)))
                .unwrap_or_default(),
        );
        set("http", serde_yaml::from_str(&format!("addr: \"{ip}:{}\"", self.port)).unwrap_or_default());
        if self.htpasswd().is_some() {
            let auth = format!("htpasswd: {{realm: sealer-registry, path: {}}}", serde_json::json!(htpasswd_path));
            set("auth", serde_yaml::from_str(&auth).unwrap_or_default());
        }
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// Where the registry keeps its storage, when `data` moved it out of the rootfs.
    pub fn storage(&self, rootfs: &str) -> String {
        self.data.clone().unwrap_or_else(|| format!("{rootfs}/registry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_files_win_and_sealer_fills_in_the_rest() {
        let rootfs = tempfile::tempdir().unwrap();
        let none = RegistrySettings::load(rootfs.path()).unwrap();
        assert_eq!((none.port, none.authorization()), (5000, None));
        let config = none.config("10.0.0.2".parse().unwrap(), "/r", "/h");
        assert!(config.contains("rootdirectory: /r/registry") && config.contains("addr: 10.0.0.2:5000"), "{config}");

        std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        std::fs::write(
            rootfs.path().join("etc/registry_config.yaml"),
            "domain: sea.hub\nport: \"5001\"\nusername: u\npassword: Pw-1\n",
        )
        .unwrap();
        let s = RegistrySettings::load(rootfs.path()).unwrap();
        assert_eq!(s.port, 5001);
        assert_eq!(s.authorization().unwrap(), "Basic dTpQdy0x");
        assert!(s.htpasswd().unwrap().starts_with("u:$2"), "bcrypt, as distribution's htpasswd wants");
        let config = s.config("10.0.0.2".parse().unwrap(), "/r", "/h/htpasswd");
        assert!(config.contains("path: /h/htpasswd") && config.contains("addr: 10.0.0.2:5001"), "{config}");
        assert!(!format!("{s:?}").contains("Pw-1"), "the password is never shown");

        // The image's own registry.yml: its storage and port are kept.
        std::fs::write(
            rootfs.path().join("etc/registry.yml"),
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /data\nhttp:\n  addr: :5002\n",
        )
        .unwrap();
        std::fs::remove_file(rootfs.path().join("etc/registry_config.yaml")).unwrap();
        let s = RegistrySettings::load(rootfs.path()).unwrap();
        let config = s.config("10.0.0.2".parse().unwrap(), "/r", "/h");
        assert_eq!(s.port, 5002);
        assert!(config.contains("rootdirectory: /data") && config.contains("addr: :5002"), "{config}");

        for (bad, why) in [
            ("domain: other.hub\n", "must be sea.hub"),
            ("username: u\n", "go together"),
            ("port: x\n", "not a TCP port"),
            ("colour: red\n", "unknown field"),
        ] {
            std::fs::write(rootfs.path().join("etc/registry_config.yaml"), bad).unwrap();
            let err = RegistrySettings::load(rootfs.path()).unwrap_err().to_string();
            assert!(err.contains("etc/registry_config.yaml") && err.contains(why), "{bad}: {err}");
        }
    }
}

//! Registry mirrors for builds (`--registry-mirror docker.io=http://127.0.0.1:5000`, and the same in
//! `$SEALER_HOME/registries.yaml`, in k3s's format): a build behind a corporate pull-through mirror pulls
//! `docker.io/library/nginx:1` from the mirror, and the image still carries it as `docker.io/library/nginx:1`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One mirror: where the registry's repositories are fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    pub host: String,
    /// The endpoint is `http://`.
    pub plain_http: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirrors(BTreeMap<String, Mirror>);

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("--registry-mirror `{0}`: expected REGISTRY=http[s]://HOST[:PORT]")]
    Flag(String),
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// `registries.yaml`: `mirrors: {docker.io: {endpoint: ["http://127.0.0.1:5000"]}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistriesFile {
    #[serde(default)]
    mirrors: BTreeMap<String, MirrorEntry>,
    /// Credentials and TLS settings live in `sealer login`; accepted here so a k3s file can be reused.
    #[serde(default, rename = "configs")]
    _configs: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorEntry {
    endpoint: Vec<String>,
}

/// The largest registries.yaml read.
const MAX_FILE_BYTES: u64 = 1 << 20;

fn endpoint(url: &str) -> Option<Mirror> {
    let (plain_http, rest) = match url.split_once("://") {
        Some(("http", rest)) => (true, rest),
        Some(("https", rest)) => (false, rest),
        None => (false, url),
        Some(_) => return None,
    };
    let host = rest.trim_end_matches('/');
    let valid = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    valid.then(|| Mirror { host: host.to_string(), plain_http })
}

fn registry_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

impl Mirrors {
    /// `$SEALER_HOME/registries.yaml` (when there is one), then the `--registry-mirror` flags over it.
    pub fn load(home: &Path, flags: &[String]) -> Result<Mirrors, MirrorError> {
        let mut mirrors = Mirrors::default();
        let path = home.join("registries.yaml");
        let file = path.display().to_string();
        let bad = |message: String| MirrorError::File { file: file.clone(), message };
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE_BYTES => return Err(bad(format!("over {MAX_FILE_BYTES} bytes"))),
            Ok(_) => {
                let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
                let parsed: RegistriesFile = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
                for (registry, entry) in parsed.mirrors {
                    let first =
                        entry.endpoint.first().ok_or_else(|| bad(format!("mirrors.{registry}: no endpoint")))?;
                    let mirror = endpoint(first)
                        .filter(|_| registry_name_ok(&registry))
                        .ok_or_else(|| bad(format!("mirrors.{registry}: `{first}` is not http[s]://HOST[:PORT]")))?;
                    mirrors.0.insert(registry, mirror);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(e.to_string())),
        }
        for flag in flags {
            let (registry, url) = flag.split_once('=').ok_or_else(|| MirrorError::Flag(flag.clone()))?;
            let mirror =
                endpoint(url).filter(|_| registry_name_ok(registry)).ok_or_else(|| MirrorError::Flag(flag.clone()))?;
            mirrors.0.insert(registry.to_string(), mirror);
        }
        Ok(mirrors)
    }

    /// The mirror of `registry` (`docker.io` also answers for `index.docker.io` and
    /// `registry-1.docker.io`, the names Docker Hub resolves to).
    pub fn of(&self, registry: &str) -> Option<&Mirror> {
        let hub = matches!(registry, "index.docker.io" | "registry-1.docker.io");
        self.0.get(registry).or_else(|| if hub { self.0.get("docker.io") } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_go_over_the_file_and_bad_ones_are_named() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("registries.yaml"),
            "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.corp:5000\"]\n  quay.io:\n    endpoint: [\"http://10.0.0.9\"]\n",
        )
        .unwrap();
        let m = Mirrors::load(home.path(), &["docker.io=http://127.0.0.1:5000".into()]).unwrap();
        assert_eq!(m.of("registry-1.docker.io"), Some(&Mirror { host: "127.0.0.1:5000".into(), plain_http: true }));
        assert_eq!(m.of("quay.io"), Some(&Mirror { host: "10.0.0.9".into(), plain_http: true }));
        assert_eq!(m.of("ghcr.io"), None);
        for bad in ["docker.io", "docker.io=ftp://x", "docker.io=http://a b", "=http://x"] {
            let err = Mirrors::load(home.path(), &[bad.to_string()]).unwrap_err();
            assert!(err.to_string().contains("expected REGISTRY="), "{bad}: {err}");
        }
        std::fs::write(home.path().join("registries.yaml"), "mirrors:\n  docker.io:\n    endpont: []\n").unwrap();
        let err = Mirrors::load(home.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("registries.yaml"), "{err}");
    }
}

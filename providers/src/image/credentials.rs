//! Registry credentials (`sealer login`), kept in `$SEALER_HOME/auth.json` with mode 0600 and never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::ImageError;

#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    registries: BTreeMap<String, Login>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Login {
    username: String,
    password: String,
}

pub struct Credentials {
    path: PathBuf,
}

fn io(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl Credentials {
    pub fn new(home: &Path) -> Self {
        Credentials { path: home.join("auth.json") }
    }

    fn read(&self) -> Result<AuthFile, ImageError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| io(&self.path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(io(&self.path, e)),
        }
    }

    fn write(&self, file: &AuthFile) -> Result<(), ImageError> {
        let text = serde_json::to_vec_pretty(file).map_err(|e| io(&self.path, e))?;
        crate::private::write_private(&self.path, &text).map_err(|e| io(&self.path, e))
    }

    pub fn login(&self, registry: &str, username: &str, password: &str) -> Result<(), ImageError> {
        let mut file = self.read()?;
        file.registries.insert(registry.to_string(), Login { username: username.into(), password: password.into() });
        self.write(&file)
    }

    /// Whether there was a login to remove.
    pub fn logout(&self, registry: &str) -> Result<bool, ImageError> {
        let mut file = self.read()?;
        let removed = file.registries.remove(registry).is_some();
        self.write(&file)?;
        Ok(removed)
    }

    pub fn get(&self, registry: &str) -> Result<Option<(String, String)>, ImageError> {
        Ok(self.read()?.registries.get(registry).map(|l| (l.username.clone(), l.password.clone())))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn logins_are_kept_0600_and_removed() {
        let dir = std::env::temp_dir().join(format!("sealer-cred-test-{}", std::process::id()));
        let c = Credentials::new(&dir);
        c.login("r.example:5000", "u", "p").unwrap();
        assert_eq!(c.get("r.example:5000").unwrap(), Some(("u".into(), "p".into())));
        let mode = std::fs::metadata(dir.join("auth.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(c.logout("r.example:5000").unwrap());
        assert_eq!(c.get("r.example:5000").unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}

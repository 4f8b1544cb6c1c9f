//! State storage: [`SqliteStore`] (the default, a local file), [`PostgresStore`] (shared by a team, with
//! an advisory lock) and saved plan files. [`StateLocation`] picks the backend from `--state`.

mod codec;
mod error;
mod planfile;
mod postgres;
mod sealing;
mod sqlite;

use std::path::{Path, PathBuf};

use sealer_engine::{StateError, StateStore};

pub use error::PlanFileError;
pub use planfile::{plan_file_text, read_plan_file};
pub use postgres::{redact_url, PostgresStore, PG_SCHEMA_VERSION};
pub use sealing::{binding, SealingError, SealingKey};
pub use sqlite::{SqliteStore, SCHEMA_VERSION};

/// Where a state lives: a SQLite file, or a PostgreSQL database given as a `postgres://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StateLocation {
    pub fn parse(text: &str) -> Self {
        let scheme = text.get(..13).unwrap_or(text).to_ascii_lowercase();
        if scheme.starts_with("postgres://") || scheme.starts_with("postgresql://") {
            StateLocation::Postgres(text.to_string())
        } else {
            StateLocation::Sqlite(PathBuf::from(text))
        }
    }

    /// Opens for writing, creating the store (file or tables) when needed.
    pub fn open(&self) -> Result<Box<dyn StateStore>, StateError> {
        Ok(match self {
            StateLocation::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            StateLocation::Postgres(url) => Box::new(PostgresStore::open(url)?),
        })
    }

    /// Opens for reading only; `None` when nothing was ever written there. Creates nothing.
    pub fn open_read_only(&self) -> Result<Option<Box<dyn StateStore>>, StateError> {
        Ok(match self {
            StateLocation::Sqlite(path) => {
                SqliteStore::open_read_only(path)?.map(|s| Box::new(s) as Box<dyn StateStore>)
            }
            StateLocation::Postgres(url) => {
                PostgresStore::open_read_only(url)?.map(|s| Box::new(s) as Box<dyn StateStore>)
            }
        })
    }

    /// The local directory for what belongs beside the state but not in it (apply logs): the state file's
    /// directory, or `.sealer` for a database.
    pub fn local_dir(&self) -> &Path {
        match self {
            StateLocation::Sqlite(path) => path.parent().unwrap_or(Path::new("")),
            StateLocation::Postgres(_) => Path::new(".sealer"),
        }
    }
}

/// Shown without any password.
impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

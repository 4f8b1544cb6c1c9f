//! State storage: [`SqliteStore`] (the default, a local file) and saved plan files.

mod error;
mod planfile;
mod sqlite;

pub use error::PlanFileError;
pub use planfile::{read_plan_file, write_plan_file};
pub use sqlite::{SqliteStore, SCHEMA_VERSION};

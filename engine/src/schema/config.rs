//! `config.NAME.IP`: a Config document's file on a host.

use super::{found, schema, Field, Known, Mismatch, Rules};
use crate::resource::Value;

/// A document's data: its text, or, for a `toSecret` document, nothing (the data never enters a resource).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigData {
    Text(String),
    Secret,
}

impl Default for ConfigData {
    fn default() -> Self {
        ConfigData::Text(String::new())
    }
}

impl Field for ConfigData {
    fn to_value(&self) -> Option<Value> {
        Some(match self {
            ConfigData::Text(t) => Value::Text(t.clone()),
            ConfigData::Secret => Value::Sensitive,
        })
    }
    fn from_value(value: Option<&Value>) -> Result<Self, Mismatch> {
        match value {
            None => Ok(ConfigData::default()),
            Some(Value::Text(t)) => Ok(ConfigData::Text(t.clone())),
            Some(Value::Sensitive | Value::Sealed(_)) => Ok(ConfigData::Secret),
            Some(other) => Err(Mismatch { expected: "text or a secret", found: found(other) }),
        }
    }
}

schema! {
    pub struct Config for Config {
        name: String,
        /// Where in the rootfs the file is.
        path: String,
        /// `overwrite` or `merge`.
        strategy: String,
        /// Steps applied to the data before it is written (`value|toJson|toBase64|toSecret`).
        process: Vec<String>,
        data: ConfigData,
        /// A rebuilt image may bring its own version of the file: the document goes over it again.
        image_digest: Known<String>,
        /// For a secret document, a keyed digest of its data: it shows a change without the data.
        data_digest: Option<Known<String>>,
    }
}

impl Rules for Config {
    fn problems(&self) -> Vec<String> {
        crate::clusterfile::rules::rootfs_path_problem(&self.path).map(|p| format!("path: {p}")).into_iter().collect()
    }
}

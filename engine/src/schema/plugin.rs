//! `plugin.NAME.PHASE.IP`: a Plugin document run on a host at its phase.

use std::collections::BTreeMap;

use super::{env_problems, schema, Known, Rules};
use crate::clusterfile::Phase;

schema! {
    pub struct Plugin for Plugin {
        /// `SHELL`, `LABEL`, `HOSTNAME`, `ETCD`, `TAINT`, or an executable of the image's `plugins/`.
        r#type: String,
        phase: String,
        /// `create` or `delete`: a clean phase runs when the resource is deleted.
        runs_on: String,
        data: Option<String>,
        /// The host's env, for SHELL and executable plugins.
        env: Option<BTreeMap<String, String>>,
        /// ETCD: where the snapshot landed on the operator's machine, its checksum and size.
        snapshot: Option<Known<String>>,
        sha256: Option<Known<String>>,
        bytes: Option<Known<i64>>,
    }
}

impl Plugin {
    pub fn runs_on_delete(&self) -> bool {
        self.runs_on == "delete"
    }
}

impl Rules for Plugin {
    fn problems(&self) -> Vec<String> {
        let kind = &self.r#type;
        let mut problems = env_problems(self.env.as_ref());
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            problems.push(format!("plugin type `{kind}` is not a type or an executable name"));
        }
        if !self.phase.is_empty() && Phase::from_name(&self.phase).is_none() {
            problems.push(format!("`{}` is not a plugin phase", self.phase));
        }
        problems
    }
}

//! `guest.IP`: the cluster image's CMDs, run on the first master once the cluster is complete.

use std::collections::BTreeMap;

use super::{env_problems, schema, Known, Rules};

schema! {
    pub struct Guest for Guest {
        image: String,
        cmd_args: Vec<String>,
        /// What ran, known once it ran.
        cmds: Known<Vec<String>>,
        /// A rebuilt image runs its CMDs again.
        image_digest: Known<String>,
        /// The first master's env.
        env: Option<BTreeMap<String, String>>,
    }
}

impl Rules for Guest {
    fn problems(&self) -> Vec<String> {
        env_problems(self.env.as_ref())
    }
}

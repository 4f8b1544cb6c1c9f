//! `app.NAME`: an application image of `spec.apps`.

use std::collections::BTreeMap;

use super::{env_problems, schema, Known, Rules};

schema! {
    pub struct App for App {
        image: String,
        /// A rebuilt application runs again.
        digest: Known<String>,
        /// Where its files go.
        masters: Vec<String>,
        /// Whose registry holds its container images: a new first master gets them too.
        first_master: Option<String>,
        /// What ran, known once it is delivered.
        cmds: Known<Vec<String>>,
        /// What removing the application runs, known once it is delivered.
        clean_cmds: Known<Vec<String>>,
        env: Option<BTreeMap<String, String>>,
    }
}

impl Rules for App {
    fn problems(&self) -> Vec<String> {
        env_problems(self.env.as_ref())
    }

    const COMPLETES_OLDER: bool = true;

    /// A record written before `first_master` existed was made with the first master the state records.
    fn complete_older(&mut self, first_master: &str) {
        self.first_master.get_or_insert_with(|| first_master.to_string());
    }
}

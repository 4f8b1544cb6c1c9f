//! `label.IP`: the labels the Clusterfile declares for a node.

use std::collections::BTreeMap;

use super::{schema, Rules};
use crate::clusterfile::rules;

schema! {
    pub struct Label for Label {
        labels: BTreeMap<String, String>,
    }
}

impl Rules for Label {
    fn problems(&self) -> Vec<String> {
        self.labels
            .iter()
            .filter(|(k, v)| rules::label_key_problem(k).or_else(|| rules::label_value_problem(v)).is_some())
            .map(|(k, v)| format!("label `{k}={v}` is not a Kubernetes label"))
            .collect()
    }
}

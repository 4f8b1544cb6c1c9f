//! `taint.IP`: the taints the Clusterfile declares for a node, and those it asks removed.

use super::{schema, Rules};

schema! {
    pub struct Taint for Taint {
        taints: Vec<String>,
        /// Taints declared with a trailing `-`: removed from the node.
        absent: Option<Vec<String>>,
    }
}

impl Rules for Taint {}

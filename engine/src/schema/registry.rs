//! `registry.IP`: the cluster's registry on the first master, holding the image's container images.

use super::{schema, Rules};

schema! {
    pub struct Registry for Registry {
        domain: String,
        port: i64,
        image: String,
        /// The login of the image's registry (its password stays in the image).
        username: Option<String>,
    }
}

impl Rules for Registry {}

//! `image.IP`: the cluster image's files on a host, and its container runtime pointed at the registry.

use std::collections::BTreeMap;

use super::{schema, Known, Rules};

schema! {
    /// Nothing forces a replacement: another image (or a rebuilt one) is copied over the old in place, only
    /// changed files travel, and what other kinds wrote (`/etc/hosts`, Config files) stays.
    pub struct Image for Image {
        image: String,
        /// The image's digest: a rebuilt image under the same name is a change.
        digest: Known<String>,
        /// Registries the host's container runtime pulls through the cluster's registry.
        mirrors: Vec<String>,
        mirror_endpoint: String,
        /// The image's templates rendered with the host's env, by path in the rootfs.
        templates: Option<BTreeMap<String, String>>,
    }
}

impl Rules for Image {}

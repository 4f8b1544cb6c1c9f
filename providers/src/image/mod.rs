//! Cluster images: the Kubefile, the local image store, and their transfer to and from registries.

pub mod credentials;
pub mod kubefile;
pub mod lite;
pub mod login;
pub mod mirrors;
pub mod oci;
pub mod registry_config;
pub mod store;
mod upload;

/// Bytes as they travel or are packed, one item (a blob, a rootfs) at a time: the CLI draws a bar from it.
pub trait TransferProgress: Send + Sync {
    fn start(&self, item: &str, total: u64, already: u64);
    fn advance(&self, bytes: u64);
    /// The item is done (`skipped`: the other side already had it).
    fn finish(&self, item: &str, skipped: bool);
}

/// Nothing shown.
pub struct Quiet;

impl TransferProgress for Quiet {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self, _: &str, _: bool) {}
}

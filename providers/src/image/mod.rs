//! Cluster images: the Kubefile and the local image store.

pub mod credentials;
pub mod kubefile;
pub mod lite;
pub mod oci;
pub mod store;
mod upload;

//! Cluster images: the Kubefile and the local image store.

pub mod kubefile;
pub mod store;

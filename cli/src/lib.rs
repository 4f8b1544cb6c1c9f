//! The operations behind `sealer`'s commands, as library functions with plain inputs and outputs, so that
//! the commands only parse arguments and render, and other front ends (a reconcile loop, tests) reuse them.

pub mod ops;

use std::path::PathBuf;

/// `$SEALER_HOME`, else `~/.sealer`: the local image store, credentials and the state key live there.
pub fn sealer_home() -> PathBuf {
    match std::env::var_os("SEALER_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".sealer"),
    }
}

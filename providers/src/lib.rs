//! Transports and resource providers: everything that reaches a host.

pub mod cluster;
mod error;
pub mod image;
pub mod private;
pub mod redact;
pub mod shell;
pub mod transport;

pub use error::{ProviderError, TransportError};
pub use transport::{ExecOutput, SshAuth, SshSession, SshTarget};

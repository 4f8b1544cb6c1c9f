use std::net::IpAddr;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("cannot reach `{host}:{port}` over ssh after {attempts} attempt(s): {message}")]
    Unreachable { host: IpAddr, port: u16, attempts: u32, message: String },
    #[error("ssh authentication of `{user}` on `{host}` failed ({method})")]
    Auth { host: IpAddr, user: String, method: &'static str },
    #[error(
        "the host key of `{host}` changed: expected {expected}, the host offered {found}; if the host was \
         reinstalled, remove its `host` resource from the state (or fix the host) and apply again"
    )]
    HostKeyChanged { host: IpAddr, expected: String, found: String },
    #[error("the host key of `{host}` ({found}) is not known and --strict-host-keys is set")]
    HostKeyUnknown { host: IpAddr, found: String },
    #[error("cannot read the ssh private key `{path}`: {message}")]
    KeyFile { path: String, message: String },
    #[error("ssh to `{host}`: {message}")]
    Channel { host: IpAddr, message: String },
    #[error("`{what}` on `{host}` did not finish within {seconds} s")]
    Timeout { host: IpAddr, what: String, seconds: u64 },
}

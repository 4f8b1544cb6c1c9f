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
    #[error("sudo for `{user}` on `{host}`: {message}")]
    Sudo { host: IpAddr, user: String, message: String },
    #[error("ssh to `{host}`: {message}")]
    Channel { host: IpAddr, message: String },
    /// The connection ended because the host answered no keepalive: it is unreachable (a partition, a
    /// machine down), and what ran there may or may not have finished.
    #[error(
        "`{host}` stopped answering: no reply over ssh for up to {seconds} s (a partition, or the machine is \
         down); the command running there may not have finished"
    )]
    StoppedAnswering { host: IpAddr, seconds: u64 },
    #[error("`{what}` on `{host}` did not finish within {seconds} s")]
    Timeout { host: IpAddr, what: String, seconds: u64 },
}

/// Why a change to a host failed. Each keeps the host, and for a command its first line and exit status.
#[derive(Debug, Error)]
pub enum ProviderError {
    /// A record or a planned resource that does not read as its kind (a state edited by hand).
    #[error("`{address}`: {source}")]
    Schema { address: String, source: sealer_engine::schema::SchemaError },
    #[error("`{command}` on `{host}` exited with {status}: {detail}")]
    Command { host: IpAddr, command: String, status: u32, detail: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("no ssh credentials for `{0}`")]
    NoCredentials(IpAddr),
    #[error("`{address}` has no host")]
    NoHost { address: String },
    #[error("the cluster image is not in the local store")]
    NoImage,
    #[error("the application image `{0}` is not in the local store")]
    NoAppImage(String),
    #[error(transparent)]
    RegistryConfig(#[from] crate::image::registry_config::RegistryConfigError),
    /// A command succeeded but printed something sealer cannot use (invalid JSON, no join command).
    #[error("{what} on `{host}`: {message}")]
    Unexpected { host: IpAddr, what: String, message: String },
    #[error("`{host}` is no control-plane member of a kubeadm cluster: it has no /etc/kubernetes/admin.conf")]
    NotControlPlane { host: IpAddr },
    #[error("the hostname of `{host}` is `{now}` after setting `{wanted}`")]
    HostnameNotSet { host: IpAddr, wanted: String, now: String },
    #[error("Config `{path}`: {message}")]
    Config { path: String, message: String },
    #[error("plugin `{plugin}` on `{host}`: {message}")]
    Plugin { plugin: String, host: IpAddr, message: String },
    #[error("nodes not Ready after {seconds} s: {nodes}")]
    NotReady { seconds: u64, nodes: String },
    #[error("`{path}` from `{host}` has SHA-256 {actual}, the host computed {expected}: not kept")]
    Checksum { host: IpAddr, path: String, actual: String, expected: String },
    #[error(transparent)]
    Kubeadm(#[from] sealer_engine::KubeadmError),
    #[error("cannot {what} `{path}`: {source}")]
    Local {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

//! SSH to the hosts with russh: one connection per host, reused by every command, with at most
//! [`MAX_CHANNELS`] channels open at once (OpenSSH's `MaxSessions` is 10), connect retries with backoff,
//! and host keys pinned on first contact.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::Semaphore;

use crate::error::TransportError;
use crate::shell::quote;

/// Channels one connection may have open at once; OpenSSH refuses the 11th by default.
pub const MAX_CHANNELS: usize = 8;
const CONNECT_ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub enum SshAuth {
    Password(String),
    Key { path: PathBuf, passphrase: Option<String> },
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAuth::Password(_) => f.write_str("Password((sensitive))"),
            SshAuth::Key { path, .. } => write!(f, "Key({})", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SshTarget {
    pub ip: IpAddr,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    /// The host key recorded at first contact (OpenSSH public key format), if any.
    pub known_host_key: Option<String>,
    /// Refuse hosts whose key is not known yet (`StrictHostKeyChecking=yes`).
    pub strict_host_keys: bool,
    pub connect_timeout: Duration,
}

#[derive(Debug)]
pub struct ExecOutput {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim_end().to_string()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_string()
    }
}

/// What the server offered, recorded by the handler during key exchange.
#[derive(Default)]
struct Offered {
    key: Option<PublicKey>,
}

struct Client {
    known: Option<String>,
    strict: bool,
    offered: Arc<Mutex<Offered>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else { return Ok(false) };
        if let Ok(mut offered) = self.offered.lock() {
            offered.key = Some(key.clone());
        }
        Ok(match &self.known {
            Some(known) => openssh(key) == *known,
            None => !self.strict,
        })
    }
}

fn openssh(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_string()
}

/// `SHA256:...` as `ssh-keygen -lf` prints it.
pub fn fingerprint(openssh_key: &str) -> String {
    PublicKey::from_openssh(openssh_key)
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        .unwrap_or_else(|_| "an unreadable key".into())
}

pub struct SshSession {
    target: SshTarget,
    handle: Handle<Client>,
    channels: Semaphore,
    host_key: String,
}

impl SshSession {
    pub async fn connect(target: SshTarget) -> Result<Self, TransportError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(600)),
            keepalive_interval: Some(Duration::from_secs(15)),
            nodelay: true,
            ..Default::default()
        });
        let mut last_error = String::new();
        for attempt in 1..=CONNECT_ATTEMPTS {
            let offered = Arc::new(Mutex::new(Offered::default()));
            let handler = Client {
                known: target.known_host_key.clone(),
                strict: target.strict_host_keys,
                offered: offered.clone(),
            };
            let connecting = client::connect(config.clone(), (target.ip, target.port), handler);
            match tokio::time::timeout(target.connect_timeout, connecting).await {
                Ok(Ok(handle)) => {
                    let host_key = offered.lock().ok().and_then(|o| o.key.as_ref().map(openssh)).unwrap_or_default();
                    let mut session =
                        SshSession { target: target.clone(), handle, channels: Semaphore::new(MAX_CHANNELS), host_key };
                    session.authenticate().await?;
                    return Ok(session);
                }
                Ok(Err(russh::Error::UnknownKey)) => {
                    let found = offered.lock().ok().and_then(|o| o.key.as_ref().map(openssh)).unwrap_or_default();
                    return Err(match &target.known_host_key {
                        Some(expected) => TransportError::HostKeyChanged {
                            host: target.ip,
                            expected: fingerprint(expected),
                            found: fingerprint(&found),
                        },
                        None => TransportError::HostKeyUnknown { host: target.ip, found: fingerprint(&found) },
                    });
                }
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = format!("no answer within {} s", target.connect_timeout.as_secs()),
            }
            if attempt < CONNECT_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1))).await;
            }
        }
        Err(TransportError::Unreachable {
            host: target.ip,
            port: target.port,
            attempts: CONNECT_ATTEMPTS,
            message: last_error,
        })
    }

    async fn authenticate(&mut self) -> Result<(), TransportError> {
        let t = &self.target;
        let channel_error = |e: russh::Error| TransportError::Channel { host: t.ip, message: e.to_string() };
        let (result, method) = match &t.auth {
            SshAuth::Password(password) => {
                (self.handle.authenticate_password(&t.user, password).await.map_err(channel_error)?, "password")
            }
            SshAuth::Key { path, passphrase } => {
                let key = russh::keys::load_secret_key(path, passphrase.as_deref()).map_err(|e| {
                    TransportError::KeyFile { path: path.display().to_string(), message: e.to_string() }
                })?;
                let hash = self.handle.best_supported_rsa_hash().await.map_err(channel_error)?.flatten();
                let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
                (self.handle.authenticate_publickey(&t.user, key).await.map_err(channel_error)?, "public key")
            }
        };
        if result.success() {
            Ok(())
        } else {
            Err(TransportError::Auth { host: t.ip, user: t.user.clone(), method })
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.target.ip
    }

    /// The host key the server presented (OpenSSH format), to pin in the state.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// Runs `command` with `sh -c` (through `sudo` for other users than root), feeding `stdin`, and waits
    /// for its exit status. The sudo password, when needed, travels on stdin, never in the command line.
    pub async fn exec(&self, command: &str, stdin: &[u8], timeout: Duration) -> Result<ExecOutput, TransportError> {
        let ip = self.target.ip;
        let fail = |e: russh::Error| TransportError::Channel { host: ip, message: e.to_string() };
        let _permit =
            self.channels.acquire().await.map_err(|e| TransportError::Channel { host: ip, message: e.to_string() })?;
        let (line, input) = self.wrap(command, stdin);
        let run = async {
            let mut channel = self.handle.channel_open_session().await.map_err(fail)?;
            channel.exec(true, line.as_bytes()).await.map_err(fail)?;
            if !input.is_empty() {
                channel.data(&input[..]).await.map_err(fail)?;
            }
            channel.eof().await.map_err(fail)?;
            let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        stderr.extend_from_slice(format!("killed by signal {signal_name:?}").as_bytes());
                        status = Some(128);
                    }
                    _ => {}
                }
            }
            let status = status.ok_or_else(|| TransportError::Channel {
                host: ip,
                message: "the connection closed before the command finished".into(),
            })?;
            Ok(ExecOutput { status, stdout, stderr })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                host: ip,
                what: command.lines().next().unwrap_or_default().chars().take(80).collect(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    fn wrap(&self, command: &str, stdin: &[u8]) -> (String, Vec<u8>) {
        if self.target.user == "root" {
            return (command.to_string(), stdin.to_vec());
        }
        match &self.target.auth {
            SshAuth::Password(password) => {
                let mut input = Vec::with_capacity(password.len() + 1 + stdin.len());
                input.extend_from_slice(password.as_bytes());
                input.push(b'\n');
                input.extend_from_slice(stdin);
                (format!("sudo -S -p '' sh -c {}", quote(command)), input)
            }
            SshAuth::Key { .. } => (format!("sudo -n sh -c {}", quote(command)), stdin.to_vec()),
        }
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

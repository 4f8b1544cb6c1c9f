//! SSH to the hosts with russh: one connection per host, reused by every command, with at most
//! [`MAX_CHANNELS`] channels open at once (OpenSSH's `MaxSessions` is 10), connect retries with backoff,
//! and host keys pinned on first contact.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg};
use tokio::sync::Semaphore;

use crate::error::TransportError;
use crate::shell::quote;

mod keys;
mod shell;
mod steps;
use shell::{find_last, while_reading};
pub use steps::{one_by_one, OnStep, Step, StepEvent, StepStop};

/// Channels one connection may have open at once; OpenSSH refuses the 11th by default.
pub const MAX_CHANNELS: usize = 8;
const CONNECT_ATTEMPTS: u32 = 4;

/// How to log in. With a key and a password both, the key is offered first and the password after it
/// (as sealer's own client and OpenSSH do), and the password also answers `sudo` for other users.
#[derive(Clone, PartialEq, Eq)]
pub enum SshAuth {
    Password(String),
    Key { path: PathBuf, passphrase: Option<String>, password: Option<String> },
}

impl SshAuth {
    /// The password `sudo -S` gets when sudo asks for one.
    fn password(&self) -> Option<&str> {
        match self {
            SshAuth::Password(p) => Some(p),
            SshAuth::Key { password, .. } => password.as_deref(),
        }
    }
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAuth::Password(_) => f.write_str("Password((sensitive))"),
            SshAuth::Key { path, password, .. } => {
                write!(f, "Key({}{})", path.display(), if password.is_some() { ", then password" } else { "" })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
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

/// What the handler saw: the key the server offered during key exchange, and whether the connection
/// ended because the host stopped answering keepalives (rather than closing it).
#[derive(Default)]
struct Offered {
    key: Option<PublicKey>,
    stopped_answering: bool,
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

    // Called before the connection's channels end, so a command that sees its channel end can tell a
    // host that went silent (unreachable: not tried again for a while) from one that closed it.
    async fn disconnected(&mut self, reason: client::DisconnectReason<Self::Error>) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(e) => {
                // Unanswered keepalives, or sent bytes never acknowledged (TCP_USER_TIMEOUT).
                let silent = match &e {
                    russh::Error::KeepaliveTimeout => true,
                    russh::Error::IO(io) => io.kind() == std::io::ErrorKind::TimedOut,
                    _ => false,
                };
                if silent {
                    if let Ok(mut offered) = self.offered.lock() {
                        offered.stopped_answering = true;
                    }
                }
                Err(e)
            }
        }
    }
}

fn openssh(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_string()
}

enum ShellError {
    /// No long-lived shell can be had on this host; fall back to a channel per command.
    Unavailable,
    Failed(TransportError),
}

/// A marker no command output will contain by chance.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// `SHA256:...` as `ssh-keygen -lf` prints it.
pub fn fingerprint(openssh_key: &str) -> String {
    PublicKey::from_openssh(openssh_key)
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        .unwrap_or_else(|_| "an unreadable key".into())
}

/// AES-GCM first: hosts and workstations have AES instructions, and the image's first copy crosses
/// this connection (20 MiB through OpenSSH on both ends: 0.28–0.29 s of CPU, against 0.31 s with
/// ChaCha20-Poly1305).
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// How often an idle connection asks the host whether it is there; after [`KEEPALIVE_MAX`] unanswered,
/// the host is taken as unreachable: between 9 and 12 s after it went silent.
const KEEPALIVE: Duration = Duration::from_secs(3);
const KEEPALIVE_MAX: usize = 3;

/// How long a host may stay silent before it is taken as unreachable: the keepalive bound.
const SILENT_FOR: Duration = Duration::from_secs(KEEPALIVE.as_secs() * (KEEPALIVE_MAX as u64 + 1));

pub struct SshSession {
    target: SshTarget,
    handle: Handle<Client>,
    channels: Semaphore,
    host_key: String,
    /// Idle long-lived shells. Opening an SSH session costs the host about 0.1 s of CPU, so commands run
    /// in shells that stay open instead, each command in a subshell, delimited by a per-connection marker.
    shells: std::sync::Mutex<Vec<Channel<Msg>>>,
    /// Shells open (idle or running a command), and a signal when one goes back to the pool.
    open_shells: std::sync::atomic::AtomicUsize,
    shell_returned: tokio::sync::Notify,
    marker: String,
    /// Set when the host has no bash (or sudo refused one): every command gets its own channel.
    no_shell: std::sync::atomic::AtomicBool,
    /// Whether the host's bash keeps short here-documents in pipes, as the last shell opened said (its
    /// `shell::pipes_probe`); until one did, no stdin goes as a here-document.
    here_docs: std::sync::atomic::AtomicBool,
    /// What the connection's handler saw (whether the host stopped answering).
    seen: Arc<Mutex<Offered>>,
}

impl SshSession {
    pub async fn connect(target: SshTarget) -> Result<Self, TransportError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(600)),
            // A host that stops answering (a partition, a dead machine) ends its connection within 12 s
            // without an answer to keepalives, so that what runs there fails then, naming the host.
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            preferred: russh::Preferred { cipher: std::borrow::Cow::Borrowed(CIPHERS), ..Default::default() },
            ..Default::default()
        });
        let mut last_error = String::new();
        // All attempts together take at most `connect_timeout`: a host that refuses (sshd restarting) is
        // tried again after a short pause, one that does not answer at all is reported once that time
        // is up, not after several more waits.
        let deadline = tokio::time::Instant::now() + target.connect_timeout;
        let mut attempts = 0;
        for attempt in 1..=CONNECT_ATTEMPTS {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            attempts = attempt;
            let offered = Arc::new(Mutex::new(Offered::default()));
            let handler = Client {
                known: target.known_host_key.clone(),
                strict: target.strict_host_keys,
                offered: offered.clone(),
            };
            let connecting = async {
                let socket = tokio::net::TcpStream::connect((target.ip, target.port)).await?;
                socket.set_nodelay(true)?;
                // Bytes the host does not acknowledge within the keepalive bound end the connection: while
                // a large stdin streams to a host that went silent, russh's writer waits on the socket, out
                // of reach of its keepalive timer, and only the kernel can tell.
                socket2::SockRef::from(&socket).set_tcp_user_timeout(Some(SILENT_FOR))?;
                client::connect_stream(config.clone(), socket, handler).await
            };
            match tokio::time::timeout(remaining, connecting).await {
                Ok(Ok(handle)) => {
                    let host_key = offered.lock().ok().and_then(|o| o.key.as_ref().map(openssh)).unwrap_or_default();
                    let mut session = SshSession {
                        target: target.clone(),
                        handle,
                        channels: Semaphore::new(MAX_CHANNELS),
                        host_key,
                        shells: std::sync::Mutex::new(Vec::new()),
                        open_shells: std::sync::atomic::AtomicUsize::new(0),
                        shell_returned: tokio::sync::Notify::new(),
                        marker: format!("__sealer_done_{:016x}__", random_u64()),
                        no_shell: std::sync::atomic::AtomicBool::new(false),
                        here_docs: std::sync::atomic::AtomicBool::new(false),
                        seen: offered,
                    };
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
                let pause = Duration::from_millis(250 << (attempt - 1));
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
            }
        }
        Err(TransportError::Unreachable { host: target.ip, port: target.port, attempts, message: last_error })
    }

    async fn authenticate(&mut self) -> Result<(), TransportError> {
        let t = &self.target;
        let channel_error = |e: russh::Error| TransportError::Channel { host: t.ip, message: e.to_string() };
        let method = match &t.auth {
            SshAuth::Password(password) => {
                if self.handle.authenticate_password(&t.user, password).await.map_err(channel_error)?.success() {
                    return Ok(());
                }
                "password"
            }
            SshAuth::Key { path, passphrase, password } => {
                let key = keys::load(path, passphrase.as_deref()).await?;
                let hash = self.handle.best_supported_rsa_hash().await.map_err(channel_error)?.flatten();
                let key = PrivateKeyWithHashAlg::new(key, hash);
                if self.handle.authenticate_publickey(&t.user, key).await.map_err(channel_error)?.success() {
                    return Ok(());
                }
                match password {
                    Some(password) => {
                        if self.handle.authenticate_password(&t.user, password).await.map_err(channel_error)?.success()
                        {
                            return Ok(());
                        }
                        "public key, then password"
                    }
                    None => "public key",
                }
            }
        };
        Err(TransportError::Auth { host: t.ip, user: t.user.clone(), method })
    }

    pub fn ip(&self) -> IpAddr {
        self.target.ip
    }

    /// Whether the connection has ended (the host closed it, or it broke).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Why a command's channel ended before the command did: the host went silent, or the connection
    /// was closed (its sshd ended or restarted).
    fn lost(&self) -> TransportError {
        let silent = self.seen.lock().is_ok_and(|seen| seen.stopped_answering);
        if silent {
            return TransportError::StoppedAnswering { host: self.target.ip, seconds: SILENT_FOR.as_secs() };
        }
        self.channel_error("the connection was closed before the command finished (its sshd ended)")
    }

    /// The host key the server presented (OpenSSH format), to pin in the state.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// Runs `command` (through `sudo` for other users than root), feeding `stdin`, and waits for its exit
    /// status: in a long-lived shell when the host allows one, else on a channel of its own.
    pub async fn exec(&self, command: &str, stdin: &[u8], timeout: Duration) -> Result<ExecOutput, TransportError> {
        if self.shell_allowed() {
            match self.exec_in_shell(command, stdin, timeout).await {
                Err(ShellError::Unavailable) => self.no_shell.store(true, std::sync::atomic::Ordering::SeqCst),
                Err(ShellError::Failed(e)) => return Err(e),
                Ok(out) => return Ok(out),
            }
        }
        self.exec_on_channel(command, command, stdin, timeout).await
    }

    /// Runs `command`, which only reads the host, briefly, and takes no stdin. As root on a connection
    /// with no shell open, on a channel of its own: `sh` (in place of the login shell, so one process)
    /// runs it, where this connection's first shell would start two bashes, its watcher and a job. The
    /// caller knows the host has nothing else to run for a while (a refresh that reads only its hostname):
    /// else the shell it opens anyway serves both. What comes before the command (sshd's `~/.ssh/rc` may
    /// print) is cut at a ready line on each stream. No watcher ends it with the connection: reads must be
    /// short.
    pub async fn read(&self, command: &str, timeout: Duration) -> Result<ExecOutput, TransportError> {
        let shell_open = self.shell_allowed() && self.open_shells.load(std::sync::atomic::Ordering::SeqCst) > 0;
        if self.target.user != "root" || shell_open {
            return self.exec(command, b"", timeout).await;
        }
        let ready = format!("{}\n", self.ready());
        let q = quote(&self.ready());
        let script = format!("printf '%s\\n' {q}; printf '%s\\n' {q} >&2; {}", shell::evaluated(command));
        let mut out = self.exec_on_channel(&format!("exec sh -c {}", quote(&script)), command, b"", timeout).await?;
        // The first ready line: the command's own output comes after it, whatever it holds.
        let first = |stream: &[u8]| stream.windows(ready.len()).position(|w| w == ready.as_bytes());
        let (Some(o), Some(e)) = (first(&out.stdout), first(&out.stderr)) else {
            let said = String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string();
            let said: String = said.chars().take(200).collect();
            let said = if said.is_empty() { said } else { format!(": {said}") };
            return Err(self.channel_error(format!("the login shell did not start `sh` (exit {}{said})", out.status)));
        };
        out.stdout = out.stdout.split_off(o + ready.len());
        out.stderr = out.stderr.split_off(e + ready.len());
        Ok(out)
    }

    /// Whether a short text stdin goes to this host's shells as a here-document: as the last shell opened
    /// said (its bash keeps those in pipes: see [`shell::pipes_probe`]); never before one did.
    pub fn here_documents(&self) -> bool {
        self.here_docs.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn shell_allowed(&self) -> bool {
        !self.no_shell.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What runs a program as root: nothing for root; for other users `sudo -S` with the session's prompt,
    /// so that the password is sent only when sudo asks for it (see [`SshSession::await_ready`]).
    fn sudo(&self) -> String {
        if self.target.user == "root" {
            String::new()
        } else {
            format!("sudo -S -p {} ", quote(&self.prompt()))
        }
    }

    /// The prompt sudo prints when it wants the password: unique to this connection, so that no output
    /// can be taken for it.
    fn prompt(&self) -> String {
        format!("{}_sudo:", self.marker)
    }

    /// What a shell or a command prints at the end of a line once it runs (as root when sudo was needed); a
    /// shell's tags come before it on that line.
    fn ready(&self) -> String {
        format!("{}_ready", self.marker)
    }

    /// Waits until what was started on `channel` prints its ready line on `stream` (stdout for a shell,
    /// stderr for a command on its own channel), answering sudo's prompt with the password when, and only
    /// when, sudo prints it: a command's stdin is never sent before, so it reaches the command byte for
    /// byte whether sudo asks for a password or not. Returns what arrived after the ready line (stdout,
    /// stderr) and what came before it on its line (a shell's tags). Ending before the ready line:
    /// `Unavailable` when the program never ran (no bash), the sudo failure otherwise.
    async fn await_ready(
        &self,
        channel: &mut Channel<Msg>,
        ready_on_stderr: bool,
    ) -> Result<(Vec<u8>, Vec<u8>, String), ShellError> {
        let ip = self.target.ip;
        let ready = format!("{}\n", self.ready());
        let prompt = self.prompt();
        let sudo_error = |message: &str| {
            ShellError::Failed(TransportError::Sudo {
                host: ip,
                user: self.target.user.clone(),
                message: message.into(),
            })
        };
        let (mut stdout, mut stderr, mut prompts, mut status) = (Vec::new(), Vec::new(), 0usize, None);
        loop {
            let (stream, other) = if ready_on_stderr { (&mut stderr, &mut stdout) } else { (&mut stdout, &mut stderr) };
            if let Some(at) = find_last(stream, ready.as_bytes()) {
                let rest = stream.split_off(at + ready.len());
                let start = stream[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                let head = String::from_utf8_lossy(&stream[start..at]).trim().to_string();
                let other = std::mem::take(other);
                return Ok(if ready_on_stderr { (other, rest, head) } else { (rest, other, head) });
            }
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => stdout.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    stderr.extend_from_slice(&data);
                    if stderr.ends_with(prompt.as_bytes()) {
                        prompts += 1;
                        let password = match (prompts, self.target.auth.password()) {
                            // A line break would end the password early and feed the rest to the shell.
                            (1, Some(password)) if password.contains(['\n', '\r']) => {
                                return Err(sudo_error("the password has a line break: sudo cannot take it"))
                            }
                            (1, Some(password)) => password,
                            (1, None) => {
                                return Err(sudo_error("sudo asks for a password and none is set (ssh.passwd)"))
                            }
                            _ => return Err(sudo_error("sudo refused the password")),
                        };
                        let line = format!("{password}\n");
                        channel.data(line.as_bytes()).await.map_err(|e| ShellError::Failed(self.channel_error(e)))?;
                        let len = stderr.len() - prompt.len();
                        stderr.truncate(len);
                    } else if prompts > 0 && stderr.ends_with(b": ") {
                        // Another prompt than ours once the password went (an expired password, a PAM
                        // one-time code): nothing sealer can answer, and sudo would wait for ever.
                        let said = String::from_utf8_lossy(&stderr);
                        let asked = said.lines().last().unwrap_or_default().trim().to_string();
                        return Err(sudo_error(&format!("sudo asks for more than the password (`{asked}`)")));
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                // OpenSSH sends the end of the output before the exit status: wait for the close.
                Some(ChannelMsg::Close) | None => {
                    // The connection itself ended (the host went silent, or closed it): neither the shell
                    // nor sudo is to blame.
                    if status.is_none() && self.is_closed() {
                        return Err(ShellError::Failed(self.lost()));
                    }
                    // 127: no bash (or, for root, no shell at all): the host gets a channel per command.
                    // Anything else ended sudo before it ran the program; its last line says why.
                    if status == Some(127) || self.target.user == "root" {
                        return Err(ShellError::Unavailable);
                    }
                    let said = String::from_utf8_lossy(&stderr);
                    let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("sudo ended at once");
                    return Err(sudo_error(&last.trim().chars().take(200).collect::<String>()));
                }
                Some(_) => {}
            }
        }
    }

    /// Runs `command` with `sh -c` on a channel of its own (hosts without bash). For other users than
    /// root it runs under `sudo -S`, and its stdin is sent once it runs, after the password when sudo asked.
    /// A timeout names `shown` (what the caller ran, without the framing it added).
    async fn exec_on_channel(
        &self,
        command: &str,
        shown: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        let fail = |e: russh::Error| self.channel_error(e);
        let _permit = self.channels.acquire().await.map_err(|e| self.channel_error(e))?;
        let root = self.target.user == "root";
        let line = if root {
            command.to_string()
        } else {
            let script = format!("printf '%s\\n' {} >&2\n{command}", quote(&self.ready()));
            format!("{}sh -c {}", self.sudo(), quote(&script))
        };
        // Opened before the command's own time runs, so that a command that times out can close it.
        let mut channel = tokio::time::timeout(timeout, self.handle.channel_open_session())
            .await
            .map_err(|_| self.timed_out(shown, timeout))?
            .map_err(fail)?;
        let run = async {
            channel.exec(true, line.as_bytes()).await.map_err(fail)?;
            let (mut stdout, mut stderr) = if root {
                (Vec::new(), Vec::new())
            } else {
                let (stdout, stderr, _) = self.await_ready(&mut channel, true).await.map_err(|e| match e {
                    ShellError::Failed(e) => e,
                    ShellError::Unavailable => self.channel_error("sudo ended before running the command"),
                })?;
                (stdout, stderr)
            };
            // The stdin (then its end) goes while the output is read, as in a shell (see `exec_in_shell`).
            let mut writer = channel.make_writer();
            let send = async {
                use tokio::io::AsyncWriteExt as _;
                if !stdin.is_empty() {
                    writer.write_all(stdin).await?;
                }
                writer.shutdown().await
            };
            let receive = async {
                let mut status = None;
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
                status
            };
            // A command that ended before it read all its stdin, or a lost connection, ends the sending too;
            // the status says how the command ended.
            let (status, sent) = while_reading(send, receive).await;
            if let (None, Some(Err(e))) = (status, sent) {
                return Err(self.channel_error(e));
            }
            let status = status.ok_or_else(|| self.lost())?;
            Ok(ExecOutput { status, stdout, stderr })
        };
        let result = tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| Err(self.timed_out(shown, timeout)));
        if result.is_err() {
            let _ = channel.close().await;
        }
        result
    }

    /// A channel of this connection failed: `why`, naming the host.
    fn channel_error(&self, why: impl std::fmt::Display) -> TransportError {
        TransportError::Channel { host: self.target.ip, message: why.to_string() }
    }

    /// The error of `command` not done within `timeout`, named by its first line.
    fn timed_out(&self, command: &str, timeout: Duration) -> TransportError {
        TransportError::Timeout {
            host: self.target.ip,
            what: command.lines().next().unwrap_or_default().chars().take(80).collect(),
            seconds: timeout.as_secs(),
        }
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

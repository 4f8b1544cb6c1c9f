//! The one way the providers reach a host: run a command, upload a file, download a file. [`SshRemote`]
//! does it over one SSH connection per host; unit tests script it (`fake::Scripted`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::error::{ProviderError, TransportError};
use crate::shell::quote;
use crate::transport::{one_by_one, ExecOutput, OnStep, SshSession, SshTarget, Step, StepStop};

pub type Result<T> = std::result::Result<T, ProviderError>;

/// Work on hosts. `exec` returns whatever the command exited with; callers decide what a failure means.
pub trait Remote: Send + Sync {
    fn exec<'a>(&'a self, host: IpAddr, command: &'a str, stdin: &'a [u8]) -> BoxFuture<'a, Result<ExecOutput>>;
    /// Runs `command`, which only reads `host`, briefly, and changes nothing there, when the caller knows
    /// the host has nothing else to run for a while (a refresh that reads only its hostname). Over SSH it
    /// may go on a channel of its own instead of opening a shell; this default is `exec`.
    fn read<'a>(&'a self, host: IpAddr, command: &'a str) -> BoxFuture<'a, Result<ExecOutput>> {
        self.exec(host, command, b"")
    }
    /// Writes `content` to `path` on `host` with `mode`, whole or not at all (the parent is created).
    fn upload<'a>(&'a self, host: IpAddr, path: &'a str, content: &'a [u8], mode: u32) -> BoxFuture<'a, Result<()>>;
    /// The bytes of `path` on `host`.
    fn download<'a>(&'a self, host: IpAddr, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>>>;
    /// The host key `host` presented (OpenSSH format), to pin in the state.
    fn host_key(&self, host: IpAddr) -> BoxFuture<'_, Result<String>>;
    /// Whether `host` was found unreachable moments ago: work that only tidies up (stopping relays) skips
    /// it rather than wait for it again.
    fn known_unreachable(&self, host: IpAddr) -> bool;
    /// Runs `steps` one after another, telling `on` when each begins and how it ended; none runs after
    /// one that exited non-zero, nor once `stop` says so. Over SSH the chain is one round
    /// trip; this default runs one `exec` after another.
    fn exec_steps<'a>(
        &'a self,
        host: IpAddr,
        steps: &'a [Step],
        stop: StepStop<'a>,
        on: OnStep<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(one_by_one(steps, stop, on, move |step| self.exec(host, &step.command, &step.stdin)))
    }
}

/// `out` as it is when its command succeeded, else the error naming the host, the command's first line,
/// its exit status and the last lines it printed on stderr.
pub(super) fn succeeded(host: IpAddr, command: &str, out: ExecOutput) -> Result<ExecOutput> {
    if out.status == 0 {
        return Ok(out);
    }
    let stderr = crate::redact::credentials(&out.stderr_text());
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let detail: Vec<&str> = tail.into_iter().rev().collect();
    Err(ProviderError::Command {
        host,
        command: command.lines().next().unwrap_or_default().to_string(),
        status: out.status,
        detail: detail.join(" / "),
    })
}

/// The host command that writes its stdin to `path` with `mode`, whole or not at all. The file is created
/// with its final mode before any byte is written, so a secret is never readable; a private file's own
/// directory, when it is made here, is 0700 (its parents, and a directory that exists, keep their modes).
/// A stale temporary file (a link planted there included) is removed, never written through. Few
/// processes: the parent comes from the path itself, not `dirname`, and a mode that creation can give (no
/// execute or special bits) needs no `chmod`. It runs in a command of its own (a subshell), so `umask`
/// stays there.
fn upload_command(path: &str, mode: u32) -> String {
    let (q, tmp) = (quote(path), quote(&format!("{path}.sealer-upload")));
    let parent = "case $p in */*) d=${p%/*}; d=${d:-/} ;; *) d=. ;; esac; \
                  case $d in */*) e=${d%/*}; e=${e:-/} ;; *) e=. ;; esac";
    let leaf = if mode & 0o077 == 0 { "(umask 077 && mkdir -p \"$d\")" } else { "mkdir -p \"$d\"" };
    let create = if mode & 0o7111 == 0 {
        format!("umask {:03o} && cat > {tmp}", !mode & 0o777)
    } else {
        format!("umask 077 && cat > {tmp} && chmod {mode:o} {tmp}")
    };
    format!(
        "p={q}; {parent}; {{ [ -d \"$d\" ] || {{ mkdir -p \"$e\" && {leaf}; }}; }} && \
         {{ {{ [ ! -e {tmp} ] && [ ! -L {tmp} ]; }} || rm -f {tmp}; }} && {create} && mv -f {tmp} {q}"
    )
}

/// [`Remote`] over SSH: one connection per host, opened at first use and shared by every kind.
pub struct SshRemote {
    hosts: BTreeMap<IpAddr, SshTarget>,
    sessions: Mutex<HashMap<IpAddr, Arc<OnceCell<Arc<SshSession>>>>>,
    timeout: Duration,
}

/// The hosts (address and port) this process could not reach, when, and why: every connection to one
/// within [`UNREACHABLE_FOR`] fails at once with the same error, whichever remote asks, so an operation
/// that touches a dead host many times (a plan's refresh, then its reads) waits for it once.
type Unreachable = Mutex<HashMap<(IpAddr, u16), (std::time::Instant, String)>>;

/// Forgets the hosts found unreachable: the next connection to each is tried (a long-running caller, such
/// as `sealer reconcile`, calls it before each round of work).
pub fn forget_unreachable_hosts() {
    unreachable_hosts().lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
}

/// Forgets that `ip` could not be reached, so that the next connection to it is really tried (a verdict
/// that removes what a host holds from the state is never taken from memory).
pub(super) fn forget_unreachable_host(ip: IpAddr) {
    unreachable_hosts().lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(host, _), _| *host != ip);
}

/// Remembers that `ip` could not be reached, and why.
fn note_unreachable(key: (IpAddr, u16), message: String) {
    unreachable_hosts()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, (std::time::Instant::now(), message));
}

fn unreachable_hosts() -> &'static Unreachable {
    static HOSTS: std::sync::OnceLock<Unreachable> = std::sync::OnceLock::new();
    HOSTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How long a host that could not be reached is taken as unreachable without trying again (a remote
/// kept by `sealer reconcile` tries again after it).
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

impl SshRemote {
    /// `timeout` bounds every command.
    pub fn new(hosts: BTreeMap<IpAddr, SshTarget>, timeout: Duration) -> Self {
        SshRemote { hosts, sessions: Mutex::new(HashMap::new()), timeout }
    }

    /// Whether this remote reaches exactly `hosts` with `timeout` (so that a caller may keep it).
    pub fn reaches(&self, hosts: &BTreeMap<IpAddr, SshTarget>, timeout: Duration) -> bool {
        self.hosts == *hosts && self.timeout == timeout
    }

    /// A host that went silent is not connected to again for a while: what follows in this operation fails
    /// at once instead of waiting for it once more.
    fn note_silence<T>(&self, host: IpAddr, result: &std::result::Result<T, TransportError>) {
        if let (Err(TransportError::StoppedAnswering { .. }), Some(target)) = (result, self.hosts.get(&host)) {
            note_unreachable((host, target.port), "it stopped answering".into());
        }
    }

    async fn session(&self, ip: IpAddr) -> Result<Arc<SshSession>> {
        let cell = {
            // A poisoned map only means another task panicked while inserting: the map itself is whole.
            let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let cell = sessions.entry(ip).or_default();
            // A connection the host closed (a reboot, sshd restarted) is opened again: a remote kept from
            // tick to tick by `sealer reconcile` must not fail every tick after.
            if cell.get().is_some_and(|s| s.is_closed()) {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let target = self.hosts.get(&ip).cloned().ok_or(ProviderError::NoCredentials(ip))?;
        // Checked and recorded inside the initialisation: every task that waited for this connection
        // tries it in turn when it failed, and each must fail at once.
        cell.get_or_try_init(|| async {
            let key = (ip, target.port);
            let known =
                unreachable_hosts().lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
            if let Some((when, message)) = known.filter(|(when, _)| when.elapsed() < UNREACHABLE_FOR) {
                let ago = when.elapsed().as_secs();
                let message = format!("{message} ({ago} s ago)");
                return Err(TransportError::Unreachable { host: ip, port: target.port, attempts: 0, message }.into());
            }
            match SshSession::connect(target.clone()).await {
                Ok(session) => Ok(Arc::new(session)),
                Err(e) => {
                    if let TransportError::Unreachable { message, .. } = &e {
                        note_unreachable(key, message.clone());
                    }
                    Err(ProviderError::from(e))
                }
            }
        })
        .await
        .cloned()
    }
}

impl Remote for SshRemote {
    fn exec<'a>(&'a self, host: IpAddr, command: &'a str, stdin: &'a [u8]) -> BoxFuture<'a, Result<ExecOutput>> {
        Box::pin(async move {
            let result = self.session(host).await?.exec(command, stdin, self.timeout).await;
            self.note_silence(host, &result);
            Ok(result?)
        })
    }

    fn read<'a>(&'a self, host: IpAddr, command: &'a str) -> BoxFuture<'a, Result<ExecOutput>> {
        Box::pin(async move {
            let result = self.session(host).await?.read(command, self.timeout).await;
            self.note_silence(host, &result);
            Ok(result?)
        })
    }

    fn exec_steps<'a>(
        &'a self,
        host: IpAddr,
        steps: &'a [Step],
        stop: StepStop<'a>,
        on: OnStep<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let result = self.session(host).await?.exec_steps(steps, self.timeout, stop, on).await;
            self.note_silence(host, &result);
            Ok(result?)
        })
    }

    fn upload<'a>(&'a self, host: IpAddr, path: &'a str, content: &'a [u8], mode: u32) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let command = upload_command(path, mode);
            succeeded(host, &format!("upload {path}"), self.exec(host, &command, content).await?).map(|_| ())
        })
    }

    fn download<'a>(&'a self, host: IpAddr, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            use base64::Engine as _;
            // Base64 keeps binary content out of the shell framing.
            let out = self.exec(host, &format!("base64 -w0 {}", quote(path)), b"").await?;
            let out = succeeded(host, &format!("download {path}"), out)?;
            base64::engine::general_purpose::STANDARD.decode(out.stdout_text().trim()).map_err(|e| {
                ProviderError::Unexpected { host, what: format!("download of `{path}`"), message: e.to_string() }
            })
        })
    }

    fn host_key(&self, host: IpAddr) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move { Ok(self.session(host).await?.host_key().to_string()) })
    }

    fn known_unreachable(&self, host: IpAddr) -> bool {
        let Some(target) = self.hosts.get(&host) else { return false };
        let hosts = unreachable_hosts().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts.get(&(host, target.port)).is_some_and(|(when, _)| when.elapsed() < UNREACHABLE_FOR)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::{Command, Stdio};

    use super::upload_command;

    fn upload(shell: &str, path: &std::path::Path, mode: u32, content: &str) {
        let mut child = Command::new(shell)
            .args(["-c", &upload_command(&path.display().to_string(), mode)])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), content.as_bytes()).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "{shell}: {}", path.display());
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// On a real shell (bash, and dash as `sh`): content whole, the mode from creation, the private file's
    /// new directory 0700, a planted link at the temporary name removed and its target untouched.
    #[test]
    fn uploads_get_their_mode_at_creation_and_never_write_through_a_link() {
        for shell in ["bash", "sh"] {
            let dir = tempfile::tempdir().unwrap();
            let secret = dir.path().join("new/private/key");
            upload(shell, &secret, 0o600, "s3cret\n");
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret\n");
            assert_eq!((mode(&secret), mode(secret.parent().unwrap())), (0o600, 0o700), "{shell}");
            let script = dir.path().join("bin/run");
            upload(shell, &script, 0o755, "#!/bin/sh\n");
            assert_eq!(mode(&script), 0o755, "{shell}");
            let target = dir.path().join("target");
            std::fs::write(&target, "keep").unwrap();
            let plain = dir.path().join("plain");
            std::os::unix::fs::symlink(&target, dir.path().join("plain.sealer-upload")).unwrap();
            upload(shell, &plain, 0o644, "new");
            assert_eq!((std::fs::read_to_string(&target).unwrap(), mode(&plain)), ("keep".into(), 0o644), "{shell}");
            assert_eq!(std::fs::read_to_string(&plain).unwrap(), "new");
            // A path relative to the shell's directory: its private directory is 0700 too.
            let status = Command::new(shell)
                .args(["-c", &upload_command("onlydir/key", 0o600)])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            assert_eq!(mode(&dir.path().join("onlydir")), 0o700, "{shell}");
        }
    }
}

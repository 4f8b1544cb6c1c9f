//! The long-lived shells a connection runs its commands in: the loop each shell runs, opening one and
//! pooling them, and one command's framing (its stdin as a here-document where it can be, its output cut
//! at a per-connection marker).

use std::future::Future;
use std::time::Duration;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::{ExecOutput, ShellError, SshSession};
use crate::shell::{leaves_shell_as_is, quote};

/// What a long-lived shell runs: each command comes as its length in bytes (12 decimal digits) and then
/// its text, read whole. bash reads a script from a pipe a byte at a time (a read(2) per byte, so that what
/// follows stays for the commands that read stdin); `read -N` of a known length takes it in one read and
/// still leaves the rest. `LC_ALL=C`: the length counts bytes, whatever the host's locale.
///
/// Remote work dies with the connection that started it: OpenSSH does not signal a command without a
/// terminal when its connection is lost (a killed workstation), so a half-done `kubeadm init` would go on
/// and race the next apply. Each command runs as a job of its own process group (`set -m`), and a watcher
/// started with the shell (ending with it) polls, every half second, the sshd
/// process that serves the connection (the parent of the shell's session leader, from `/proc`; a closed
/// channel leaves it, a lost connection ends it): once it is gone, the running command's group (found
/// then, in `/proc`, as the shell's child that leads its own group; nothing a user could plant in a file)
/// gets SIGTERM, then, found again, SIGKILL after 2 s. A command that finished is not touched, nor what
/// it left running in a session of its own (`setsid`: the daemons sealer starts). Without `/proc` the
/// shell runs as before. The shell's own stderr (job notices) goes nowhere: each command gets the
/// channel's stderr back as its own (fd 3, closed for the command itself so no daemon keeps it, and for
/// the watcher, so that the channel ends with the shell).
///
/// The watcher waits with `read -t 0.5` on a UDP socket connected to the host's own discard port, which
/// nothing ever sends from, instead of starting `sleep` twice a second on every host (two processes a
/// second and host for as long as the connection lives, a reconcile loop's included); where that socket
/// cannot be had, `sleep 0.5`.
///
/// Each command is a job of its own, a process apart from the loop: whatever it does to its shell (`exit`,
/// `exec`, `cd`, `set -e`, traps) ends with it, and the loop, not the command, prints the end markers
/// with the job's status ([`end_markers`]), so no command can keep them from coming.
pub(super) fn shell_loop(marker: &str) -> String {
    format!(
        "set -m; exec 3>&2 2>/dev/null; P=$$; \
         if read -r -a p < /proc/$$/stat && read -r -a l < /proc/${{p[5]}}/stat; then \
           ( W=$BASHPID; {{ exec 4<>/dev/udp/127.0.0.1/9; }} 2>/dev/null; \
             z() {{ read -t 0.5 -u 4; [ $? -gt 128 ] || sleep 0.5; }}; \
             j() {{ for d in /proc/[0-9]*; do read -r t < \"$d/stat\" || continue; t=${{t##*) }}; set -- $t; \
                     [ \"$2\" = \"$P\" ] && [ \"$3\" = \"${{d#/proc/}}\" ] && [ \"$3\" != \"$W\" ] && echo \"$3\"; done; }}; \
             while [ -e /proc/${{l[3]}} ]; do [ -e /proc/$P ] || exit 0; z; done; \
             for g in $(j); do kill -TERM -- -\"$g\"; done; sleep 2; for g in $(j); do kill -KILL -- -\"$g\"; done \
           ) >/dev/null 2>&1 </dev/null 3>&- & \
         fi; \
         while IFS= read -r -N 12 n && LC_ALL=C IFS= read -r -N \"$((10#$n))\" s; do \
           {{ eval \"$s\"; }} <&0 2>&3 3>&- & wait $!; {}; \
         done",
        end_markers(marker, "3")
    )
}

/// What ends a command's output: its status after `\n{marker} ` on stdout, and `\n{marker}\n` on the
/// descriptor `stderr` (the channel's stderr).
pub(super) fn end_markers(marker: &str, stderr: &str) -> String {
    format!("printf '\\n%s %d\\n' {marker} $?; printf '\\n%s\\n' {marker} >&{stderr}")
}

/// The longest stdin that goes as a here-document.
const HERE_DOCUMENT_MAX: usize = 8 * 1024;

/// Prints `{marker}_pipes ` when this bash gives a here-document of [`HERE_DOCUMENT_MAX`] bytes to its
/// command as a pipe: the behaviour itself, tried, not the version that usually has it (5.1 and later;
/// `BASH_COMPAT=50` or lower, a build's smaller `HEREDOC_PIPESIZE`, or a pipe that cannot grow keep
/// temporary files). Nothing is printed where it would be a file, nor where `/dev/stdin` is missing.
pub(super) fn pipes_probe(marker: &str) -> String {
    format!(
        "printf -v d '%{}s' ''; [ -p /dev/stdin ] <<<\"$d\" 2>/dev/null && printf '%s ' {marker}_pipes; unset d; ",
        HERE_DOCUMENT_MAX - 1
    )
}

/// How long a command waits for a busy shell of its host before it opens another.
pub(super) const SHELL_WAIT: Duration = Duration::from_millis(30);

/// `stdin` as the body of a here-document ended by `{marker}_stdin`, when the shell gives it back byte
/// for byte: text without NUL that ends with a newline, no line of it the end line, and short: the text
/// goes through `eval`'s copy of the script and bash's here-document buffer, where `head -c` streams it.
/// Only where the shell keeps such a here-document in a pipe (`pipes`, as its [`pipes_probe`] said):
/// bash before 5.1 writes every one to a temporary file, and a stdin may be a secret (a join
/// configuration, a private file's content).
pub(super) fn here_document<'a>(stdin: &'a [u8], marker: &str, pipes: bool) -> Option<&'a str> {
    const MAX: usize = HERE_DOCUMENT_MAX;
    if !pipes {
        return None;
    }
    let text = std::str::from_utf8(stdin).ok()?;
    let end = format!("{marker}_stdin");
    let fits = text.len() <= MAX && text.ends_with('\n') && !text.contains('\0');
    (fits && !text.lines().any(|l| l == end)).then_some(text)
}

/// Accumulates one command's output from a shell until both streams carry the end marker.
pub(super) struct Framed {
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    pub(super) status: Option<u32>,
    pub(super) stderr_done: bool,
}

impl Framed {
    /// Strips `\n<marker> <status>\n` from the end of stdout, once it is there.
    pub(super) fn take_status(&mut self, marker: &str) {
        if self.status.is_some() || !self.stdout.ends_with(b"\n") {
            return;
        }
        let tail = format!("\n{marker} ");
        let Some(at) = find_last(&self.stdout, tail.as_bytes()) else { return };
        let digits = &self.stdout[at + tail.len()..self.stdout.len() - 1];
        if let Some(status) = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()) {
            self.status = Some(status);
            self.stdout.truncate(at);
        }
    }

    pub(super) fn take_stderr_end(&mut self, marker: &str) {
        let end = format!("\n{marker}\n");
        if !self.stderr_done && self.stderr.ends_with(end.as_bytes()) {
            let len = self.stderr.len() - end.len();
            self.stderr.truncate(len);
            self.stderr_done = true;
        }
    }
}

/// Runs `send` (a command's stdin) beside `receive` (its output) until the output ends, and returns it with
/// how the sending ended (`None`: it had not). Reading drives: russh queues what arrives for a channel in a
/// bounded buffer, so output left unread while stdin streams would stop the connection; and the writer
/// waits on window updates that a lost connection never sends, so it is dropped once the output ended.
pub(super) async fn while_reading<S, R>(
    send: impl Future<Output = S>,
    receive: impl Future<Output = R>,
) -> (R, Option<S>) {
    tokio::pin!(send);
    tokio::pin!(receive);
    let mut sent = None;
    loop {
        tokio::select! {
            // The writer first: its last bytes were taken before any output that follows them.
            biased;
            done = &mut send, if sent.is_none() => sent = Some(done),
            out = &mut receive => return (out, sent),
        }
    }
}

/// `command` for the shell loop: quoted, to `eval`. One that does not parse (`echo )`) fails with the
/// shell's message and status 2, and the end markers that follow it still run; spliced in, it would
/// swallow them and the command would wait for its timeout.
pub(super) fn evaluated(command: &str) -> String {
    format!("eval {}", quote(command))
}

/// `command` for the shell loop, after `prelude`, so that nothing it does (`exit`, `exec`, `cd`, `set -e`,
/// variables, traps) reaches the end markers or the commands after it: in a subshell of its own, unless
/// it leaves the shell as it was (`in_shell`: its caller knows; else [`leaves_shell_as_is`]), where the
/// subshell would only cost the host a process.
pub(super) fn contained(command: &str, prelude: &str, in_shell: bool) -> String {
    let evaluated = evaluated(command);
    if in_shell || leaves_shell_as_is(command) {
        format!("{{ {prelude}{evaluated}\n}}")
    } else {
        format!("( {prelude}{evaluated}\n)")
    }
}

pub(super) fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

impl SshSession {
    /// A long-lived shell, as root, that has printed its ready line: no command is sent to a shell that
    /// is not running yet, so a command never runs twice (once here, once on the channel fallback).
    pub(super) async fn open_shell(&self, command: &str, timeout: Duration) -> Result<Channel<Msg>, ShellError> {
        let failed = |e: russh::Error| ShellError::Failed(self.channel_error(e));
        let timed_out = || ShellError::Failed(self.timed_out(command, timeout));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut channel = tokio::time::timeout_at(deadline, self.handle.channel_open_session())
            .await
            .map_err(|_| timed_out())?
            .map_err(failed)?;
        // Through sudo, `sh` finds out whether the host has bash: without it, exit 127 (Unavailable),
        // whatever sudo printed on the way. As root the login shell starts bash itself (one program fewer
        // per shell): any end before the ready line is Unavailable there.
        // The ready line begins with `{marker}_pipes` where bash keeps short here-documents in pipes.
        let script = format!(
            "{}printf '%s\\n' {}; {}",
            pipes_probe(&self.marker),
            quote(&self.ready()),
            shell_loop(&self.marker)
        );
        let start = match self.sudo() {
            sudo if sudo.is_empty() => format!("exec bash --noprofile --norc -c {}", quote(&script)),
            sudo => format!(
                "exec {sudo}sh -c {} sh {}",
                quote("command -v bash >/dev/null 2>&1 || exit 127; exec bash --noprofile --norc -c \"$1\""),
                quote(&script)
            ),
        };
        let ready = async {
            channel.exec(true, start).await.map_err(|_| ShellError::Unavailable)?;
            self.await_ready(&mut channel, false).await
        };
        // Bounded here, where the channel can still be closed: a dropped russh channel stays open on the
        // server, and a sudo waiting on a prompt it never gets would leak one per command.
        match tokio::time::timeout_at(deadline, ready).await.unwrap_or_else(|_| Err(timed_out())) {
            Ok((_, _, head)) => {
                let pipes = head.ends_with(&format!("{}_pipes", self.marker));
                self.here_docs.store(pipes, std::sync::atomic::Ordering::SeqCst);
                Ok(channel)
            }
            Err(e) => {
                let _ = channel.close().await;
                Err(e)
            }
        }
    }

    /// An idle shell, waiting [`SHELL_WAIT`] for one when all are busy; `None`: open another. Commands
    /// are mostly short, and a shell costs the host a session and two processes, so a host's concurrent
    /// commands share one shell unless they are slow.
    pub(super) async fn idle_shell(&self) -> Option<Channel<Msg>> {
        let until = tokio::time::Instant::now() + SHELL_WAIT;
        loop {
            let returned = self.shell_returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(shell) = self.shells.lock().ok().and_then(|mut s| s.pop()) {
                return Some(shell);
            }
            if self.open_shells.load(std::sync::atomic::Ordering::SeqCst) == 0
                || tokio::time::timeout_at(until, returned).await.is_err()
            {
                return None;
            }
        }
    }

    /// A shell of the pool, or a new one, with the channel permit it holds.
    pub(super) async fn checkout(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<(tokio::sync::SemaphorePermit<'_>, Channel<Msg>), ShellError> {
        let permit = self.channels.acquire().await.map_err(|e| ShellError::Failed(self.channel_error(e)))?;
        let channel = match self.idle_shell().await {
            Some(c) => c,
            None => {
                let channel = self.open_shell(command, timeout).await?;
                self.open_shells.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                channel
            }
        };
        Ok((permit, channel))
    }

    /// A shell whose command finished goes back to the pool; one that failed or timed out is closed (a
    /// dropped russh channel stays open on the server, counting against its sessions per connection).
    pub(super) async fn checkin(&self, channel: Channel<Msg>, finished: bool) {
        let unpooled = match finished.then(|| self.shells.lock()) {
            Some(Ok(mut shells)) => {
                shells.push(channel);
                self.shell_returned.notify_one();
                None
            }
            _ => Some(channel),
        };
        if let Some(channel) = unpooled {
            self.open_shells.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let _ = channel.close().await;
        }
    }

    pub(super) async fn exec_in_shell(
        &self,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, ShellError> {
        let fail = |e: russh::Error| ShellError::Failed(self.channel_error(e));
        let (permit, mut channel) = self.checkout(command, timeout).await?;
        let m = &self.marker;
        // In its job (see [`shell_loop`]), the command needs no subshell of its own. Its stdin: a
        // here-document when it is short text (the shell hands it over itself, with no process to start),
        // else `head -c` hands it exactly its bytes and `cat` drains what it did not read (in a subshell
        // when the command could end its shell before).
        let evaluated = evaluated(command);
        let (script, raw) = match here_document(stdin, m, self.here_documents()) {
            _ if stdin.is_empty() => (format!("{{ {evaluated}\n}} </dev/null\n"), false),
            Some(text) => (format!("{{ {evaluated}\n}} <<'{m}_stdin'\n{text}{m}_stdin\n"), false),
            None => {
                let n = stdin.len();
                (
                    format!("head -c {n} | {{ {}; s=$?; cat >/dev/null; exit $s; }}\n", contained(command, "", false)),
                    true,
                )
            }
        };
        let framed_script = format!("{:012}{script}", script.len());
        let run = async {
            channel.data(framed_script.as_bytes()).await.map_err(fail)?;
            // The stdin goes while the output is read (`while_reading`: a command that writes while its stdin
            // still streams, a failure's stderr or a full disk, would otherwise stop the connection). The
            // writer sends packets as large as the host allows (32 KiB): an OpenSSH server spends several
            // times the CPU on a stream of small ones.
            // A command that ended before its stdin was sent leaves the shell's framing unknown: an error,
            // and the shell is not used again.
            let mut writer = raw.then(|| channel.make_writer());
            let send = async {
                match writer.as_mut() {
                    Some(w) => tokio::io::AsyncWriteExt::write_all(w, stdin).await,
                    None => Ok(()),
                }
            };
            let (received, sent) = while_reading(send, self.read_framed(&mut channel, m)).await;
            let out = received?;
            match sent {
                Some(Ok(())) => Ok(out),
                Some(Err(e)) => Err(ShellError::Failed(self.channel_error(e))),
                None => Err(ShellError::Failed(self.channel_error("the command ended before its stdin was sent"))),
            }
        };
        let result = tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(ShellError::Failed(self.timed_out(command, timeout))));
        self.checkin(channel, result.is_ok()).await;
        drop(permit);
        result
    }

    /// Reads a shell command's output until its end markers (its status on stdout, the end of its stderr).
    pub(super) async fn read_framed(&self, channel: &mut Channel<Msg>, m: &str) -> Result<ExecOutput, ShellError> {
        let mut framed = Framed { stdout: Vec::new(), stderr: Vec::new(), status: None, stderr_done: false };
        while framed.status.is_none() || !framed.stderr_done {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    framed.stdout.extend_from_slice(&data);
                    framed.take_status(m);
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    framed.stderr.extend_from_slice(&data);
                    framed.take_stderr_end(m);
                }
                Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(ShellError::Failed(self.lost()));
                }
                Some(_) => {}
            }
        }
        Ok(ExecOutput { status: framed.status.unwrap_or(255), stdout: framed.stdout, stderr: framed.stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::{end_markers, here_document, shell_loop};

    /// The loop itself, in a local bash: each command framed as the transport sends it, its end markers
    /// printed by the loop with its status whatever it did to its shell, and the next command unaffected.
    #[test]
    fn the_loop_ends_every_command_with_its_status_whatever_it_did() {
        let m = "__m__";
        let commands = ["cd /; X=1; exit 3", "exec 1>&-", "echo \"$PWD ${X:-unset}\"; trap 'echo trapped' EXIT"];
        let input: String = commands.iter().map(|c| format!("{:012}{c}", c.len())).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("bash")
            .current_dir(dir.path())
            .args(["--noprofile", "--norc", "-c", &shell_loop(m)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let here = dir.path().display();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("\n{m} 3\n\n{m} 0\n{here} unset\ntrapped\n\n{m} 0\n"),
            "markers after `exit`, after a closed stdout, and a command that sees nothing of the earlier ones"
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("\n{m}\n\n{m}\n\n{m}\n"));
        assert_eq!(end_markers(m, "2"), format!("printf '\\n%s %d\\n' {m} $?; printf '\\n%s\\n' {m} >&2"));
    }

    /// The probe a shell's ready line carries, in this machine's bash (5.2): the tag where a here-document
    /// of the longest size goes as a pipe, none where bash is told to behave as 5.0 (temporary files).
    #[test]
    fn the_pipes_tag_says_what_bash_does_not_its_version() {
        let m = "__m__";
        let probe = |env: &[(&str, &str)]| {
            let mut bash = std::process::Command::new("bash");
            bash.args(["--noprofile", "--norc", "-c", &super::pipes_probe(m)]).envs(env.iter().copied());
            String::from_utf8(bash.output().unwrap().stdout).unwrap()
        };
        assert_eq!(probe(&[]), format!("{m}_pipes "));
        assert_eq!(probe(&[("BASH_COMPAT", "50")]), "", "bash 5.0's temporary files");
        assert_eq!(probe(&[("BASH_COMPAT", "51")]), format!("{m}_pipes "));
    }

    #[test]
    fn only_short_text_that_the_shell_gives_back_whole_goes_in_a_here_document() {
        let m = "__sealer_done_0__";
        assert_eq!(here_document(b"echo $HOME `x` '\\\n", m, true), Some("echo $HOME `x` '\\\n"));
        assert_eq!(here_document(b"echo\n", m, false), None, "bash before 5.1 writes it to a file");
        for refused in [&b"no newline"[..], b"nul\0\n", b"\xff\n", b"a\n__sealer_done_0___stdin\nb\n"] {
            assert_eq!(here_document(refused, m, true), None, "{refused:?}");
        }
        assert_eq!(here_document(format!("{}\n", "x".repeat(9000)).as_bytes(), m, true), None, "too long");
        assert!(here_document(b"a\n__sealer_done_0___stdin \n", m, true).is_some(), "only the whole line ends it");
    }
}

//! Several commands in one round trip: a chain of short steps goes to a host's shell as one script, and
//! each step's output and status come back, delimited, as it ends. A step that exits non-zero ends the
//! chain there.

use std::time::Duration;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::shell::{contained, here_document, Framed};
use super::{ExecOutput, ShellError, SshSession};
use crate::error::TransportError;

/// What a chain tells of its steps, by position, as it happens.
#[derive(Debug)]
pub enum StepEvent {
    /// The host began the step.
    Began(usize),
    /// The step ended with this output.
    Ended(usize, ExecOutput),
}

/// Told of every [`StepEvent`] of a chain.
pub type OnStep<'a> = &'a (dyn Fn(StepEvent) + Send + Sync);
/// Asked before each step of a chain whether to start no more (the apply was interrupted).
pub type StepStop<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// Runs `steps` one command each with `exec`, one after another: a chain where it cannot be one round
/// trip. None begins once `stop` says so, nor after one that exited non-zero.
pub async fn one_by_one<'s, E, F, R>(
    steps: &'s [Step],
    stop: StepStop<'_>,
    on: OnStep<'_>,
    mut exec: F,
) -> Result<(), E>
where
    F: FnMut(&'s Step) -> R,
    R: std::future::Future<Output = Result<ExecOutput, E>>,
{
    for (k, step) in steps.iter().enumerate() {
        if stop() {
            break;
        }
        on(StepEvent::Began(k));
        let out = exec(step).await?;
        let failed = out.status != 0;
        on(StepEvent::Ended(k, out));
        if failed {
            break;
        }
    }
    Ok(())
}

/// A command and its stdin, one of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub command: String,
    pub stdin: Vec<u8>,
    /// The same step as a command that the chain's bash may run itself, with the same stdin, where a
    /// subshell would only cost the host a process: given by a caller that knows it leaves nothing a later
    /// step sees (each step of a chain sets its own directory and environment).
    pub in_shell: Option<String>,
}

/// A step as the chain's script runs it: `command` in a subshell of its own unless `in_shell` (or unless
/// it leaves the shell as is), its stdin a here-document.
struct Link<'a> {
    command: &'a str,
    in_shell: bool,
    stdin: Option<&'a str>,
}

/// The script that runs `steps` one after another, each [`contained`] (seeing neither the chain's script
/// nor the previous status) with its stdin as a here-document; before each, a line `{m}_b{k}` on
/// stdout; after each, its status on stdout and an end line on stderr, tagged `{m}_s{k}`. Nothing more runs after a step that failed, nor once anything
/// arrived on the shell's stdin (the workstation's word to stop: see [`SshSession::exec_steps`]); at the
/// end, the shell loop's own end markers.
fn script(steps: &[Link<'_>], m: &str) -> String {
    let mut script = String::new();
    for (k, step) in steps.iter().enumerate() {
        let run = contained(step.command, "unset s st; ", step.in_shell);
        let begin = format!("printf '\\n%s\\n' {m}_b{k}");
        let tags = format!("st=$?; printf '\\n%s %d\\n' {m}_s{k} $st; printf '\\n%s\\n' {m}_s{k} >&2; [ $st -eq 0 ]");
        match step.stdin {
            None => script += &format!("! read -t 0 && {{ {begin}; {run} </dev/null; {tags}; }} &&\n"),
            Some(text) => {
                script += &format!("! read -t 0 && {{ {begin}; {run} <<'{m}_stdin'\n{text}{m}_stdin\n{tags}; }} &&\n")
            }
        }
    }
    // The last `true` ends the list of `&&`; the one after it gives the job status 0 (each step's status is
    // in its own tags).
    script + "true; true\n"
}

fn find_first(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A chain's output as it arrives, and how far each stream was searched for the tag the chain waits for
/// (so that a step that prints a lot is searched once, not at every packet; a tag taken starts the next
/// search from the front).
struct Chain {
    framed: Framed,
    stdout_seen: usize,
    stderr_seen: usize,
}

/// The first `needle` in `haystack`, searched from where an earlier search stopped (`seen`), which then
/// moves to the end.
fn find_from(haystack: &[u8], needle: &[u8], seen: &mut usize) -> Option<usize> {
    let from = seen.saturating_sub(needle.len());
    let found = haystack.get(from..).and_then(|rest| find_first(rest, needle)).map(|at| at + from);
    if found.is_none() {
        *seen = haystack.len();
    }
    found
}

/// Whether step `k` began: its line, taken off the front of the chain's stdout once it arrived.
fn take_begin(chain: &mut Chain, m: &str, k: usize) -> bool {
    let tag = format!("\n{m}_b{k}\n");
    let Some(at) = find_from(&chain.framed.stdout, tag.as_bytes(), &mut chain.stdout_seen) else { return false };
    chain.framed.stdout.drain(..at + tag.len());
    chain.stdout_seen = 0;
    true
}

/// Step `k`'s output, taken off the front of the chain's output once both of its tags arrived.
fn take_step(chain: &mut Chain, m: &str, k: usize) -> Option<ExecOutput> {
    let tag = format!("\n{m}_s{k} ");
    let end = format!("\n{m}_s{k}\n");
    let framed = &mut chain.framed;
    let at = find_from(&framed.stdout, tag.as_bytes(), &mut chain.stdout_seen)?;
    let digits = &framed.stdout[at + tag.len()..];
    let line = digits.iter().position(|&b| b == b'\n')?;
    let err_at = find_from(&framed.stderr, end.as_bytes(), &mut chain.stderr_seen)?;
    // The shell printed the status: anything else is a broken stream, reported as the shell's own failure.
    let status = std::str::from_utf8(&digits[..line]).ok().and_then(|d| d.parse().ok()).unwrap_or(255);
    let stdout = framed.stdout[..at].to_vec();
    framed.stdout.drain(..at + tag.len() + line + 1);
    let stderr = framed.stderr[..err_at].to_vec();
    framed.stderr.drain(..err_at + end.len());
    (chain.stdout_seen, chain.stderr_seen) = (0, 0);
    Some(ExecOutput { status, stdout, stderr })
}

impl SshSession {
    /// Runs `steps` one after another in one round trip, telling `on` when the host begins each and how
    /// each ended; none runs after one that exited non-zero, nor after `stop` said so (the step under way
    /// finishes; the host is told with a byte on the shell's stdin, and that shell is not used again).
    /// `timeout` bounds each step. Where the host has no shell loop, or a step's stdin cannot go as a
    /// here-document, each step is its own command.
    pub async fn exec_steps(
        &self,
        steps: &[Step],
        timeout: Duration,
        stop: StepStop<'_>,
        on: OnStep<'_>,
    ) -> Result<(), TransportError> {
        if self.shell_allowed() {
            match self.steps_in_shell(steps, timeout, stop, on).await {
                Err(ShellError::Unavailable) => self.no_shell.store(true, std::sync::atomic::Ordering::SeqCst),
                Err(ShellError::Failed(e)) => return Err(e),
                Ok(true) => return Ok(()),
                Ok(false) => {}
            }
        }
        one_by_one(steps, stop, on, |step| self.exec(&step.command, &step.stdin, timeout)).await
    }

    /// The chain in one round trip: `false` (nothing run) when a step's stdin cannot go as a here-document
    /// in this host's shell, which the shell, once open, tells ([`SshSession::here_documents`]).
    async fn steps_in_shell(
        &self,
        steps: &[Step],
        timeout: Duration,
        stop: StepStop<'_>,
        on: OnStep<'_>,
    ) -> Result<bool, ShellError> {
        let Some(first) = steps.first().map(|s| s.command.as_str()) else { return Ok(true) };
        let (permit, mut channel) = self.checkout(first, timeout).await?;
        let pipes = self.here_documents();
        let texts: Option<Vec<Option<&str>>> =
            steps
                .iter()
                .map(|s| {
                    if s.stdin.is_empty() {
                        Some(None)
                    } else {
                        here_document(&s.stdin, &self.marker, pipes).map(Some)
                    }
                })
                .collect();
        let Some(texts) = texts else {
            self.checkin(channel, true).await;
            return Ok(false);
        };
        let chain: Vec<Link<'_>> = steps
            .iter()
            .zip(texts)
            .map(|(s, stdin)| match &s.in_shell {
                Some(command) => Link { command, in_shell: true, stdin },
                None => Link { command: &s.command, in_shell: false, stdin },
            })
            .collect();
        let script = script(&chain, &self.marker);
        let framed_script = format!("{:012}{script}", script.len());
        let mut told_to_stop = false;
        let result = match self.send(&mut channel, framed_script.as_bytes(), first, timeout).await {
            Ok(()) => self.read_steps(&mut channel, &chain, timeout, stop, &mut told_to_stop, on).await,
            Err(e) => Err(e),
        };
        // A shell told to stop has that byte still on its stdin: it is not used again.
        self.checkin(channel, result.is_ok() && !told_to_stop).await;
        drop(permit);
        result.map(|()| true)
    }

    /// Sends `bytes` on `channel` within `timeout` (a host that takes no data stops nothing else).
    async fn send(
        &self,
        channel: &mut Channel<Msg>,
        bytes: &[u8],
        what: &str,
        timeout: Duration,
    ) -> Result<(), ShellError> {
        match tokio::time::timeout(timeout, channel.data(bytes)).await {
            Err(_) => Err(ShellError::Failed(self.timed_out(what, timeout))),
            Ok(Err(e)) => Err(ShellError::Failed(self.channel_error(e))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads the steps' outputs as they end, then the shell loop's end markers; each step gets `timeout`. Once
    /// `stop` says so, the host is told (`told_to_stop`) and the chain ends after the step under way.
    async fn read_steps(
        &self,
        channel: &mut Channel<Msg>,
        steps: &[Link<'_>],
        timeout: Duration,
        stop: StepStop<'_>,
        told_to_stop: &mut bool,
        on: OnStep<'_>,
    ) -> Result<(), ShellError> {
        let m = &self.marker;
        let framed = Framed { stdout: Vec::new(), stderr: Vec::new(), status: None, stderr_done: false };
        let mut chain = Chain { framed, stdout_seen: 0, stderr_seen: 0 };
        let (mut next, mut began, mut more) = (0, false, true);
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            while more && next < steps.len() {
                if !began && take_begin(&mut chain, m, next) {
                    began = true;
                    on(StepEvent::Began(next));
                    deadline = tokio::time::Instant::now() + timeout;
                }
                let Some(out) = began.then(|| take_step(&mut chain, m, next)).flatten() else { break };
                more = out.status == 0;
                on(StepEvent::Ended(next, out));
                (next, began) = (next + 1, false);
                deadline = tokio::time::Instant::now() + timeout;
            }
            // The end markers follow the last step that ran: after a failure, a stop, or the last step.
            // Between steps only: what a step prints is not searched for them again at every packet.
            if !began {
                chain.framed.take_status(m);
                chain.framed.take_stderr_end(m);
                if chain.framed.status.is_some() && chain.framed.stderr_done {
                    return Ok(());
                }
            }
            let what = steps.get(next).map_or("", |s| s.command);
            if !*told_to_stop && stop() {
                self.send(channel, b"\n", what, timeout).await?;
                *told_to_stop = true;
            }
            // Awake now and then to hear of a stop.
            let wake = deadline.min(tokio::time::Instant::now() + STOP_POLL);
            match tokio::time::timeout_at(wake, channel.wait()).await {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(ShellError::Failed(self.timed_out(what, timeout)))
                }
                Err(_) => {}
                Ok(Some(ChannelMsg::Data { data })) => chain.framed.stdout.extend_from_slice(&data),
                Ok(Some(ChannelMsg::ExtendedData { data, .. })) => chain.framed.stderr.extend_from_slice(&data),
                Ok(Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close) | None) => {
                    return Err(ShellError::Failed(self.lost()));
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

/// How often a chain waiting for its host looks whether it was told to stop.
const STOP_POLL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(stdout: &[u8], stderr: &[u8]) -> Chain {
        let framed = Framed { stdout: stdout.to_vec(), stderr: stderr.to_vec(), status: None, stderr_done: false };
        Chain { framed, stdout_seen: 0, stderr_seen: 0 }
    }

    #[test]
    fn each_steps_output_is_cut_at_its_own_tags_whatever_arrives_after() {
        let m = "__m__";
        let mut c = chain(b"one\n\n__m___s0 0\n\n__m___s1 3\nlate", b"\n__m___s0\nwarn\n__m___s1\n");
        let first = take_step(&mut c, m, 0).unwrap();
        assert_eq!((first.status, first.stdout.as_slice(), first.stderr.as_slice()), (0, &b"one\n"[..], &b""[..]));
        let second = take_step(&mut c, m, 1).unwrap();
        assert_eq!((second.status, second.stdout.as_slice(), second.stderr.as_slice()), (3, &b""[..], &b"warn"[..]));
        assert_eq!(c.framed.stdout, b"late");
        assert!(take_step(&mut c, m, 2).is_none(), "no tag yet");
    }

    #[test]
    fn step_1_is_not_taken_for_step_10_and_a_tag_split_between_packets_is_found() {
        let m = "__m__";
        assert!(take_step(&mut chain(b"\n__m___s10 0\n", b"\n__m___s10\n"), m, 1).is_none());
        assert!(take_step(&mut chain(b"\n__m___s10 0\n", b"\n__m___s10\n"), m, 10).is_some());
        let mut c = chain(b"out\n\n__m___s", b"");
        assert!(take_step(&mut c, m, 0).is_none());
        c.framed.stdout.extend_from_slice(b"0 0\n");
        c.framed.stderr.extend_from_slice(b"\n__m___s0\n");
        assert_eq!(take_step(&mut c, m, 0).unwrap().stdout, b"out\n");
    }

    /// Runs the chain's script as the shell loop does (a command that begins with `IN_SHELL ` is a step's
    /// `in_shell` form; `eval` in a background job of bash, its stdin the loop's), with `late` on that stdin 0.3 s after the start, and cuts the output as `read_steps` does.
    /// The stdin stays open meanwhile, as a channel does (at its end, `read -t 0` would say "ready" too).
    fn run(steps: &[(&str, Option<&str>)], late: &str) -> (Vec<ExecOutput>, Framed) {
        let m = "__m__";
        let steps: Vec<Link<'_>> = steps
            .iter()
            .map(|&(command, stdin)| match command.strip_prefix("IN_SHELL ") {
                Some(command) => Link { command, in_shell: true, stdin },
                None => Link { command, in_shell: false, stdin },
            })
            .collect();
        let late = late.to_string();
        let job = format!("{{ eval \"$1\"; }} <&0 & wait $!; {}", super::super::shell::end_markers(m, "2"));
        let mut child = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &job, "sh", &script(&steps, m)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The stdin stays open until the chain ended, as a channel's does.
        let mut stdin = child.stdin.take().unwrap();
        let (ended, wait_end) = std::sync::mpsc::channel::<()>();
        let feeder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = std::io::Write::write_all(&mut stdin, late.as_bytes());
            let _ = wait_end.recv();
        });
        let drain = |mut from: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut from, &mut bytes).unwrap();
                bytes
            })
        };
        let (stdout, stderr) =
            (drain(Box::new(child.stdout.take().unwrap())), drain(Box::new(child.stderr.take().unwrap())));
        let out = std::process::Output {
            status: child.wait().unwrap(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        ended.send(()).unwrap();
        feeder.join().unwrap();
        let mut c = chain(&out.stdout, &out.stderr);
        let taken: Vec<ExecOutput> = (0..steps.len())
            .map_while(|k| take_begin(&mut c, m, k).then(|| take_step(&mut c, m, k)).flatten())
            .collect();
        c.framed.take_status(m);
        c.framed.take_stderr_end(m);
        (taken, c.framed)
    }

    /// On bash: each step's output and status its own, `exit`, `exec` and `cd` kept inside their step, the
    /// chain's script and the previous status out of sight, nothing after a failure, the end markers always.
    #[test]
    fn on_bash_steps_are_isolated_and_the_chain_stops_at_a_failure() {
        let steps = [
            ("cd /; echo \"s=${s:-unset} st=${st:-unset}\"; exit 0", None),
            ("pwd; cat", Some("from stdin\n")),
            ("echo out; echo err >&2; exec sh -c 'exit 4'", None),
            ("echo never", None),
        ];
        let (taken, end) = run(&steps, "");
        assert_eq!(taken.len(), 3, "nothing after the failure");
        assert_eq!(String::from_utf8_lossy(&taken[0].stdout), "s=unset st=unset\n");
        assert_eq!(String::from_utf8_lossy(&taken[1].stdout).lines().nth(1), Some("from stdin"));
        assert_ne!(String::from_utf8_lossy(&taken[1].stdout).lines().next(), Some("/"), "a step's cd stays in it");
        let third = &taken[2];
        assert_eq!((third.status, third.stdout.as_slice(), third.stderr.as_slice()), (4, &b"out\n"[..], &b"err\n"[..]));
        assert_eq!((end.status, end.stderr_done, end.stdout.is_empty()), (Some(0), true, true));
    }

    /// A byte on the shell's stdin (the workstation's stop) that comes during a step lets that step finish,
    /// and no step begins after it; without one, every step runs.
    #[test]
    fn on_bash_a_byte_on_stdin_stops_the_chain_before_its_next_step() {
        let slow = [("sleep 1.5; echo one", None), ("echo two", None)];
        let (taken, _) = run(&slow, "");
        assert_eq!(taken.len(), 2);
        let (taken, end) = run(&slow, "\n");
        assert_eq!(taken.len(), 1, "the step under way finished, the next never began");
        assert_eq!((taken[0].status, taken[0].stdout.as_slice()), (0, &b"one\n"[..]));
        assert_eq!((end.status, end.stderr_done), (Some(0), true));
    }

    /// Steps that leave the shell as is run in the chain's own shell, and a step given `in_shell` too; a
    /// subshell step sees none of what they did but the directory, which each step sets itself.
    #[test]
    fn on_bash_steps_without_a_subshell_run_in_the_chain_shell() {
        let steps = [
            ("echo $BASHPID", None),
            ("IN_SHELL cd /tmp && PATH=/nowhere:$PATH . /dev/stdin", Some("echo $BASHPID $PATH\n")),
            ("echo \"$BASHPID ${s:-unset} ${st:-unset} $PATH\"; exit 3", None),
        ];
        let (taken, end) = run(&steps, "");
        assert_eq!(taken.len(), 3);
        let out: Vec<String> = taken.iter().map(|t| String::from_utf8_lossy(&t.stdout).trim().to_string()).collect();
        let pid = |line: &str| line.split(' ').next().unwrap().to_string();
        assert_eq!(pid(&out[0]), pid(&out[1]), "both in the chain's shell");
        assert_ne!(pid(&out[0]), pid(&out[2]), "a subshell of its own");
        assert!(out[1].contains(" /nowhere:"), "{}", out[1]);
        assert!(out[2].contains(" unset unset ") && !out[2].contains("/nowhere"), "{}", out[2]);
        assert_eq!((taken[2].status, end.status, end.stderr_done), (3, Some(0), true));
    }
}

//! Several commands in one round trip: a chain of short steps goes to a host's shell as one script, and
//! each step's output and status come back, delimited, as it ends. A step that exits non-zero ends the
//! chain there.

use std::time::Duration;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::{evaluated, here_document, ExecOutput, Framed, ShellError, SshSession};
use crate::error::TransportError;

/// A command and its stdin, one of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub command: String,
    pub stdin: Vec<u8>,
}

/// The script that runs `steps` one after another, each in its own subshell with its stdin as a
/// here-document; after each, its status on stdout and an end line on stderr, tagged `{m}_s{k}`; after
/// the first that fails, nothing more; at the end, the shell loop's own end markers.
fn script(steps: &[(&str, Option<&str>)], m: &str) -> String {
    let mut script = String::new();
    for (k, (command, text)) in steps.iter().enumerate() {
        let evaluated = evaluated(command);
        let tags = format!("st=$?; printf '\\n%s %d\\n' {m}_s{k} $st; printf '\\n%s\\n' {m}_s{k} >&2; [ $st -eq 0 ]");
        match text {
            None => script += &format!("{{ ( {evaluated}\n) </dev/null; {tags}; }} &&\n"),
            Some(text) => script += &format!("{{ ( {evaluated}\n) <<'{m}_stdin'\n{text}{m}_stdin\n{tags}; }} &&\n"),
        }
    }
    script + &format!("true; printf '\\n%s %d\\n' {m} 0; printf '\\n%s\\n' {m} >&2\n")
}

fn find_first(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Step `k`'s output, taken off the front of `framed` once both of its tags arrived.
fn take_step(framed: &mut Framed, m: &str, k: usize) -> Option<ExecOutput> {
    let tag = format!("\n{m}_s{k} ");
    let at = find_first(&framed.stdout, tag.as_bytes())?;
    let digits = &framed.stdout[at + tag.len()..];
    let line = digits.iter().position(|&b| b == b'\n')?;
    let end = format!("\n{m}_s{k}\n");
    let err_at = find_first(&framed.stderr, end.as_bytes())?;
    // The shell printed the status: anything else is a broken stream, reported as the shell's own failure.
    let status = std::str::from_utf8(&digits[..line]).ok().and_then(|d| d.parse().ok()).unwrap_or(255);
    let stdout = framed.stdout[..at].to_vec();
    framed.stdout.drain(..at + tag.len() + line + 1);
    let stderr = framed.stderr[..err_at].to_vec();
    framed.stderr.drain(..err_at + end.len());
    Some(ExecOutput { status, stdout, stderr })
}

impl SshSession {
    /// Runs `steps` one after another in one round trip, calling `done` with each step's position and output
    /// as it ends; none runs after one that exited non-zero. `timeout` bounds each step. Where the host
    /// has no shell loop, or a step's stdin cannot go as a here-document, each step is its own command.
    pub async fn exec_steps(
        &self,
        steps: &[Step],
        timeout: Duration,
        done: &(dyn Fn(usize, ExecOutput) + Send + Sync),
    ) -> Result<(), TransportError> {
        let texts: Option<Vec<Option<&str>>> = steps
            .iter()
            .map(|s| if s.stdin.is_empty() { Some(None) } else { here_document(&s.stdin, &self.marker).map(Some) })
            .collect();
        if let (true, Some(texts)) = (self.shell_allowed(), texts) {
            let chain: Vec<(&str, Option<&str>)> = steps.iter().map(|s| s.command.as_str()).zip(texts).collect();
            match self.steps_in_shell(&chain, timeout, done).await {
                Err(ShellError::Unavailable) => self.no_shell.store(true, std::sync::atomic::Ordering::SeqCst),
                Err(ShellError::Failed(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
        for (k, step) in steps.iter().enumerate() {
            let out = self.exec(&step.command, &step.stdin, timeout).await?;
            let failed = out.status != 0;
            done(k, out);
            if failed {
                break;
            }
        }
        Ok(())
    }

    async fn steps_in_shell(
        &self,
        steps: &[(&str, Option<&str>)],
        timeout: Duration,
        done: &(dyn Fn(usize, ExecOutput) + Send + Sync),
    ) -> Result<(), ShellError> {
        let Some(&(first, _)) = steps.first() else { return Ok(()) };
        let (permit, mut channel) = self.checkout(first, timeout).await?;
        let script = script(steps, &self.marker);
        let framed_script = format!("{:012}{script}", script.len());
        let result = match channel.data(framed_script.as_bytes()).await {
            Ok(()) => self.read_steps(&mut channel, steps, timeout, done).await,
            Err(e) => Err(ShellError::Failed(TransportError::Channel { host: self.target.ip, message: e.to_string() })),
        };
        self.checkin(channel, result.is_ok()).await;
        drop(permit);
        result
    }

    /// Reads the steps' outputs as they end, then the script's end markers; each step gets `timeout`.
    async fn read_steps(
        &self,
        channel: &mut Channel<Msg>,
        steps: &[(&str, Option<&str>)],
        timeout: Duration,
        done: &(dyn Fn(usize, ExecOutput) + Send + Sync),
    ) -> Result<(), ShellError> {
        let m = &self.marker;
        let mut framed = Framed { stdout: Vec::new(), stderr: Vec::new(), status: None, stderr_done: false };
        let (mut next, mut more) = (0, true);
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            while more && next < steps.len() {
                let Some(out) = take_step(&mut framed, m, next) else { break };
                more = out.status == 0;
                done(next, out);
                next += 1;
                deadline = tokio::time::Instant::now() + timeout;
            }
            if !more || next == steps.len() {
                framed.take_status(m);
                framed.take_stderr_end(m);
                if framed.status.is_some() && framed.stderr_done {
                    return Ok(());
                }
            }
            let what = steps.get(next).map_or("", |s| s.0);
            match tokio::time::timeout_at(deadline, channel.wait()).await {
                Err(_) => return Err(ShellError::Failed(self.timed_out(what, timeout))),
                Ok(Some(ChannelMsg::Data { data })) => framed.stdout.extend_from_slice(&data),
                Ok(Some(ChannelMsg::ExtendedData { data, .. })) => framed.stderr.extend_from_slice(&data),
                Ok(Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close) | None) => {
                    return Err(ShellError::Failed(self.lost()));
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_steps_output_is_cut_at_its_own_tags_whatever_arrives_after() {
        let m = "__m__";
        let mut framed = Framed {
            stdout: b"one\n\n__m___s0 0\n\n__m___s1 3\nlate".to_vec(),
            stderr: b"\n__m___s0\nwarn\n__m___s1\n".to_vec(),
            status: None,
            stderr_done: false,
        };
        let first = take_step(&mut framed, m, 0).unwrap();
        assert_eq!((first.status, first.stdout.as_slice(), first.stderr.as_slice()), (0, &b"one\n"[..], &b""[..]));
        let second = take_step(&mut framed, m, 1).unwrap();
        assert_eq!((second.status, second.stdout.as_slice(), second.stderr.as_slice()), (3, &b""[..], &b"warn"[..]));
        assert_eq!(framed.stdout, b"late");
        assert!(take_step(&mut framed, m, 2).is_none(), "no tag yet");
    }

    #[test]
    fn step_1_is_not_taken_for_step_10() {
        let m = "__m__";
        let mut framed = Framed {
            stdout: b"\n__m___s10 0\n".to_vec(),
            stderr: b"\n__m___s10\n".to_vec(),
            status: None,
            stderr_done: false,
        };
        assert!(take_step(&mut framed, m, 1).is_none());
        assert!(take_step(&mut framed, m, 10).is_some());
    }

    #[test]
    fn the_script_stops_after_a_failed_step_and_always_ends_with_the_loops_markers() {
        let s = script(&[("false", None), ("cat", Some("x\n"))], "__m__");
        assert!(s.contains("[ $st -eq 0 ]; } &&\n"), "{s}");
        assert!(s.contains("<<'__m___stdin'\nx\n__m___stdin\n"), "{s}");
        assert!(s.ends_with("true; printf '\\n%s %d\\n' __m__ 0; printf '\\n%s\\n' __m__ >&2\n"), "{s}");
    }
}

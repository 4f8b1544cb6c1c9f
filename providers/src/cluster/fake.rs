//! A scripted [`Remote`] for unit tests (k0sctl's rigtest pattern): commands answer what the test says,
//! everything else succeeds with no output, and every call is recorded in order.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::remote::{Remote, Result};
use crate::transport::{one_by_one, ExecOutput, OnStep, Step, StepStop};

struct Rule {
    host: Option<IpAddr>,
    contains: String,
    stdout: String,
    stderr: String,
    status: u32,
    /// `Some(n)`: answers the next n matching commands only.
    times: Option<usize>,
}

#[derive(Default)]
pub struct Scripted {
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<Vec<(IpAddr, String)>>,
    /// The stdin of every `exec`, beside its host and command.
    stdins: Mutex<Vec<(IpAddr, String, Vec<u8>)>>,
    files: Mutex<BTreeMap<(IpAddr, String), Vec<u8>>>,
    /// What `download` returns for a path it has no file for.
    any_download: Mutex<Vec<u8>>,
    /// Hosts that do not answer: every call to them fails as ssh would.
    down: Mutex<Vec<IpAddr>>,
}

impl Scripted {
    fn add(&self, host: Option<IpAddr>, contains: &str, stdout: &str, stderr: &str, status: u32, times: Option<usize>) {
        self.rules.lock().unwrap().push(Rule {
            host,
            contains: contains.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            status,
            times,
        });
    }

    /// Commands containing `contains` (on any host) print `stdout`.
    pub fn on(self, contains: &str, stdout: &str) -> Self {
        self.add(None, contains, stdout, "", 0, None);
        self
    }

    /// The next matching command only prints `stdout` (earlier rules answer first).
    pub fn once(self, contains: &str, stdout: &str) -> Self {
        self.add(None, contains, stdout, "", 0, Some(1));
        self
    }

    /// Commands containing `contains` on `host` print `stdout`.
    pub fn on_host(self, host: IpAddr, contains: &str, stdout: &str) -> Self {
        self.add(Some(host), contains, stdout, "", 0, None);
        self
    }

    /// Commands containing `contains` exit with `status`, printing `stderr`.
    pub fn fail(self, contains: &str, status: u32, stderr: &str) -> Self {
        self.add(None, contains, "", stderr, status, None);
        self
    }

    /// Commands containing `contains` on `host` exit with `status`, printing `stderr`.
    pub fn fail_on_host(self, host: IpAddr, contains: &str, status: u32, stderr: &str) -> Self {
        self.add(Some(host), contains, "", stderr, status, None);
        self
    }

    /// `host` does not answer (a dead machine).
    pub fn down(self, host: IpAddr) -> Self {
        self.goes_down(host);
        self
    }

    /// From now on, `host` does not answer (a partition), and is known not to.
    pub fn goes_down(&self, host: IpAddr) {
        self.down.lock().unwrap().push(host);
    }

    /// What a `download` of any other path returns.
    pub fn downloads(self, content: &[u8]) -> Self {
        *self.any_download.lock().unwrap() = content.to_vec();
        self
    }

    /// Every call so far as `HOST: COMMAND` (uploads as `HOST: upload PATH MODE`).
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(h, c)| format!("{h}: {c}")).collect()
    }

    /// The commands run on `host`, in order.
    pub fn commands(&self, host: IpAddr) -> Vec<String> {
        self.calls.lock().unwrap().iter().filter(|(h, _)| *h == host).map(|(_, c)| c.clone()).collect()
    }

    /// The stdin of the last command on `host` containing `contains`.
    pub fn stdin_of(&self, host: IpAddr, contains: &str) -> Option<String> {
        let stdins = self.stdins.lock().unwrap();
        let found = stdins.iter().rev().find(|(h, c, _)| *h == host && c.contains(contains));
        found.map(|(_, _, stdin)| String::from_utf8_lossy(stdin).into_owned())
    }

    /// What the last upload to `path` on `host` wrote.
    pub fn uploaded(&self, host: IpAddr, path: &str) -> Option<String> {
        self.files.lock().unwrap().get(&(host, path.to_string())).map(|c| String::from_utf8_lossy(c).into_owned())
    }
}

impl Scripted {
    /// What reaching a host that is down gives: the error of an SSH connection that timed out.
    fn unreachable(&self, host: IpAddr) -> Option<crate::error::ProviderError> {
        let message = "connection timed out".to_string();
        let down = self.down.lock().unwrap().contains(&host);
        down.then(|| crate::error::TransportError::Unreachable { host, port: 22, attempts: 3, message }.into())
    }
}

impl Remote for Scripted {
    fn exec<'a>(&'a self, host: IpAddr, command: &'a str, stdin: &'a [u8]) -> BoxFuture<'a, Result<ExecOutput>> {
        self.calls.lock().unwrap().push((host, command.to_string()));
        self.stdins.lock().unwrap().push((host, command.to_string(), stdin.to_vec()));
        if let Some(error) = self.unreachable(host) {
            return Box::pin(async move { Err(error) });
        }
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.host.is_none_or(|h| h == host) && command.contains(&r.contains) && r.times.is_none_or(|t| t > 0)
        });
        let out = match rule {
            Some(rule) => {
                if let Some(t) = rule.times.as_mut() {
                    *t -= 1;
                }
                ExecOutput {
                    stdout: rule.stdout.clone().into_bytes(),
                    stderr: rule.stderr.clone().into_bytes(),
                    status: rule.status,
                }
            }
            None => ExecOutput { stdout: Vec::new(), stderr: Vec::new(), status: 0 },
        };
        Box::pin(async move { Ok(out) })
    }

    /// Answered as `exec`, recorded as `read COMMAND`.
    fn read<'a>(&'a self, host: IpAddr, command: &'a str) -> BoxFuture<'a, Result<ExecOutput>> {
        let out = self.exec(host, command, b"");
        if let Some(last) = self.calls.lock().unwrap().last_mut() {
            last.1 = format!("read {command}");
        }
        out
    }

    fn upload<'a>(&'a self, host: IpAddr, path: &'a str, content: &'a [u8], mode: u32) -> BoxFuture<'a, Result<()>> {
        self.calls.lock().unwrap().push((host, format!("upload {path} {mode:o}")));
        self.files.lock().unwrap().insert((host, path.to_string()), content.to_vec());
        Box::pin(async { Ok(()) })
    }

    fn download<'a>(&'a self, host: IpAddr, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        self.calls.lock().unwrap().push((host, format!("download {path}")));
        let file = self.files.lock().unwrap().get(&(host, path.to_string())).cloned();
        let content = file.unwrap_or_else(|| self.any_download.lock().unwrap().clone());
        Box::pin(async move { Ok(content) })
    }

    fn host_key(&self, _host: IpAddr) -> BoxFuture<'_, Result<String>> {
        Box::pin(async { Ok("ssh-ed25519 AAAAtest".to_string()) })
    }

    fn known_unreachable(&self, host: IpAddr) -> bool {
        self.down.lock().unwrap().contains(&host)
    }

    /// As over SSH, a host that cannot be reached fails the chain before any step begins.
    fn exec_steps<'a>(
        &'a self,
        host: IpAddr,
        steps: &'a [Step],
        stop: StepStop<'a>,
        on: OnStep<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        if let Some(error) = self.unreachable(host) {
            return Box::pin(async move { Err(error) });
        }
        Box::pin(one_by_one(steps, stop, on, move |step| self.exec(host, &step.command, &step.stdin)))
    }
}

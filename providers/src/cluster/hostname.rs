//! `hostname.IP`: the host's name, set live and in `/etc/hostname`; the name it had first is recorded so
//! that `destroy --restore-hostname` can give it back.

use std::net::IpAddr;

use sealer_engine::schema::{self, Known};

use super::remote::Result;
use super::{Cx, KindProvider, Observation};
use crate::error::ProviderError;
use crate::shell::quote;

pub struct Hostname;

/// The host's name now, read by the shell itself (no process: a refresh reads it on every host). POSIX:
/// a refresh may have root's login shell run it.
const NOW: &str = "read -r n < /proc/sys/kernel/hostname && printf '%s\\n' \"$n\"";

/// Sets the hostname live and persistently. The shell writes it to `/proc/sys/kernel/hostname` itself
/// (the same `sethostname` as the `hostname` program, without a process); `hostname` only where `/proc/sys`
/// is read-only, as in some containers.
fn set_hostname(name: &str) -> String {
    let q = quote(name);
    format!("{{ {{ printf %s {q} > /proc/sys/kernel/hostname; }} 2>/dev/null || hostname {q}; }} && printf '%s\\n' {q} > /etc/hostname")
}

impl KindProvider for Hostname {
    type Schema = schema::Hostname;

    async fn read(
        &self,
        obs: &Observation<'_>,
        ip: IpAddr,
        recorded: &schema::Hostname,
    ) -> Result<Option<schema::Hostname>> {
        Ok(Some(schema::Hostname { name: Known::Is(obs.read_output(ip, NOW).await?), ..recorded.clone() }))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, mut after: schema::Hostname) -> Result<schema::Hostname> {
        // One command (and no process but `hostname` to set it): the name now, and when it is not the
        // one wanted, set it and the name after.
        let wanted = after.name.known().cloned();
        let command = match &wanted {
            Some(name) => {
                format!("{NOW}; if [ \"$n\" != {} ]; then {} || exit; {NOW}; fi", quote(name), set_hostname(name))
            }
            None => NOW.to_string(),
        };
        let out = cx.output(ip, &command).await?;
        let mut names = out.lines().map(str::to_string);
        let current = names.next().unwrap_or_default();
        if after.original == Known::Unknown {
            after.original = Known::Is(current.clone());
        }
        match wanted {
            Some(name) if name != current => {
                let now = names.next().unwrap_or_default();
                if now != name {
                    return Err(ProviderError::HostnameNotSet { host: ip, wanted: name, now });
                }
            }
            Some(_) => {}
            None => {
                after.name = Known::Is(current);
            }
        }
        Ok(after)
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::Hostname) -> Result<()> {
        match before.original.known() {
            Some(original) if cx.ctx.restore_hostnames && !original.is_empty() => {
                cx.run(ip, &set_hostname(original), b"").await.map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;

    #[tokio::test]
    async fn a_different_name_is_set_and_checked_and_the_original_recorded() {
        let remote = Arc::new(Scripted::default().on("/proc/sys/kernel/hostname", "old\nmaster-0"));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("name", Value::text("master-0")), ("original", Value::Unknown)]);
        let got = apply(&p, change(Kind::Hostname, "10.0.0.2", M1, Action::Create, None, Some(after)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["original"], Value::text("old"));
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 1, "one command reads, sets and checks: {commands:?}");
        assert!(commands[0].contains(
            "then { { printf %s master-0 > /proc/sys/kernel/hostname; } 2>/dev/null || hostname master-0; } && \
             printf '%s\\n' master-0 > /etc/hostname || exit;"
        ));
    }

    /// The command in a real shell, in a UTS and mount namespace of its own (root's `unshare`: the
    /// machine's name and `/etc/hostname` stay as they are, a temporary file is bound over the latter):
    /// the name is set through `/proc/sys`, and by `hostname` where `/proc/sys` is read-only.
    #[test]
    fn a_real_shell_sets_the_name_with_or_without_a_writable_proc_sys() {
        let etc = tempfile::NamedTempFile::new().unwrap();
        for (read_only, name) in [(false, "through-proc"), (true, "through-hostname")] {
            let ro = "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && \
                      { { printf x > /proc/sys/kernel/hostname; } 2>/dev/null && exit 9 || true; } && ";
            let script = format!(
                "mount --bind {} /etc/hostname && {}{} && uname -n",
                etc.path().display(),
                if read_only { ro } else { "" },
                super::set_hostname(name)
            );
            let out = std::process::Command::new("unshare").args(["--uts", "--mount", "sh", "-c", &script]).output();
            let out = out.expect("this test needs util-linux's unshare");
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "needs root (a UTS and mount namespace); {name}: {said}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name}\n"));
            assert_eq!(std::fs::read_to_string(etc.path()).unwrap(), format!("{name}\n"));
        }
    }

    #[tokio::test]
    async fn the_right_name_already_is_left_alone() {
        let remote = Arc::new(Scripted::default().on("/proc/sys/kernel/hostname", "master-0"));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("name", Value::text("master-0")), ("original", Value::text("before"))]);
        let got = apply(&p, change(Kind::Hostname, "10.0.0.2", M1, Action::Create, None, Some(after)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((remote.commands(M1).len(), &got["original"]), (1, &Value::text("before")));
    }

    #[tokio::test]
    async fn a_name_that_does_not_stick_is_an_error() {
        let remote = Arc::new(Scripted::default().on("/proc/sys/kernel/hostname", "stubborn\nstubborn"));
        let (p, _logs) = provider(remote);
        let after = attrs([("name", Value::text("master-0"))]);
        let err = failure(&p, change(Kind::Hostname, "10.0.0.2", M1, Action::Create, None, Some(after))).await;
        assert_eq!(err, "the hostname of `10.0.0.2` is `stubborn` after setting `master-0`");
    }

    #[tokio::test]
    async fn delete_restores_the_original_only_when_asked() {
        let before = attrs([("name", Value::text("master-0")), ("original", Value::text("old"))]);
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::Hostname, "10.0.0.2", M1, Action::Delete, Some(before.clone()), None)).await.unwrap();
        assert!(remote.calls().is_empty());

        let remote = Arc::new(Scripted::default());
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = crate::cluster::testing::context(None, logs.path());
        ctx.restore_hostnames = true;
        let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
        apply(&p, change(Kind::Hostname, "10.0.0.2", M1, Action::Delete, Some(before), None)).await.unwrap();
        assert_eq!(
            remote.commands(M1),
            ["{ { printf %s old > /proc/sys/kernel/hostname; } 2>/dev/null || hostname old; } && \
              printf '%s\\n' old > /etc/hostname"]
        );
    }
}

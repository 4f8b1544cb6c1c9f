//! `host.IP`: the host is reachable; its facts and the host key it presented are recorded.

use std::net::IpAddr;

use sealer_engine::schema::{self, Known};

use super::remote::Result;
use super::{Cx, KindProvider};

pub struct Host;

/// Architecture, CPUs, memory (KiB), OS and kernel release, a line each; the shell reads what it can
/// itself, as every process started costs every host.
/// The architecture from `/proc/sys/kernel/arch` where the kernel has it (`uname -m` else), the CPUs the
/// shell may run on from its `Cpus_allowed_list` (what `nproc` counts; `nproc` where `/proc` lacks it), and
/// `/etc/os-release`'s ID and VERSION_ID read line by line, not sourced in a subshell (POSIX: hosts without
/// bash run it with `sh`).
const FACTS: &str = "a=; read -r a 2>/dev/null < /proc/sys/kernel/arch; echo \"${a:-$(uname -m)}\"; \
                     c=; while read -r k v; do if [ \"$k\" = Cpus_allowed_list: ]; then c=$v; break; fi; \
                     done 2>/dev/null < /proc/self/status; if [ -n \"$c\" ]; then n=0; o=$IFS; IFS=,; \
                     for r in $c; do case $r in *-*) n=$((n + ${r#*-} - ${r%-*} + 1)) ;; *) n=$((n + 1)) ;; esac; \
                     done; IFS=$o; echo \"$n\"; else nproc; fi; \
                     m=; while read -r k v _; do if [ \"$k\" = MemTotal: ]; then m=$v; break; fi; \
                     done < /proc/meminfo; echo \"$m\"; \
                     i=; v=; if { while IFS== read -r k x || [ -n \"$k\" ]; do case $k in ID) i=$x ;; VERSION_ID) v=$x ;; esac; \
                     done; } 2>/dev/null < /etc/os-release; then i=${i#[\\\"\\']}; i=${i%[\\\"\\']}; v=${v#[\\\"\\']}; \
                     v=${v%[\\\"\\']}; echo \"$i-$v\"; else echo unknown; fi; \
                     r=; read -r r < /proc/sys/kernel/osrelease; echo \"${r:-unknown}\"";

impl KindProvider for Host {
    type Schema = schema::Host;

    async fn create(&self, cx: &Cx, ip: IpAddr, mut after: schema::Host) -> Result<schema::Host> {
        let out = cx.output(ip, FACTS).await?;
        let lines: Vec<&str> = out.lines().collect();
        let fact = |i: usize| lines.get(i).map(|s| s.trim().to_string()).unwrap_or_default();
        after.arch = Known::Is(fact(0));
        after.cpus = Known::Is(fact(1).parse().unwrap_or(0));
        after.memory_kib = Known::Is(fact(2).parse().unwrap_or(0));
        after.os = Known::Is(fact(3));
        after.kernel = Known::Is(fact(4));
        after.host_key = Known::Is(cx.remote.host_key(ip).await?);
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;

    /// The facts script in a real bash and dash, on one CPU and on all: the CPUs it counts are `nproc`'s.
    #[test]
    fn a_real_shell_counts_the_cpus_as_nproc_does() {
        for shell in ["bash", "dash"] {
            for cpus in ["0", "0-1"] {
                let run = |program: &str, args: &[&str]| {
                    let out = std::process::Command::new("taskset").args(["-c", cpus, program]).args(args).output();
                    String::from_utf8(out.unwrap().stdout).unwrap()
                };
                let facts = run(shell, &["-c", super::FACTS]);
                let lines: Vec<&str> = facts.lines().collect();
                assert_eq!(lines.len(), 5, "{shell}: {facts}");
                assert_eq!(lines[1], run("nproc", &[]).trim(), "{shell} on CPUs {cpus}");
            }
        }
    }

    #[tokio::test]
    async fn facts_and_the_host_key_are_recorded() {
        let remote = Arc::new(Scripted::default().on("kernel/arch", "x86_64\n2\n4000\ndebian-12\n6.1.0-28-amd64\n"));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("role", Value::text("master"))]);
        let got =
            apply(&p, change(Kind::Host, "10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap().unwrap();
        assert_eq!(got["arch"], Value::text("x86_64"));
        assert_eq!(got["cpus"], Value::Int(2));
        assert_eq!(got["memory_kib"], Value::Int(4000));
        assert_eq!(got["os"], Value::text("debian-12"));
        assert_eq!(got["kernel"], Value::text("6.1.0-28-amd64"));
        assert_eq!(got["host_key"], Value::text("ssh-ed25519 AAAAtest"));
        assert_eq!(got["role"], Value::text("master"));
        assert_eq!(remote.calls().len(), 1, "one command reads every fact");
    }

    #[tokio::test]
    async fn deleting_a_host_touches_nothing() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        let got = apply(&p, change(Kind::Host, "10.0.0.2", M1, Action::Delete, Some(attrs([])), None)).await.unwrap();
        assert_eq!(got, None);
        assert!(remote.calls().is_empty());
    }
}

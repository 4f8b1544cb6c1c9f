//! `balancer.IP`: a node's API balancer, sealer's lvscare. The image's `bin/lvscare care --vs VIP:6443 --rs
//! MASTER:6443 ...` runs on the node, sends connections to the virtual IP to the masters that answer their
//! health check, and takes a master out while it does not; `apiserver.cluster.local` resolves to the
//! virtual IP there, so the node's kubelet keeps its API when a master goes. The attributes are the
//! virtual server and the masters; a node whose checker runs with other masters (or none) shows as drift.

use std::net::IpAddr;
use std::path::Path;

use sealer_engine::kubeadm::{API_SERVER_DOMAIN, VIRTUAL_IP};
use sealer_engine::schema;

use super::remote::Result;
use super::{Cx, KindProvider, Observation};
use crate::error::ProviderError;
use crate::shell::quote;

pub struct Balancer;

/// Where the image carries the checker.
const LVSCARE: &str = "bin/lvscare";
const PID: &str = "/run/sealer-lvscare.pid";
const STATE: &str = "/run/sealer-lvscare/state.json";

/// Whether an image (its rootfs) carries the balancer: then every node gets one.
pub fn carried_by(rootfs: &Path) -> bool {
    rootfs.join(LVSCARE).is_file()
}

/// The shell that stops a running checker (it removes its rules and route itself), waiting up to 5 s.
fn stop_script() -> String {
    format!(
        "p=$(cat {PID} 2>/dev/null); if [ -n \"$p\" ] && tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q ' care --vs '; \
         then kill \"$p\"; i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 50 ]; do i=$((i+1)); sleep 0.1; done; \
         if kill -0 \"$p\" 2>/dev/null; then kill -9 \"$p\"; fi; fi; rm -f {PID}"
    )
}

/// An `IP:PORT` this provider puts on a command line: checked, so nothing else reaches the shell.
fn endpoint(text: &str) -> Option<String> {
    let (ip, port) = text.rsplit_once(':')?;
    let ip: IpAddr = ip.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    Some(format!("{ip}:{port}"))
}

impl KindProvider for Balancer {
    type Schema = schema::Balancer;

    /// The checker's own arguments, from its command line: what the node really balances over.
    async fn read(
        &self,
        obs: &Observation<'_>,
        ip: IpAddr,
        _recorded: &schema::Balancer,
    ) -> Result<Option<schema::Balancer>> {
        let line = obs
            .cx
            // Its rules must be there too: a flushed ruleset (a firewall reload) is a balancer that
            // balances nothing, whatever runs.
            .output(
                ip,
                &format!(
                    "nft list table ip sealer-lvscare >/dev/null 2>&1 && p=$(cat {PID} 2>/dev/null) && \
                     tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null; true"
                ),
            )
            .await?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut real = Vec::new();
        let mut virtual_server = None;
        if words.iter().any(|w| w.ends_with("lvscare")) {
            for pair in words.windows(2) {
                match pair[0] {
                    "--rs" => real.push(pair[1].to_string()),
                    "--vs" => virtual_server = Some(pair[1].to_string()),
                    _ => {}
                }
            }
        }
        Ok(Some(schema::Balancer { virtual_server: virtual_server.into(), real_servers: real }))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Balancer) -> Result<schema::Balancer> {
        let bad = |what: String| ProviderError::Local {
            what: "balancer",
            path: what,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not IP:PORT"),
        };
        let vs = after.virtual_server.known().cloned().unwrap_or_default();
        let vs = endpoint(&vs).ok_or_else(|| bad(vs.clone()))?;
        let mut args = format!("care --vs {vs}");
        for rs in &after.real_servers {
            args += &format!(" --rs {}", endpoint(rs).ok_or_else(|| bad(rs.clone()))?);
        }
        let bin = quote(&format!("{}/{LVSCARE}", cx.rootfs()));
        // Started afresh with the masters it is given, detached from the session; ready once it wrote
        // which masters it serves (the rules are in place then).
        let script = format!(
            "for t in nft ip; do command -v $t >/dev/null || {{ echo \"the node's API balancer needs $t (Debian's nftables \
             and iproute2)\" >&2; exit 1; }}; done; {}; rm -f {STATE}; setsid {bin} {args} >>/var/log/sealer-lvscare.log 2>&1 </dev/null & echo $! > {PID}; \
             i=0; until [ -s {STATE} ]; do i=$((i+1)); if [ $i -gt 100 ]; then echo 'lvscare did not start:' >&2; \
             tail -n 5 /var/log/sealer-lvscare.log >&2; exit 1; fi; sleep 0.1; done",
            stop_script()
        );
        cx.run(ip, &script, b"").await?;
        let vip: IpAddr = VIRTUAL_IP.parse().map_err(|_| bad(VIRTUAL_IP.into()))?;
        cx.hosts_entry(ip, API_SERVER_DOMAIN, vip).await?;
        Ok(after)
    }

    /// The node reaches the API through the first master again (as without a balancer).
    async fn delete(&self, cx: &Cx, ip: IpAddr, _before: &schema::Balancer) -> Result<()> {
        // What a checker that died left (its table, the virtual IP's route) goes too.
        let script = format!(
            "{}; nft delete table ip sealer-lvscare 2>/dev/null; ip route del {VIRTUAL_IP}/32 2>/dev/null; \
             rm -rf /run/sealer-lvscare; true",
            stop_script()
        );
        cx.run(ip, &script, b"").await?;
        cx.hosts_entry(ip, API_SERVER_DOMAIN, cx.ctx.first_master).await
    }
}

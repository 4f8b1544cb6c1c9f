//! `sealer check`: before an install (`--pre`), what each host must offer — a root shell (sudo), the
//! ports Kubernetes and sealer bind free, no swap, a clock in step with the workstation, a hostname no
//! other host has; after it (`--post`), the cluster's health as its API says: every host a Ready node.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealer_engine::clusterfile::Role;
use sealer_engine::Clusterfile;

use super::error::Result;
use super::{hosts, Workspace};

/// Ports a master binds: the API server, etcd (client, peer), the kubelet, the controller manager, the
/// scheduler; the first master also binds the cluster's registry's.
const MASTER_PORTS: [u16; 6] = [6443, 2379, 2380, 10250, 10257, 10259];
const NODE_PORTS: [u16; 1] = [10250];

/// How many hosts are checked at once.
const AT_ONCE: usize = 32;

/// How far a host's clock may be from the workstation's: certificates and tokens are dated.
const MAX_SKEW: Duration = Duration::from_secs(5);

/// One check on one host.
#[derive(Debug)]
pub struct Finding {
    pub ip: IpAddr,
    pub check: &'static str,
    pub passed: bool,
    pub detail: String,
}

fn finding(ip: IpAddr, check: &'static str, passed: bool, detail: impl Into<String>) -> Finding {
    Finding { ip, check, passed, detail: detail.into() }
}

/// The script a host runs for `--pre`: one `NAME|VALUE` line per fact (POSIX sh: dash is `/bin/sh`; the
/// socket tables go through `cat` so that a host without IPv6, and no `/proc/net/tcp6`, is read whole).
fn pre_script(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
    format!(
        "echo \"uid|$(id -u)\"; echo \"hostname|$(cat /proc/sys/kernel/hostname)\"; echo \"time|$(date +%s)\"; \
         echo \"swap|$(awk 'NR > 1' /proc/swaps | wc -l)\"; \
         for p in {ports}; do h=$(printf ':%04X' \"$p\"); \
         if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | \
         awk -v h=\"$h\" '$4 == \"0A\" && substr($2, length($2) - 4) == h {{ f = 1 }} END {{ exit !f }}'; \
         then echo \"taken|$p\"; fi; done",
        ports = ports.join(" ")
    )
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// What a host said to the `--pre` script, and when it was asked and answered (workstation time).
struct Facts {
    asked: f64,
    answered: f64,
    lines: Vec<(String, String)>,
}

impl Facts {
    fn get(&self, name: &str) -> &str {
        self.lines.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.lines.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Why a host's facts could not be read.
#[derive(Debug, thiserror::Error)]
enum FactsError {
    #[error(transparent)]
    Remote(#[from] sealer_providers::ProviderError),
    #[error("the checks exited with {status}: {stderr}")]
    Failed { status: u32, stderr: String },
}

/// Runs the `--pre` script on `ip`, once connected (and sudo's shell open), so that the clock is read
/// within one command's round trip.
async fn facts(remote: &dyn sealer_providers::cluster::Remote, ip: IpAddr, ports: &[u16]) -> Result<Facts, FactsError> {
    remote.exec(ip, "true", b"").await?;
    let asked = now();
    let out = remote.exec(ip, &pre_script(ports), b"").await?;
    if out.status != 0 {
        return Err(FactsError::Failed { status: out.status, stderr: out.stderr_text() });
    }
    let lines = out
        .stdout_text()
        .lines()
        .filter_map(|l| l.split_once('|').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect();
    Ok(Facts { asked, answered: now(), lines })
}

/// The checks before an install, on every host of the Clusterfile.
pub fn pre(ws: &Workspace, cf: &Clusterfile, strict_host_keys: bool) -> Result<Vec<Finding>> {
    let state = super::recorded_state(ws, &cf.cluster.name)?;
    let remote = ws.remote(hosts::ssh_targets(ws, cf, &state, strict_host_keys)?, Duration::from_secs(60));
    let first = cf.cluster.first_master().map(|h| h.ip);
    let asks = cf.cluster.hosts.iter().map(|h| {
        let remote = remote.clone();
        let mut ports: Vec<u16> = if h.role == Role::Master { MASTER_PORTS.to_vec() } else { NODE_PORTS.to_vec() };
        if Some(h.ip) == first {
            ports.push(sealer_engine::kubeadm::REGISTRY_PORT);
        }
        async move { (h.ip, facts(remote.as_ref(), h.ip, &ports).await) }
    });
    // A bounded number of hosts at once (each an ssh login), answers kept in the Clusterfile's order.
    let runs: Vec<_> = ws.block_on(futures_util::StreamExt::collect(futures_util::StreamExt::buffered(
        futures_util::stream::iter(asks),
        AT_ONCE,
    )))?;
    let mut findings = Vec::new();
    let mut names: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (ip, facts) in runs {
        let facts = match facts {
            Ok(facts) => facts,
            Err(e) => {
                findings.push(finding(ip, "ssh", false, e.to_string()));
                continue;
            }
        };
        findings.push(finding(ip, "ssh", true, "reached"));
        let root = facts.get("uid") == "0";
        let said = if root { "commands run as root" } else { "not root, and sudo did not make it so" };
        findings.push(finding(ip, "root", root, said));
        let taken = facts.all("taken");
        let said = if taken.is_empty() { "free".to_string() } else { format!("in use: {}", taken.join(", ")) };
        findings.push(finding(ip, "ports", taken.is_empty(), said));
        let swaps = facts.get("swap");
        let said = if swaps == "0" {
            "off".to_string()
        } else {
            format!("{swaps} swap area(s) on: the kubelet refuses to start")
        };
        findings.push(finding(ip, "swap", swaps == "0", said));
        match facts.get("time").parse::<f64>() {
            // The host read its clock between asking and answering: it is in step when within that span
            // widened by the allowed skew (its `date` has whole seconds).
            Ok(t) => {
                let skew = if t + 1.0 < facts.asked {
                    facts.asked - (t + 1.0)
                } else if t > facts.answered {
                    t - facts.answered
                } else {
                    0.0
                };
                let ok = skew <= MAX_SKEW.as_secs_f64();
                findings.push(finding(ip, "clock", ok, format!("{skew:.0} s from the workstation's")));
            }
            Err(_) => findings.push(finding(ip, "clock", false, "the host did not say its time")),
        }
        // The node name each host will have: the HOSTNAME plugin's when it names the host, else its own;
        // Kubernetes lowercases it.
        let name = cf.hostnames.get(&ip).cloned().unwrap_or_else(|| facts.get("hostname").to_string());
        names.entry(name.to_lowercase()).or_default().push(ip);
    }
    for (name, ips) in &names {
        let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
        for ip in ips {
            let (passed, said) = if ips.len() > 1 {
                (false, format!("node name `{name}` is also that of {}", list.join(", ")))
            } else {
                (true, format!("node name `{name}`"))
            };
            findings.push(finding(*ip, "hostname", passed, said));
        }
    }
    Ok(findings)
}

/// The checks after an install: every host of the Clusterfile is a node, Ready, as the cluster's API says.
pub fn post(ws: &Workspace, cf: &Clusterfile, strict_host_keys: bool) -> Result<Vec<Finding>> {
    let state = super::recorded_state(ws, &cf.cluster.name)?;
    let nodes = hosts::cluster_nodes(ws, cf, &state, strict_host_keys)?;
    Ok(cf
        .cluster
        .hosts
        .iter()
        .map(|h| match nodes.iter().find(|n| n.internal_ip() == Some(h.ip.to_string().as_str())) {
            Some(n) if n.ready() => finding(h.ip, "node", true, "Ready"),
            Some(n) => {
                finding(h.ip, "node", false, format!("not Ready: node `{}`: {}", n.metadata.name, n.ready_message()))
            }
            None => finding(h.ip, "node", false, "no node of the cluster has this address"),
        })
        .collect())
}

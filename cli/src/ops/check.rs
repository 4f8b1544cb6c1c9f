//! `sealer check`: before an install (`--pre`), what each host must offer — a root shell (sudo), the
//! ports Kubernetes and sealer bind free, no swap, a clock in step with the workstation, a hostname no
//! other host has; after it (`--post`), the cluster's health as its API says: every host a Ready node.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sealer_engine::clusterfile::Role;
use sealer_engine::Clusterfile;
use sealer_providers::cluster::Remote as _;

use super::{hosts, Workspace};

/// Ports a master binds: the API server, etcd (client, peer), the kubelet, the controller manager, the
/// scheduler; the first master also binds the cluster's registry's.
const MASTER_PORTS: [u16; 6] = [6443, 2379, 2380, 10250, 10257, 10259];
const NODE_PORTS: [u16; 1] = [10250];

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

/// The script a host runs for `--pre`: one `NAME|VALUE` line per fact (POSIX sh: dash is `/bin/sh`).
fn pre_script(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
    format!(
        "echo \"uid|$(id -u)\"; echo \"hostname|$(cat /proc/sys/kernel/hostname)\"; echo \"time|$(date +%s)\"; \
         echo \"swap|$(awk 'NR > 1' /proc/swaps | wc -l)\"; \
         for p in {ports}; do h=$(printf ':%04X' \"$p\"); \
         if awk -v h=\"$h\" '$4 == \"0A\" && substr($2, length($2) - 4) == h {{ f = 1 }} END {{ exit !f }}' \
         /proc/net/tcp /proc/net/tcp6 2>/dev/null; then echo \"taken|$p\"; fi; done",
        ports = ports.join(" ")
    )
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The checks before an install, on every host of the Clusterfile.
pub fn pre(ws: &Workspace, cf: &Clusterfile, strict_host_keys: bool) -> anyhow::Result<Vec<Finding>> {
    let state = super::recorded_state(ws, &cf.cluster.name)?;
    let remote = ws.remote(hosts::ssh_targets(ws, cf, &state, strict_host_keys)?, Duration::from_secs(60));
    let first = cf.cluster.first_master().map(|h| h.ip);
    let runs = ws.block_on(futures_util::future::join_all(cf.cluster.hosts.iter().map(|h| {
        let remote = remote.clone();
        let mut ports: Vec<u16> = if h.role == Role::Master { MASTER_PORTS.to_vec() } else { NODE_PORTS.to_vec() };
        if Some(h.ip) == first {
            ports.push(sealer_engine::kubeadm::REGISTRY_PORT);
        }
        async move {
            let asked = now();
            let out = remote.exec(h.ip, &pre_script(&ports), b"").await;
            (h.ip, asked, now(), out)
        }
    })))?;
    let mut findings = Vec::new();
    let mut hostnames: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (ip, asked, answered, out) in runs {
        let out = match out {
            Ok(out) if out.status == 0 => out,
            Ok(out) => {
                findings.push(finding(
                    ip,
                    "ssh",
                    false,
                    format!("the checks exited with {}: {}", out.status, out.stderr_text()),
                ));
                continue;
            }
            Err(e) => {
                findings.push(finding(ip, "ssh", false, e.to_string()));
                continue;
            }
        };
        findings.push(finding(ip, "ssh", true, "reached"));
        let facts: Vec<(String, String)> = out
            .stdout_text()
            .lines()
            .filter_map(|l| l.split_once('|').map(|(k, v)| (k.to_string(), v.trim().to_string())))
            .collect();
        let fact = |name: &str| facts.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
        let root = fact("uid") == "0";
        findings.push(finding(
            ip,
            "root",
            root,
            if root { "commands run as root" } else { "not root, and sudo did not make it so" },
        ));
        let taken: Vec<&str> = facts.iter().filter(|(k, _)| k == "taken").map(|(_, v)| v.as_str()).collect();
        findings.push(finding(
            ip,
            "ports",
            taken.is_empty(),
            if taken.is_empty() { "free".to_string() } else { format!("in use: {}", taken.join(", ")) },
        ));
        let swaps = fact("swap");
        findings.push(finding(
            ip,
            "swap",
            swaps == "0",
            if swaps == "0" {
                "off".to_string()
            } else {
                format!("{swaps} swap area(s) on: the kubelet refuses to start")
            },
        ));
        match fact("time").parse::<f64>() {
            // The host read its clock between asking and answering: it is in step when within that span
            // widened by the allowed skew (its `date` has whole seconds).
            Ok(t) => {
                let skew = if t + 1.0 < asked {
                    asked - (t + 1.0)
                } else if t > answered {
                    t - answered
                } else {
                    0.0
                };
                let ok = skew <= MAX_SKEW.as_secs_f64();
                findings.push(finding(ip, "clock", ok, format!("{skew:.0} s from the workstation's")));
            }
            Err(_) => findings.push(finding(ip, "clock", false, "the host did not say its time")),
        }
        hostnames.entry(fact("hostname").to_string()).or_default().push(ip);
    }
    for (name, ips) in hostnames.iter().filter(|(_, ips)| ips.len() > 1) {
        let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
        for ip in ips {
            // A HOSTNAME plugin gives the hosts names of their own at install: then this is no obstacle.
            findings.push(finding(
                *ip,
                "hostname",
                false,
                format!("`{name}` is also the hostname of {}", list.join(", ")),
            ));
        }
    }
    Ok(findings)
}

/// The checks after an install: every host of the Clusterfile is a node, Ready, as the cluster's API says
/// (asked through the first master).
pub fn post(ws: &Workspace, cf: &Clusterfile, strict_host_keys: bool) -> anyhow::Result<Vec<Finding>> {
    let state = super::recorded_state(ws, &cf.cluster.name)?;
    if state.resources.is_empty() {
        anyhow::bail!(
            "cluster `{}` is not in the state: `sealer check --pre` checks hosts before an install",
            cf.cluster.name
        );
    }
    let first = cf.cluster.first_master().map(|h| h.ip).context("the Clusterfile has no master")?;
    let remote = ws.remote(hosts::ssh_targets(ws, cf, &state, strict_host_keys)?, Duration::from_secs(60));
    let kubectl =
        format!("{}/rootfs/bin/kubectl get nodes -o json", sealer_providers::cluster::cluster_dir(&cf.cluster.name));
    let out = ws.block_on(remote.exec(first, &kubectl, b""))??;
    if out.status != 0 {
        anyhow::bail!("the cluster's API did not answer through {first}: {}", out.stderr_text());
    }
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`kubectl get nodes` on {first} printed no JSON"))?;
    let mut ready: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for node in nodes["items"].as_array().into_iter().flatten() {
        let addresses = node["status"]["addresses"].as_array().into_iter().flatten();
        let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let condition = node["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
        let is_ready = condition.is_some_and(|c| c["status"] == "True");
        let why = condition.and_then(|c| c["message"].as_str()).unwrap_or("no Ready condition").to_string();
        for a in addresses {
            if let Some(address) = a["address"].as_str() {
                ready.insert(address.to_string(), (is_ready, format!("node `{name}`: {why}")));
            }
        }
    }
    Ok(cf
        .cluster
        .hosts
        .iter()
        .map(|h| match ready.get(&h.ip.to_string()) {
            Some((true, _)) => finding(h.ip, "node", true, "Ready"),
            Some((false, why)) => finding(h.ip, "node", false, format!("not Ready: {why}")),
            None => finding(h.ip, "node", false, "no node of the cluster has this address"),
        })
        .collect())
}

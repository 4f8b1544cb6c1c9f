//! `cargo bench -p sealer-cli --bench plan_scale`: plan time and peak memory of `sealer plan --json` on
//! generated Clusterfiles of 100, 1,000 and 10,000 hosts (3 masters, the rest nodes, a LABEL and a TAINT
//! line for every host), and, when `terraform` is on PATH, Terraform planning 250 hosts × 4
//! `terraform_data` resources beside sealer planning the same 250 hosts, in the same run.
//!
//! Wall time and peak RSS come from GNU time (`/usr/bin/time -f '%e %M'`) around the real binary, so they
//! include reading the file, validating, compiling, planning and rendering. Each size runs 3 times; the
//! fastest run is reported (the machines are noisy), with the largest peak memory.
//! `SEALER_BENCH_SIZES=100,1000` picks the sizes; `SEALER_BENCH_TERRAFORM=0` skips Terraform.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 62_500, (i / 250) % 250, i % 250 + 1)
}

fn clusterfile(hosts: usize) -> String {
    let mut s = String::from(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: bench\nspec:\n  image: docker.io/sealerio/kubernetes:v1.22.15\n  \
         ssh:\n    passwd: bench-secret\n  hosts:\n    - ips: [",
    );
    let masters = hosts.min(3);
    s.push_str(&(0..masters).map(ip).collect::<Vec<_>>().join(", "));
    s.push_str("]\n      roles: [master]\n");
    if hosts > masters {
        s.push_str("    - ips:\n");
        for i in masters..hosts {
            let _ = writeln!(s, "        - {}", ip(i));
        }
        s.push_str("      roles: [node]\n");
    }
    s.push_str("---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: labels\nspec:\n  type: LABEL\n  action: PostInstall\n  data: |\n");
    for i in 0..hosts {
        let _ = writeln!(s, "    {} zone=z{},disk=ssd", ip(i), i % 3);
    }
    s.push_str("---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: taints\nspec:\n  type: TAINT\n  action: PostInstall\n  data: |\n");
    for i in 0..hosts {
        let _ = writeln!(s, "    {} dedicated=t{}:NoSchedule", ip(i), i % 2);
    }
    s
}

fn terraform_config(hosts: usize) -> String {
    format!(
        r#"locals {{ hosts = {{ for i in range({hosts}) : "10.${{100 + floor(i / 62500)}}.${{floor(i / 250) % 250}}.${{i % 250 + 1}}" => i }} }}
resource "terraform_data" "host" {{
  for_each = local.hosts
  input    = {{ ip = each.key, role = each.value < 3 ? "master" : "node" }}
}}
resource "terraform_data" "hostname" {{
  for_each = local.hosts
  input    = {{ name = "node-${{each.value}}", host = terraform_data.host[each.key].id }}
}}
resource "terraform_data" "label" {{
  for_each = local.hosts
  input    = {{ zone = "z${{each.value % 3}}", disk = "ssd", after = terraform_data.hostname[each.key].id }}
}}
resource "terraform_data" "taint" {{
  for_each = local.hosts
  input    = {{ taint = "dedicated=t${{each.value % 2}}:NoSchedule", after = terraform_data.hostname[each.key].id }}
}}
"#
    )
}

/// Runs `cmd` under GNU time; returns (wall seconds, peak RSS in MiB). Wall time is taken here, since
/// GNU time only has 10 ms resolution.
fn measure(dir: &Path, program: &str, args: &[&str]) -> Option<(f64, f64)> {
    let started = std::time::Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %M")
        .arg(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && out.status.code() != Some(2) {
        eprintln!("{program} failed: {stderr}");
        return None;
    }
    let last = stderr.lines().last()?;
    let mut parts = last.split_whitespace();
    let _gnu_seconds = parts.next()?;
    let kib: f64 = parts.next()?.parse().ok()?;
    Some((started.elapsed().as_secs_f64(), kib / 1024.0))
}

fn best_of(runs: usize, mut f: impl FnMut() -> Option<(f64, f64)>) -> Option<(f64, f64)> {
    let results: Vec<(f64, f64)> = (0..runs).filter_map(|_| f()).collect();
    let time = results.iter().map(|r| r.0).reduce(f64::min)?;
    let mem = results.iter().map(|r| r.1).reduce(f64::max)?;
    Some((time, mem))
}

fn sealer_plan(dir: &Path, hosts: usize) -> Option<(f64, f64)> {
    let file = dir.join(format!("Clusterfile-{hosts}"));
    std::fs::write(&file, clusterfile(hosts)).ok()?;
    let file = file.to_string_lossy().into_owned();
    let state = dir.join("no-state.db").to_string_lossy().into_owned();
    best_of(3, || {
        measure(
            dir,
            env!("CARGO_BIN_EXE_sealer"),
            &["--state", &state, "plan", "-f", &file, "--json", "--refresh=false"],
        )
    })
}

fn main() {
    let Ok(dir) =
        std::env::temp_dir().join(format!("sealer-bench-{}", std::process::id())).canonicalize().or_else(|_| {
            let d = std::env::temp_dir().join(format!("sealer-bench-{}", std::process::id()));
            std::fs::create_dir_all(&d).map(|()| d)
        })
    else {
        eprintln!("cannot create a temporary directory");
        return;
    };
    let sizes: Vec<usize> = std::env::var("SEALER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    println!("sealer plan --json (parse, validate, compile, plan, render), best of 3");
    println!("{:>8} {:>10} {:>12} {:>14}", "hosts", "seconds", "peak MiB", "µs per host");
    for &hosts in &sizes {
        match sealer_plan(&dir, hosts) {
            Some((secs, mib)) => {
                println!("{hosts:>8} {secs:>10.3} {mib:>12.1} {:>14.0}", secs * 1e6 / hosts as f64)
            }
            None => println!("{hosts:>8} failed"),
        }
    }
    let terraform_wanted = std::env::var("SEALER_BENCH_TERRAFORM").map_or(true, |v| v != "0");
    let has_terraform =
        Command::new("terraform").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if terraform_wanted && has_terraform {
        let hosts = 250;
        let tf = dir.join("terraform");
        let ready = std::fs::create_dir_all(&tf).is_ok()
            && std::fs::write(tf.join("main.tf"), terraform_config(hosts)).is_ok()
            && Command::new("terraform")
                .args(["init", "-input=false"])
                .current_dir(&tf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if ready {
            println!("\nside by side, {hosts} hosts (Terraform: 4 terraform_data per host; sealer: the Clusterfile above), best of 1");
            let terraform = measure(&tf, "terraform", &["plan", "-refresh=false", "-input=false", "-out=tfplan"]);
            let sealer = sealer_plan(&dir, hosts);
            if let (Some((tt, tm)), Some((st, sm))) = (terraform, sealer) {
                println!("{:>10} {:>10} {:>12}", "", "seconds", "peak MiB");
                println!("{:>10} {tt:>10.3} {tm:>12.1}", "terraform");
                println!("{:>10} {st:>10.3} {sm:>12.1}", "sealer");
                println!("ratio: sealer is {:.0}x faster, uses {:.0}x less memory", tt / st, tm / sm);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

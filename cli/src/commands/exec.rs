//! `sealer exec`: prints each host's output as it finishes, every line prefixed with the host (stdout to
//! stdout, stderr to stderr), then a summary; exits with the worst host's status.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use sealer_cli::ops;
use sealer_cli::ops::exec::{ExecRequest, HostRun, Selection};
use sealer_engine::clusterfile::Role;

use crate::args::{ExecArgs, RoleArg};
use crate::{Context, Outcome};

/// Exit 255 when sealer's own part failed (the Clusterfile, the selection): what a host's command exits
/// with is never mistaken for it, as with ssh.
pub fn run(ctx: &Context, args: ExecArgs) -> anyhow::Result<Outcome> {
    exec(ctx, args).or_else(|e| {
        eprintln!("error: {e:#}");
        Ok(Outcome::Exit(u8::MAX))
    })
}

fn exec(ctx: &Context, args: ExecArgs) -> anyhow::Result<Outcome> {
    let path = match &args.cluster {
        Some(name) => ops::run::clusterfile_path(&ctx.ws, name)?,
        None => args.file.clone(),
    };
    let cf = super::load_clusterfile(&path)?;
    let labels = args
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("invalid --label `{l}`: expected KEY=VALUE"),
        })
        .collect::<anyhow::Result<_>>()?;
    let roles =
        args.roles.iter().map(|r| if *r == RoleArg::Master { Role::Master } else { Role::Node }).collect::<Vec<_>>();
    let req = ExecRequest {
        selection: Selection { roles, labels, ips: args.ips.clone() },
        command: args.command.join(" "),
        parallelism: usize::from(args.parallelism),
        timeout: Duration::from_secs(args.timeout),
        strict_host_keys: args.strict_host_keys,
    };
    let mut write_error = None;
    let runs = ops::exec::exec(&ctx.ws, &cf, &req, |run| {
        if let Err(e) = print_host(run) {
            write_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("cannot write the output");
    }
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.status() != 0)
        .map(|r| match &r.outcome {
            Ok(out) => format!("{} (exit {})", r.ip, out.status),
            Err(_) => format!("{} (did not run)", r.ip),
        })
        .collect();
    if failed.is_empty() {
        eprintln!("exec: {} host(s), all succeeded", runs.len());
    } else {
        eprintln!("exec: {} host(s), {} failed: {}", runs.len(), failed.len(), failed.join(", "));
    }
    let worst = runs.iter().map(HostRun::status).max().unwrap_or(0);
    Ok(if worst == 0 { Outcome::Ok } else { Outcome::Exit(u8::try_from(worst).unwrap_or(u8::MAX)) })
}

/// One host's lines, each prefixed with the host, written whole so hosts' lines never interleave.
fn print_host(run: &HostRun) -> std::io::Result<()> {
    let prefix = |text: &[u8]| -> String {
        String::from_utf8_lossy(text).lines().map(|line| format!("{} | {line}\n", run.ip)).collect()
    };
    match &run.outcome {
        Ok(out) => {
            std::io::stdout().lock().write_all(prefix(&out.stdout).as_bytes())?;
            let mut err = prefix(&out.stderr);
            if out.status != 0 {
                err += &format!("{} ({}): exit {}\n", run.ip, run.role.as_str(), out.status);
            }
            std::io::stderr().lock().write_all(err.as_bytes())
        }
        Err(e) => writeln!(std::io::stderr().lock(), "{} ({}): did not run: {e}", run.ip, run.role.as_str()),
    }
}

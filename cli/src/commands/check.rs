//! `sealer check`: a table of every check on every host; exits 1 when one failed.

use std::io::Write as _;

use anyhow::Context as _;
use sealer_cli::ops;

use crate::args::CheckArgs;
use crate::{Context, Outcome};

pub fn run(ctx: &Context, args: CheckArgs) -> anyhow::Result<Outcome> {
    let cf = super::load_clusterfile(&args.file)?;
    let installed = !ops::recorded_state(&ctx.ws, &cf.cluster.name)?.resources.is_empty();
    let post = args.post || (!args.pre && installed);
    let findings = if post {
        ops::check::post(&ctx.ws, &cf, args.strict_host_keys)?
    } else {
        ops::check::pre(&ctx.ws, &cf, args.strict_host_keys)?
    };
    let mut out = String::new();
    let width = findings.iter().map(|f| f.ip.to_string().len()).max().unwrap_or(0);
    for f in &findings {
        let verdict = if f.passed { "ok  " } else { "FAIL" };
        out += &format!("{verdict} {:<width$}  {:<8}  {}\n", f.ip.to_string(), f.check, f.detail);
    }
    std::io::stdout().lock().write_all(out.as_bytes()).context("cannot write the checks")?;
    let failed = findings.iter().filter(|f| !f.passed).count();
    let what = if post { "after the install" } else { "before the install" };
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks {what} failed", findings.len());
    }
    println!("All {} checks {what} passed.", findings.len());
    Ok(Outcome::Ok)
}

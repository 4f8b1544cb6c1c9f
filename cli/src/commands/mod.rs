//! One file per command group: each parses its arguments into the inputs of an operation (`ops`), calls
//! it, and renders what it returns.

pub mod apply;
pub mod check;
pub mod exec;
pub mod graph;
pub mod image;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod state;

use std::path::Path;

use anyhow::{bail, Context as _};
use sealer_engine::{Address, Clusterfile, Diagnostic, Diagnostics};

/// `--target` values as addresses.
pub fn parse_targets(targets: &[String]) -> anyhow::Result<Vec<Address>> {
    targets.iter().map(|t| t.parse::<Address>().map_err(|e| anyhow::anyhow!("invalid --target: {e}"))).collect()
}

/// Reads and validates a Clusterfile, printing warnings; every error is printed before failing.
pub fn load_clusterfile(path: &Path) -> anyhow::Result<Clusterfile> {
    let (cf, warnings) = read_clusterfile(path)?;
    print_warnings(&warnings);
    Ok(cf)
}

/// Reads and validates a Clusterfile, returning its warnings; every error is printed before failing.
pub fn read_clusterfile(path: &Path) -> anyhow::Result<(Clusterfile, Vec<Diagnostic>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the Clusterfile `{}`", path.display()))?;
    match sealer_engine::parse(&path.display().to_string(), &text) {
        Ok(parsed) => Ok((parsed.clusterfile, parsed.warnings.0)),
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            bail!("`{}` is not a valid Clusterfile ({} error(s) above)", path.display(), diagnostics.errors().count())
        }
    }
}

fn print_diagnostics(diagnostics: &Diagnostics) {
    for d in &diagnostics.0 {
        eprintln!("{d}");
    }
}

/// Warnings go to stderr, above the plan.
fn print_warnings(warnings: &[Diagnostic]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

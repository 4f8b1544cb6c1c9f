use std::io::Write;

use anyhow::Context as _;
use sealer_cli::ops;

use crate::args::PlanArgs;
use crate::{render, Context, Outcome};

pub fn run(ctx: &Context, args: PlanArgs) -> anyhow::Result<Outcome> {
    let targets = super::parse_targets(&args.targets)?;
    let (cf, mut warnings) = super::read_clusterfile(&args.file)?;
    let request = ops::plan::PlanRequest {
        targets,
        destroy: args.destroy,
        refresh: args.refresh,
        refresh_only: args.refresh_only,
        max_unavailable: usize::from(args.max_unavailable),
    };
    let planned = ops::plan::plan(&ctx.ws, &cf, &request)?;
    let plan = planned.plan;
    warnings.extend(planned.warnings);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        render::json::write_plan(&mut out, &plan, &warnings).context("cannot write the plan")?;
    } else {
        super::print_warnings(&warnings);
        out.write_all(render::human::plan(&plan, ctx.color).as_bytes()).context("cannot write the plan")?;
    }
    if let Some(path) = &args.out {
        sealer_state::write_plan_file(path, &plan)?;
        if !args.json {
            writeln!(
                out,
                "\nSaved the plan to: {}\nTo apply it, run: sealer apply {}",
                path.display(),
                path.display()
            )?;
        }
    }
    out.flush().context("cannot write the plan")?;
    Ok(if args.detailed_exitcode && plan.has_changes() { Outcome::Changes } else { Outcome::Ok })
}

use std::io::Write;

use anyhow::Context as _;
use sealer_engine::{PlanOptions, State};

use crate::args::PlanArgs;
use crate::{render, Context, Outcome};

pub fn run(ctx: &Context, args: PlanArgs) -> anyhow::Result<Outcome> {
    let targets = super::parse_targets(&args.targets)?;
    let cf = super::load_clusterfile(&args.file)?;
    let graph = sealer_engine::compile(&cf, &super::image_kubeadm(&cf)?)?;
    let state = match ctx.state.open_read_only()? {
        Some(store) => store.load(&cf.cluster.name)?,
        None => None,
    }
    .unwrap_or_else(|| State::empty(&cf.cluster.name));
    let mut state = state;
    let recorded = state.clone();
    if args.refresh || args.refresh_only {
        super::refresh(&cf, &mut state, false)?;
    }
    let plan = if args.refresh_only {
        sealer_engine::refresh_only_plan(&recorded, &state)
    } else {
        sealer_engine::plan(&graph, &state, &PlanOptions { targets, destroy: args.destroy })?
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        render::json::write_plan(&mut out, &plan).context("cannot write the plan")?;
    } else {
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

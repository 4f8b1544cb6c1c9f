use sealer_cli::ops;

use crate::args::GraphArgs;
use crate::{Context, Outcome};

pub fn run(ctx: &Context, args: GraphArgs) -> anyhow::Result<Outcome> {
    let cf = super::load_clusterfile(&args.file)?;
    let ops::plan::Compiled { graph, warnings, .. } = ops::plan::compile(&ctx.ws, &cf, &Default::default())?;
    super::print_warnings(&warnings);
    print!("{}", graph.to_dot());
    Ok(Outcome::Ok)
}

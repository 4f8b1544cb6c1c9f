use sealer_cli::ops;

use crate::args::GraphArgs;
use crate::{Context, Outcome};

pub fn run(ctx: &Context, args: GraphArgs) -> anyhow::Result<Outcome> {
    let cf = super::load_clusterfile(&args.file)?;
    let (image, warning) = ops::images::facts(&ctx.ws, &cf)?;
    super::print_warnings(&warning.into_iter().collect::<Vec<_>>());
    print!("{}", sealer_engine::compile(&cf, &image)?.to_dot());
    Ok(Outcome::Ok)
}

use crate::args::GraphArgs;
use crate::Outcome;

pub fn run(args: GraphArgs) -> anyhow::Result<Outcome> {
    let cf = super::load_clusterfile(&args.file)?;
    let graph = sealer_engine::compile(&cf, &super::image_kubeadm(&cf)?)?;
    print!("{}", graph.to_dot());
    Ok(Outcome::Ok)
}

//! `sealer run IMAGE`: writes the Clusterfile the flags mean, then applies it exactly as `apply -f` does.

use sealer_cli::ops;
use sealer_cli::ops::run::RunRequest;

use crate::args::{ApplyArgs, RunArgs};
use crate::render::progress::TransferBar;
use crate::{Context, Outcome};

pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<Outcome> {
    let request = RunRequest {
        image: args.image.clone(),
        masters: args.masters,
        nodes: args.nodes,
        user: args.user,
        password: args.passwd,
        private_key: args.pk,
        key_passphrase: args.pk_passwd,
        port: args.port,
        env: args.env,
        cmd_args: args.cmd_args,
        cluster_name: args.cluster_name,
    };
    // The flags first: their mistakes are found without the network, before any pull.
    let target = ops::run::target(&ctx.ws, &request)?;
    if ctx.ws.images().get(&request.image).is_err() {
        println!("image `{}` is not in the local store: pulling it", request.image);
    }
    if let Some(pulled) = ops::images::ensure_local(&ctx.ws, &request.image, TransferBar::for_stdout().as_ref())? {
        println!("pulled {} {}", pulled.config.name, pulled.manifest_digest);
    }
    let prepared = ops::run::prepare(&ctx.ws, &request, target)?;
    let serial = ops::state::serial(&ctx.ws, &prepared.cluster)?;
    prepared.write()?;
    if prepared.application {
        let what = if prepared.joined { "joins" } else { "is already in" };
        println!("Application `{}` {what} `spec.apps` of cluster `{}`.", request.image, prepared.cluster);
    }
    println!("Clusterfile: {}", prepared.path.display());
    let applied = super::apply::run(
        ctx,
        ApplyArgs {
            planfile: None,
            file: prepared.path.clone(),
            auto_approve: args.auto_approve,
            parallelism: args.parallelism,
            targets: Vec::new(),
            strict_host_keys: false,
            refresh: true,
            no_progress: args.no_progress,
            json: false,
            verbose: false,
            force: false,
            refresh_only: false,
            restore_hostname: false,
            max_unavailable: 1,
        },
        false,
    );
    // Nothing applied (cancelled, refused, a plan error): the Clusterfile is put back as it was.
    if applied.is_err() && ops::state::serial(&ctx.ws, &prepared.cluster)? == serial {
        prepared.restore()?;
    }
    applied
}

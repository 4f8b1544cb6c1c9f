//! `sealer run IMAGE`: writes the Clusterfile the flags mean, then applies it exactly as `apply -f` does.

use sealer_cli::ops;
use sealer_cli::ops::run::RunRequest;

use crate::args::{ApplyArgs, CertArgs, DeleteArgs, GenArgs, HostFlags, JoinArgs, RunArgs, VerbApply};
use crate::render::progress::TransferBar;
use crate::{Context, Outcome};

fn request(image: String, hosts: HostFlags, env: Vec<String>, cmd_args: Vec<String>) -> RunRequest {
    RunRequest {
        image,
        masters: hosts.masters,
        nodes: hosts.nodes,
        user: hosts.user,
        password: hosts.passwd,
        private_key: hosts.pk,
        key_passphrase: hosts.pk_passwd,
        port: hosts.port,
        env,
        cmd_args,
        cluster_name: hosts.cluster_name,
    }
}

fn ensure_image(ctx: &Context, image: &str) -> anyhow::Result<()> {
    if ctx.ws.images().get(image).is_err() {
        println!("image `{image}` is not in the local store: pulling it");
    }
    if let Some(pulled) = ops::images::ensure_local(&ctx.ws, image, TransferBar::for_stdout().as_ref())? {
        println!("pulled {} {}", pulled.config.name, pulled.manifest_digest);
    }
    Ok(())
}

pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<Outcome> {
    let request = request(args.image, args.hosts, args.env, args.cmd_args);
    // The flags first: their mistakes are found without the network, before any pull.
    let target = ops::run::target(&ctx.ws, &request)?;
    ensure_image(ctx, &request.image)?;
    let prepared = ops::run::prepare(&ctx.ws, &request, target)?;
    if prepared.application {
        let what = if prepared.joined { "joins" } else { "is already in" };
        println!("Application `{}` {what} `spec.apps` of cluster `{}`.", request.image, prepared.cluster);
    }
    let apply = apply_args(prepared.path.clone(), &args.apply);
    apply_prepared(ctx, &prepared, apply)
}

/// `sealer join`: `run` of the image the cluster runs, with the hosts to add.
pub fn join(ctx: &Context, mut args: JoinArgs) -> anyhow::Result<Outcome> {
    let given = |list: &Option<String>| list.as_deref().is_some_and(|l| !l.trim().is_empty());
    if !given(&args.hosts.masters) && !given(&args.hosts.nodes) {
        anyhow::bail!("`sealer join` needs the hosts to add: --masters (-m), --nodes (-n)");
    }
    let probe = RunRequest { cluster_name: args.hosts.cluster_name.clone(), ..Default::default() };
    let cluster = ops::run::cluster_name(&ctx.ws, &probe)?;
    let image = ops::run::kept_image(&ctx.ws, &cluster)?;
    args.hosts.cluster_name = Some(cluster);
    let JoinArgs { hosts, apply } = args;
    run(ctx, RunArgs { image, hosts, env: Vec::new(), cmd_args: Vec::new(), apply })
}

/// `sealer delete`: the kept Clusterfile without the hosts, applied; `--all` destroys the cluster.
pub fn delete(ctx: &Context, args: DeleteArgs) -> anyhow::Result<Outcome> {
    let probe = RunRequest { cluster_name: args.cluster_name.clone(), ..Default::default() };
    let cluster = ops::run::cluster_name(&ctx.ws, &probe)?;
    let path = ops::run::clusterfile_path(&ctx.ws, &cluster)?;
    if args.all {
        if ops::recorded_state(&ctx.ws, &cluster)?.resources.is_empty() {
            anyhow::bail!("there is no cluster `{cluster}` in the state");
        }
        if !path.exists() {
            anyhow::bail!(
                "cluster `{cluster}` was not made by `sealer run`: `sealer destroy -f YOUR_CLUSTERFILE` tears it down"
            );
        }
        let destroy = ApplyArgs { refresh: false, ..apply_args(path, &args.apply) };
        return super::apply::run(ctx, destroy, true);
    }
    let prepared = ops::run::prepare_delete(&ctx.ws, &cluster, args.masters.as_deref(), args.nodes.as_deref())?;
    // --force as apply's: removing a host that no longer answers, or the first master, is dangerous.
    let apply = ApplyArgs { force: args.force, ..apply_args(path, &args.apply) };
    apply_prepared(ctx, &prepared, apply)
}

/// `sealer cert --alt-names`: the names join the kept Clusterfile's `apiServer.certSANs`; the apply
/// reconfigures every master's control plane, whose serving certificate is made again with them.
pub fn cert(ctx: &Context, args: CertArgs) -> anyhow::Result<Outcome> {
    let probe = RunRequest { cluster_name: args.cluster_name.clone(), ..Default::default() };
    let cluster = ops::run::cluster_name(&ctx.ws, &probe)?;
    let path = ops::run::clusterfile_path(&ctx.ws, &cluster)?;
    let prepared = ops::run::prepare_cert(&ctx.ws, &cluster, &args.alt_names)?;
    let apply = VerbApply { auto_approve: args.auto_approve, parallelism: 10, no_progress: args.no_progress };
    apply_prepared(ctx, &prepared, apply_args(path, &apply))
}

/// `sealer gen`: the running cluster read, its Clusterfile written and its members imported, then the
/// rest applied. When that apply applies nothing (declined, or failed before its first change), the
/// import is taken back, so that `gen` may be run again.
pub fn gen(ctx: &Context, args: GenArgs) -> anyhow::Result<Outcome> {
    let request = request(args.image, args.hosts, Vec::new(), Vec::new());
    // The flags first, as `run`'s.
    ops::run::target(&ctx.ws, &request)?;
    ensure_image(ctx, &request.image)?;
    let generated = ops::gen::generate(&ctx.ws, &request)?;
    let path = generated.prepared.path.clone();
    println!("Clusterfile: {}", path.display());
    let imported: Vec<String> = generated.imported.iter().map(|r| r.address.to_string()).collect();
    println!("Imported from the running cluster (nothing on its hosts changed): {}", imported.join(", "));
    let applied = super::apply::run(ctx, apply_args(path, &args.apply), false);
    if applied.is_err() && ops::state::serial(&ctx.ws, &generated.prepared.cluster)? == generated.serial {
        ops::gen::undo(&ctx.ws, &generated)?;
        println!("Nothing was applied: the import is taken back (state and Clusterfile as before `sealer gen`).");
    }
    applied
}

fn apply_args(file: std::path::PathBuf, verb: &VerbApply) -> ApplyArgs {
    let VerbApply { auto_approve, parallelism, no_progress } = *verb;
    ApplyArgs {
        planfile: None,
        file,
        auto_approve,
        parallelism,
        targets: Vec::new(),
        strict_host_keys: false,
        refresh: true,
        no_progress,
        json: false,
        verbose: false,
        force: false,
        refresh_only: false,
        restore_hostname: false,
        max_unavailable: 1,
    }
}

/// Writes the Clusterfile `prepared` holds and applies it with `apply` (its file: that Clusterfile); when
/// nothing was applied (cancelled, refused, a plan error), the Clusterfile is put back as it was.
fn apply_prepared(ctx: &Context, prepared: &ops::run::Prepared, apply: ApplyArgs) -> anyhow::Result<Outcome> {
    let serial = ops::state::serial(&ctx.ws, &prepared.cluster)?;
    prepared.write()?;
    println!("Clusterfile: {}", prepared.path.display());
    let applied = super::apply::run(ctx, ApplyArgs { file: prepared.path.clone(), ..apply }, false);
    if applied.is_err() && ops::state::serial(&ctx.ws, &prepared.cluster)? == serial {
        prepared.restore()?;
    }
    applied
}

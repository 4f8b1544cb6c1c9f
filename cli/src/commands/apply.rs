use std::io::BufRead;

use anyhow::{bail, Context as _};
use sealer_cli::ops;
use sealer_cli::ops::apply::{ApplyRequest, Progress, Session};
use sealer_engine::{Action, CancelFlag};

use crate::args::ApplyArgs;
use crate::render::progress::{self, TransferBar};
use crate::{render, Context, Outcome};

/// Applies the Clusterfile (or a saved plan); with `destroy`, deletes everything the state holds.
pub fn run(ctx: &Context, args: ApplyArgs, destroy: bool) -> anyhow::Result<Outcome> {
    let targets = super::parse_targets(&args.targets)?;
    let (cf, parse_warnings) = super::read_clusterfile(&args.file)?;
    if args.json && !args.auto_approve && args.planfile.is_none() && !args.refresh_only {
        bail!("--json needs --auto-approve (or a saved plan): there is no one to answer the confirmation");
    }
    let request = ApplyRequest {
        targets,
        destroy,
        refresh: args.refresh,
        refresh_only: args.refresh_only,
        planfile: args.planfile.clone(),
        strict_host_keys: args.strict_host_keys,
        force: args.force,
        restore_hostname: args.restore_hostname,
        parallelism: args.parallelism,
        max_unavailable: usize::from(args.max_unavailable),
    };
    if !destroy && ctx.ws.images().get(&cf.cluster.image).is_err() {
        println!("image `{}` is not in the local store: pulling it", cf.cluster.image);
    }
    let mut session = Session::begin(&ctx.ws, &cf, request, TransferBar::for_stdout().as_ref())?;
    super::print_warnings(&parse_warnings);
    super::print_warnings(&session.warnings);
    if let Some(pulled) = &session.pulled {
        println!(
            "pulled the cluster image {} {} (rootfs {})",
            pulled.config.name, pulled.manifest_digest, pulled.config.digest
        );
    }
    let outcome =
        if args.refresh_only { refresh_only(ctx, &args, &mut session) } else { apply(ctx, &args, &mut session) };
    session.finish()?;
    outcome
}

fn apply(ctx: &Context, args: &ApplyArgs, session: &mut Session<'_>) -> anyhow::Result<Outcome> {
    let plan = session.plan().clone();
    if !plan.has_changes() {
        report_resealed(args, session.reseal()?);
        if !args.json {
            println!("No changes. Cluster `{}` matches the Clusterfile.", plan.cluster);
        }
        return Ok(Outcome::Ok);
    }
    if args.planfile.is_none() && !args.json {
        print!("{}", render::human::plan(&plan, ctx.color, args.verbose));
        if !args.auto_approve && !confirm()? {
            bail!("apply cancelled");
        }
    }
    // Only after the confirmation: a cancelled apply writes nothing.
    report_resealed(args, session.reseal()?);
    let total = plan.changes.iter().filter(|c| c.action != Action::NoOp).count();
    let progress = if args.json {
        Progress::of(progress::JsonLines)
    } else if !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        Progress::of(progress::Bars::new(total))
    } else {
        Progress::of(progress::Lines)
    };
    let applied = session.execute(progress, cancel_on_ctrl_c())?;
    if let Some(e) = &applied.publish_error {
        eprintln!("warning: the copy of the state in the cluster was not updated: {e}");
    }
    for e in &applied.relay_errors {
        eprintln!("warning: the image relay on {e} (it stops by itself after two idle minutes)");
    }
    if !args.json {
        println!("\nLogs of every command: {}", applied.log_dir.display());
    }
    if applied.complete() {
        if !args.json {
            let s = plan.summary();
            println!(
                "Apply complete! Resources: {} added, {} changed, {} replaced, {} destroyed.",
                s.create, s.update, s.replace, s.delete
            );
        }
        return Ok(Outcome::Ok);
    }
    for (address, error) in applied.report.failed() {
        eprintln!("error: {address}: {error}");
    }
    if let Some(e) = &applied.record_error {
        eprintln!("error: the state could not be written: {e}");
    }
    bail!("apply incomplete: {}; run `sealer apply` again to finish", ops::apply::summary(&applied.report))
}

fn report_resealed(args: &ApplyArgs, resealed: usize) {
    if resealed > 0 && !args.json {
        println!("Recorded the changed ssh credentials of {resealed} host(s) (sealed).");
    }
}

/// `--refresh-only`: what the hosts hold, recorded in the state; nothing remote changes.
fn refresh_only(ctx: &Context, args: &ApplyArgs, session: &mut Session<'_>) -> anyhow::Result<Outcome> {
    let plan = session.plan().clone();
    if !plan.has_changes() {
        println!("No changes. The state matches what the hosts hold.");
        return Ok(Outcome::Ok);
    }
    print!("{}", render::human::plan(&plan, ctx.color, args.verbose));
    if !args.auto_approve && !confirm()? {
        bail!("refresh cancelled");
    }
    let (count, publish_error) = session.record_refresh()?;
    println!("Refresh complete: {count} resource(s) updated in the state.");
    if let Some(e) = publish_error {
        eprintln!("warning: the copy of the state in the cluster was not updated: {e}");
    }
    Ok(Outcome::Ok)
}

/// A flag that Ctrl-C sets: no new work starts, what runs finishes, then the state is saved.
fn cancel_on_ctrl_c() -> CancelFlag {
    let cancel = CancelFlag::default();
    let on_interrupt = cancel.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("interrupted: no new work starts; waiting for what runs, then saving the state");
            on_interrupt.cancel();
        }
    });
    cancel
}

fn confirm() -> anyhow::Result<bool> {
    println!("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("cannot read the answer")?;
    Ok(answer.trim() == "yes")
}

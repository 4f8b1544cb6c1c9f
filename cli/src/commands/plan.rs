use std::io::Write;

use anyhow::Context as _;
use sealer_cli::ops;

use crate::args::{CompletionArgs, PlanArgs, PlanFormat, ShowArgs, ValidateArgs};
use crate::render::progress::TransferBar;
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
    let format = if args.json { PlanFormat::Json } else { args.format };
    // Only the human plan shares stdout with a pull's progress: JSON and markdown are read by programs.
    let progress = if format == PlanFormat::Human { TransferBar::for_stdout() } else { TransferBar::quiet() };
    let planned = ops::plan::plan(&ctx.ws, &cf, &request, progress.as_ref())?;
    for pulled in &planned.pulled {
        eprintln!(
            "pulled the image {} {} (rootfs {})",
            pulled.config.name, pulled.manifest_digest, pulled.config.digest
        );
    }
    let plan = planned.plan;
    warnings.extend(planned.warnings);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        PlanFormat::Json => render::json::write_plan(&mut out, &plan, &warnings).context("cannot write the plan")?,
        PlanFormat::Markdown => {
            out.write_all(render::markdown::plan(&plan, &warnings).as_bytes()).context("cannot write the plan")?;
        }
        PlanFormat::Human => {
            super::print_warnings(&warnings);
            out.write_all(render::human::plan(&plan, ctx.color, args.verbose).as_bytes())
                .context("cannot write the plan")?;
        }
    }
    if let Some(path) = &args.out {
        ops::plan::save(&plan, path)?;
        if format == PlanFormat::Human {
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

/// `sealer validate`: the Clusterfile alone, every problem at once; no state, no hosts, no image.
pub fn validate(args: ValidateArgs) -> anyhow::Result<Outcome> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read the Clusterfile `{file}`"))?;
    let diagnostics = match sealer_engine::parse(&file, &text) {
        Ok(parsed) => parsed.warnings.0,
        Err(diagnostics) => diagnostics.0,
    };
    let errors = diagnostics.iter().filter(|d| d.severity == sealer_engine::Severity::Error).count();
    if args.json {
        render::json::write_validation(&mut std::io::stdout().lock(), &diagnostics)?;
    } else {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        if errors == 0 {
            println!("`{file}` is a valid Clusterfile ({} warning(s)).", diagnostics.len());
        }
    }
    if errors > 0 {
        // The diagnostics said everything; the exit status says it again for scripts.
        return Err(anyhow::anyhow!("`{file}` is not a valid Clusterfile ({errors} error(s))"));
    }
    Ok(Outcome::Ok)
}

/// `sealer show PLANFILE`: a saved plan, as `terraform show` prints one.
pub fn show(ctx: &Context, args: ShowArgs) -> anyhow::Result<Outcome> {
    let plan = ops::plan::read(&args.planfile)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        render::json::write_plan(&mut out, &plan, &[])?;
    } else {
        out.write_all(render::human::plan(&plan, ctx.color, args.verbose).as_bytes())?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// `sealer man`: the manual page, generated from the same definitions as `--help`, on stdout.
pub fn man() -> anyhow::Result<Outcome> {
    let command = <crate::args::Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(Outcome::Ok)
}

/// `sealer completion SHELL`: the completion script, on stdout.
pub fn completion(args: CompletionArgs) -> anyhow::Result<Outcome> {
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    clap_complete::generate(args.shell, &mut command, "sealer", &mut std::io::stdout());
    Ok(Outcome::Ok)
}

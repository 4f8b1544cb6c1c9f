//! `sealer`: the command line. Commands parse arguments, call the operations of `sealer_cli::ops`, and
//! render what they return.

mod args;
mod commands;
mod render;

use std::process::ExitCode;

use clap::Parser;
use sealer_cli::sealer_home;

use crate::args::{Cli, Command, StateCommand};

/// What a command asks the process to exit with, beside errors (which exit 1).
pub enum Outcome {
    Ok,
    /// `--detailed-exitcode` and the plan has changes.
    Changes,
    /// An exit code the command chose (`exec`: the worst host's).
    Exit(u8),
}

/// Options every command shares.
pub struct Context {
    pub ws: sealer_cli::ops::Workspace,
    pub color: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = !cli.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let state = sealer_state::StateLocation::parse(cli.state.as_deref().unwrap_or(".sealer/state.db"));
    let ctx = Context { ws: sealer_cli::ops::Workspace { state, home: sealer_home(), connections: None }, color };
    let result = match cli.command {
        Command::Run(a) => commands::run::run(&ctx, a),
        Command::Plan(a) => commands::plan::run(&ctx, a),
        Command::Validate(a) => commands::plan::validate(a),
        Command::Reconcile(a) => commands::reconcile::run(&ctx, a),
        Command::Show(a) => commands::plan::show(&ctx, a),
        Command::Completion(a) => commands::plan::completion(a),
        Command::Man => commands::plan::man(),
        Command::Apply(a) => commands::apply::run(&ctx, a, false),
        Command::Destroy(a) => commands::apply::run(
            &ctx,
            args::ApplyArgs {
                planfile: None,
                file: a.file,
                auto_approve: a.auto_approve,
                parallelism: a.parallelism,
                targets: Vec::new(),
                strict_host_keys: false,
                refresh: false,
                no_progress: a.no_progress,
                json: false,
                verbose: false,
                refresh_only: false,
                force: false,
                restore_hostname: a.restore_hostname,
                max_unavailable: 1,
            },
            true,
        ),
        Command::Build(a) => commands::image::build(&ctx, a),
        Command::Images(a) => commands::image::images(&ctx, a),
        Command::Push(a) => commands::image::push(&ctx, a),
        Command::Pull(a) => commands::image::pull(&ctx, a),
        Command::Tag(a) => commands::image::tag(&ctx, a),
        Command::Save(a) => commands::image::save(&ctx, a),
        Command::Load(a) => commands::image::load(&ctx, a),
        Command::Rmi(a) => commands::image::rmi(&ctx, a),
        Command::Inspect(a) => commands::image::inspect(&ctx, a),
        Command::Login(a) => commands::image::login(&ctx, a),
        Command::Logout(a) => commands::image::logout(&ctx, a),
        Command::Graph(a) => commands::graph::run(&ctx, a),
        Command::Exec(a) => commands::exec::run(&ctx, a),
        Command::Check(a) => commands::check::run(&ctx, a),
        Command::Join(a) => commands::run::join(&ctx, a),
        Command::Delete(a) => commands::run::delete(&ctx, a),
        Command::Cert(a) => commands::run::cert(&ctx, a),
        Command::Gen(a) => commands::run::gen(&ctx, a),
        Command::State(StateCommand::List(a)) => commands::state::list(&ctx, a),
        Command::State(StateCommand::Show(a)) => commands::state::show(&ctx, a),
        Command::State(StateCommand::Migrate(a)) => commands::state::migrate(&ctx, a),
        Command::State(StateCommand::Pull(a)) => commands::state::pull(&ctx, a),
        Command::ForceUnlock(a) => commands::state::force_unlock(&ctx, a),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

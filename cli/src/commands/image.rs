use std::collections::BTreeMap;

use anyhow::bail;

use crate::args::{
    BuildArgs, ImagesArgs, LoadArgs, LoginArgs, NameArg, RegistryArgs, RegistryHostArg, RmiArgs, SaveArgs, TagArgs,
};
use crate::render::progress::TransferBar;
use sealer_cli::ops;

use crate::{Context, Outcome};

pub fn build(ctx: &Context, args: BuildArgs) -> anyhow::Result<Outcome> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let Some((k, v)) = a.split_once('=') else { bail!("--build-arg `{a}` is not KEY=VALUE") };
        build_args.insert(k.to_string(), v.to_string());
    }
    if args.mode != "lite" {
        bail!("build mode `{}` is not supported: sealer builds `lite` images (-m lite), which carry every container image they name", args.mode);
    }
    let request = ops::images::BuildRequest {
        kubefile: args.file.clone().unwrap_or_else(|| args.context.join("Kubefile")),
        context: args.context.clone(),
        tag: args.tag.clone(),
        build_args,
        platforms: args.platforms.clone(),
        insecure: args.insecure,
        registry_mirrors: args.registry_mirrors.clone(),
    };
    let config = ops::images::build(&ctx.ws, &request, |line| println!("{line}"), TransferBar::for_stdout().as_ref())?;
    println!("built {} {}", config.name, config.digest);
    Ok(Outcome::Ok)
}

pub fn images(ctx: &Context, args: ImagesArgs) -> anyhow::Result<Outcome> {
    let images = ops::registry::list(&ctx.ws)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&images)?);
    } else {
        println!("{:<50} DIGEST", "NAME");
        for i in images {
            println!("{:<50} {}", i.name, i.digest);
        }
    }
    Ok(Outcome::Ok)
}

pub fn push(ctx: &Context, args: RegistryArgs) -> anyhow::Result<Outcome> {
    let pushed = ops::registry::push(&ctx.ws, &args.name, args.insecure, TransferBar::for_stdout().as_ref())?;
    println!(
        "sent {} bytes; {} of {} blob(s) ({} bytes) were in the registry already",
        pushed.bytes_sent, pushed.blobs_skipped, pushed.blobs, pushed.bytes_skipped
    );
    println!("pushed {} {}", args.name, pushed.manifest_digest);
    Ok(Outcome::Ok)
}

pub fn pull(ctx: &Context, args: RegistryArgs) -> anyhow::Result<Outcome> {
    let pulled = ops::images::pull(&ctx.ws, &args.name, args.insecure, TransferBar::for_stdout().as_ref())?;
    if pulled.resumed_bytes > 0 {
        println!("resumed an interrupted download: {} bytes were already here", pulled.resumed_bytes);
    }
    println!("pulled {} {} (rootfs {})", pulled.config.name, pulled.manifest_digest, pulled.config.digest);
    Ok(Outcome::Ok)
}

pub fn tag(ctx: &Context, args: TagArgs) -> anyhow::Result<Outcome> {
    ops::registry::tag(&ctx.ws, &args.source, &args.target)?;
    Ok(Outcome::Ok)
}

pub fn rmi(ctx: &Context, args: RmiArgs) -> anyhow::Result<Outcome> {
    ops::images::remove(&ctx.ws, &args.name, args.force)?;
    println!("removed {}", args.name);
    Ok(Outcome::Ok)
}

/// The image's configuration and, under `files`, every file of its rootfs (what COPY and RUN put there).
pub fn inspect(ctx: &Context, args: NameArg) -> anyhow::Result<Outcome> {
    let (config, files) = ops::registry::inspect(&ctx.ws, &args.name)?;
    let mut shown = serde_json::to_value(&config)?;
    shown["files"] = serde_json::json!(files);
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(Outcome::Ok)
}

pub fn login(ctx: &Context, args: LoginArgs) -> anyhow::Result<Outcome> {
    let mut password = String::new();
    match args.password {
        Some(given) => {
            eprintln!("WARNING! Using --passwd via the CLI is insecure. Use --password-stdin.");
            password = given;
        }
        None if args.password_stdin => {
            std::io::stdin().read_line(&mut password)?;
        }
        None => bail!("no password: give --password-stdin (and the password on standard input) or -p"),
    }
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    ops::registry::login(&ctx.ws, &args.registry, &args.username, password, args.insecure)?;
    println!("Login Succeeded (credentials stored for {})", args.registry);
    Ok(Outcome::Ok)
}

pub fn logout(ctx: &Context, args: RegistryHostArg) -> anyhow::Result<Outcome> {
    if ops::registry::logout(&ctx.ws, &args.registry)? {
        println!("Removed login credentials for {}", args.registry);
    } else {
        println!("Not logged in to {}", args.registry);
    }
    Ok(Outcome::Ok)
}

pub fn save(ctx: &Context, args: SaveArgs) -> anyhow::Result<Outcome> {
    let digest = ops::registry::save(&ctx.ws, &args.name, &args.output)?;
    println!("saved {} {digest} to {}", args.name, args.output.display());
    Ok(Outcome::Ok)
}

pub fn load(ctx: &Context, args: LoadArgs) -> anyhow::Result<Outcome> {
    for image in ops::registry::load(&ctx.ws, &args.input)? {
        println!("loaded {} {}", image.name, image.digest);
    }
    Ok(Outcome::Ok)
}

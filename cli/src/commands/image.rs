use std::collections::BTreeMap;

use anyhow::bail;
use sealer_providers::image::credentials::Credentials;
use sealer_providers::image::oci::{self, RegistryOptions};
use sealer_providers::image::store::ImageStore;

use crate::args::{
    BuildArgs, ImagesArgs, LoadArgs, LoginArgs, NameArg, RegistryArgs, RegistryHostArg, RmiArgs, SaveArgs, TagArgs,
};
use crate::render::progress::TransferBar;
use sealer_cli::ops;

use crate::{sealer_home, Context, Outcome};

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

pub fn images(args: ImagesArgs) -> anyhow::Result<Outcome> {
    let images = ImageStore::new(&sealer_home()).list()?;
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

fn registry_options(name: &str, insecure: bool) -> anyhow::Result<RegistryOptions> {
    let registry = oci::registry_of(name)?;
    Ok(RegistryOptions { insecure, credentials: Credentials::new(&sealer_home()).get(&registry)? })
}

pub fn push(args: RegistryArgs) -> anyhow::Result<Outcome> {
    let store = ImageStore::new(&sealer_home());
    let opts = registry_options(&args.name, args.insecure)?;
    let pushed = ops::runtime()?.block_on(oci::push(&store, &args.name, &opts, TransferBar::for_stdout().as_ref()))?;
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

pub fn tag(args: TagArgs) -> anyhow::Result<Outcome> {
    ImageStore::new(&sealer_home()).tag(&args.source, &args.target)?;
    Ok(Outcome::Ok)
}

pub fn rmi(ctx: &Context, args: RmiArgs) -> anyhow::Result<Outcome> {
    ops::images::remove(&ctx.ws, &args.name, args.force)?;
    println!("removed {}", args.name);
    Ok(Outcome::Ok)
}

/// The image's configuration and, under `files`, every file of its rootfs (what COPY and RUN put there).
pub fn inspect(args: NameArg) -> anyhow::Result<Outcome> {
    let image = ImageStore::new(&sealer_home()).get(&args.name)?;
    let mut shown = serde_json::to_value(&image.config)?;
    let files = sealer_providers::image::store::changed_paths("", &image.manifest);
    shown["files"] = serde_json::json!(files);
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(Outcome::Ok)
}

pub fn login(args: LoginArgs) -> anyhow::Result<Outcome> {
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
    // Checked against the registry first: wrong credentials are refused now, not at a later push or pull,
    // and nothing is stored.
    let plain_http = args.insecure || oci::is_local(&args.registry);
    ops::runtime()?.block_on(sealer_providers::image::login::verify(
        &args.registry,
        &args.username,
        password,
        plain_http,
    ))?;
    Credentials::new(&sealer_home()).login(&args.registry, &args.username, password)?;
    println!("Login Succeeded (credentials stored for {})", args.registry);
    Ok(Outcome::Ok)
}

pub fn logout(args: RegistryHostArg) -> anyhow::Result<Outcome> {
    if Credentials::new(&sealer_home()).logout(&args.registry)? {
        println!("Removed login credentials for {}", args.registry);
    } else {
        println!("Not logged in to {}", args.registry);
    }
    Ok(Outcome::Ok)
}

pub fn save(args: SaveArgs) -> anyhow::Result<Outcome> {
    let digest = oci::save(&ImageStore::new(&sealer_home()), &args.name, &args.output)?;
    println!("saved {} {digest} to {}", args.name, args.output.display());
    Ok(Outcome::Ok)
}

pub fn load(args: LoadArgs) -> anyhow::Result<Outcome> {
    for image in oci::load(&ImageStore::new(&sealer_home()), &args.input)? {
        println!("loaded {} {}", image.name, image.digest);
    }
    Ok(Outcome::Ok)
}

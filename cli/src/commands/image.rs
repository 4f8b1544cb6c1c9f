use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use sealer_engine::{Kind, Value};
use sealer_providers::image::credentials::Credentials;
use sealer_providers::image::lite;
use sealer_providers::image::oci::{self, RegistryOptions};
use sealer_providers::image::store::{ImageError, ImageStore};

use crate::args::{
    BuildArgs, ImagesArgs, LoadArgs, LoginArgs, NameArg, RegistryArgs, RegistryHostArg, RmiArgs, SaveArgs, TagArgs,
};
use crate::render::progress::TransferBar;
use crate::{sealer_home, Context, Outcome};

pub fn build(args: BuildArgs) -> anyhow::Result<Outcome> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let Some((k, v)) = a.split_once('=') else { bail!("--build-arg `{a}` is not KEY=VALUE") };
        build_args.insert(k.to_string(), v.to_string());
    }
    let kubefile = args.file.clone().unwrap_or_else(|| args.context.join("Kubefile"));
    let store = ImageStore::new(&sealer_home());
    let (work, mut config) =
        store.prepare(&kubefile, &args.context, &args.tag, &build_args, |line| println!("{line}"))?;
    let rootfs = work.join("rootfs");
    let (images, notes) = lite::collect(&rootfs);
    for note in notes {
        println!("{note}");
    }
    if !images.is_empty() {
        println!("lite build: {} container image(s) go into the image's registry", images.len());
        let credentials = Credentials::new(&sealer_home());
        let pulled = super::runtime()?.block_on(lite::pull_into(
            &rootfs.join("registry"),
            &images,
            &args.platforms,
            |name| RegistryOptions {
                insecure: args.insecure,
                credentials: oci::registry_of(name).ok().and_then(|r| credentials.get(&r).ok().flatten()),
            },
            |line| println!("{line}"),
        ));
        if let Err(e) = pulled {
            store.discard(&work);
            return Err(e.into());
        }
        config.images = images;
    }
    let config = store.commit(&work, config, TransferBar::for_stdout().as_ref())?;
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
    let pushed =
        super::runtime()?.block_on(oci::push(&store, &args.name, &opts, TransferBar::for_stdout().as_ref()))?;
    if pushed.resumed_bytes > 0 {
        println!("resumed an interrupted upload: {} bytes were in the registry already", pushed.resumed_bytes);
    }
    if pushed.restarted_uploads > 0 {
        println!(
            "{} interrupted upload(s) could not be resumed (the registry dropped the session): sent again",
            pushed.restarted_uploads
        );
    }
    if pushed.blobs_skipped > 0 {
        println!("{} blob(s) were in the registry already; sent {} bytes", pushed.blobs_skipped, pushed.bytes_sent);
    }
    println!("pushed {} {}", args.name, pushed.manifest_digest);
    Ok(Outcome::Ok)
}

pub fn pull(args: RegistryArgs) -> anyhow::Result<Outcome> {
    pull_image(&args.name, args.insecure)?;
    Ok(Outcome::Ok)
}

fn pull_image(name: &str, insecure: bool) -> anyhow::Result<()> {
    let store = ImageStore::new(&sealer_home());
    let opts = registry_options(name, insecure)?;
    let pulled = super::runtime()?.block_on(oci::pull(&store, name, &opts, TransferBar::for_stdout().as_ref()))?;
    if pulled.resumed_bytes > 0 {
        println!("resumed an interrupted download: {} bytes were already here", pulled.resumed_bytes);
    }
    println!("pulled {} {} (rootfs {})", pulled.config.name, pulled.manifest_digest, pulled.config.digest);
    Ok(())
}

/// `sealer apply` of an image the local store lacks pulls it first (as `sealer run` does), with the
/// stored login of its registry.
pub fn ensure_local(name: &str) -> anyhow::Result<()> {
    match ImageStore::new(&sealer_home()).get(name) {
        Ok(_) => Ok(()),
        Err(ImageError::NotFound(_)) => {
            println!("image `{name}` is not in the local store: pulling it");
            pull_image(name, false).with_context(|| format!("cannot pull the cluster image `{name}`"))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn tag(args: TagArgs) -> anyhow::Result<Outcome> {
    ImageStore::new(&sealer_home()).tag(&args.source, &args.target)?;
    Ok(Outcome::Ok)
}

/// Refuses to remove an image a cluster in the state was installed from, unless `--force`.
pub fn rmi(ctx: &Context, args: RmiArgs) -> anyhow::Result<Outcome> {
    if !args.force {
        if let Some(state) = ctx.state.open_read_only()? {
            for cluster in state.clusters()? {
                let Some(s) = state.load(&cluster)? else { continue };
                let uses = s.resources.values().any(|r| {
                    r.address.kind == Kind::Image && r.attributes.get("image") == Some(&Value::Text(args.name.clone()))
                });
                if uses {
                    bail!("image `{}` is in use by cluster `{cluster}`; remove it with --force", args.name);
                }
            }
        }
    }
    ImageStore::new(&sealer_home()).remove(&args.name)?;
    println!("removed {}", args.name);
    Ok(Outcome::Ok)
}

pub fn inspect(args: NameArg) -> anyhow::Result<Outcome> {
    let image = ImageStore::new(&sealer_home()).get(&args.name)?;
    println!("{}", serde_json::to_string_pretty(&image.config)?);
    Ok(Outcome::Ok)
}

pub fn login(args: LoginArgs) -> anyhow::Result<Outcome> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no password on standard input");
    }
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

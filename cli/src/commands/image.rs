use std::collections::BTreeMap;

use anyhow::bail;
use sealer_providers::image::store::ImageStore;

use crate::args::{BuildArgs, ImagesArgs};
use crate::{sealer_home, Outcome};

pub fn build(args: BuildArgs) -> anyhow::Result<Outcome> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let Some((k, v)) = a.split_once('=') else { bail!("--build-arg `{a}` is not KEY=VALUE") };
        build_args.insert(k.to_string(), v.to_string());
    }
    let kubefile = args.file.clone().unwrap_or_else(|| args.context.join("Kubefile"));
    let store = ImageStore::new(&sealer_home());
    store.build(&kubefile, &args.context, &args.tag, &build_args, |line| println!("{line}"))?;
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

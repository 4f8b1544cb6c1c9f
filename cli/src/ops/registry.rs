//! The local image store and registries, as the image commands use them: list, tag, inspect, push, save,
//! load, and the logins kept for registries. Build, pull and remove (which also read the states) are in
//! [`super::images`].

use std::path::Path;

use sealer_providers::image::credentials::Credentials;
use sealer_providers::image::oci::{self, Pushed, RegistryOptions};
use sealer_providers::image::store::{changed_paths, ImageConfig, ImageStore};
use sealer_providers::image::TransferProgress;

use super::{Result, Workspace};

pub fn list(ws: &Workspace) -> Result<Vec<ImageConfig>> {
    Ok(ImageStore::new(&ws.home).list()?)
}

pub fn tag(ws: &Workspace, source: &str, target: &str) -> Result<ImageConfig> {
    Ok(ImageStore::new(&ws.home).tag(source, target)?)
}

/// The image's configuration and every file of its rootfs (what COPY and RUN put there).
pub fn inspect(ws: &Workspace, name: &str) -> Result<(ImageConfig, Vec<String>)> {
    let image = ImageStore::new(&ws.home).get(name)?;
    let files = changed_paths("", &image.manifest).into_iter().map(str::to_string).collect();
    Ok((image.config, files))
}

/// Pushes `name` to the registry its name points at, with the login kept for that registry.
pub fn push(ws: &Workspace, name: &str, insecure: bool, progress: &dyn TransferProgress) -> Result<Pushed> {
    let registry = oci::registry_of(name)?;
    let opts = RegistryOptions { insecure, credentials: Credentials::new(&ws.home).get(&registry)? };
    let store = ImageStore::new(&ws.home);
    Ok(super::runtime()?.block_on(oci::push(&store, name, &opts, progress))?)
}

/// Checks the login against the registry first (wrong credentials are refused now, not at a later push or
/// pull, and nothing is stored), then keeps it (0600).
pub fn login(ws: &Workspace, registry: &str, username: &str, password: &str, insecure: bool) -> Result<()> {
    let plain_http = insecure || oci::is_local(registry);
    super::runtime()?.block_on(sealer_providers::image::login::verify(registry, username, password, plain_http))?;
    Ok(Credentials::new(&ws.home).login(registry, username, password)?)
}

/// Forgets the login kept for `registry`; false when there was none.
pub fn logout(ws: &Workspace, registry: &str) -> Result<bool> {
    Ok(Credentials::new(&ws.home).logout(registry)?)
}

/// Saves `name` as an OCI archive at `file`; returns its digest.
pub fn save(ws: &Workspace, name: &str, file: &Path) -> Result<String> {
    Ok(oci::save(&ImageStore::new(&ws.home), name, file)?)
}

/// Loads the images of the OCI archive at `file` into the store.
pub fn load(ws: &Workspace, file: &Path) -> Result<Vec<ImageConfig>> {
    Ok(oci::load(&ImageStore::new(&ws.home), file)?)
}

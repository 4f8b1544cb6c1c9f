//! Cluster images for the operations: what the local store knows at plan time, pulls of missing images,
//! builds, and what a new image digest will change on the hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use super::error::{bail, err, Context as _};
use super::Result;
use sealer_engine::schema::{self, Schema};
use sealer_engine::{Action, Address, Clusterfile, ImageFacts, Kind, Plan};
use sealer_providers::cluster::{relayed, relaying_hosts};
use sealer_providers::image::credentials::Credentials;
use sealer_providers::image::mirrors::Mirrors;
use sealer_providers::image::oci::{self, Pulled, RegistryOptions};
use sealer_providers::image::registry_config::RegistrySettings;
use sealer_providers::image::store::{bytes_of, changed_paths, ImageConfig, ImageError};
use sealer_providers::image::TransferProgress;
use sealer_providers::image::{kubefile, lite};

use super::Workspace;

/// The cluster image as the local store has it, and a warning when it does not have it (the plan then
/// lacks the image's `etc/kubeadm.yml` and digest).
pub fn facts(ws: &Workspace, cf: &Clusterfile) -> Result<(ImageFacts, Option<String>)> {
    let image = match ws.images().get(&cf.cluster.image) {
        Ok(image) => image,
        Err(ImageError::NotFound(name)) => {
            let warning =
                format!("image `{name}` is not in the local store; its etc/kubeadm.yml is not part of this plan");
            return Ok((ImageFacts::default(), Some(warning)));
        }
        Err(e) => return Err(e.into()),
    };
    let path = image.rootfs.join("etc/kubeadm.yml");
    let kubeadm = match std::fs::read_to_string(&path) {
        Ok(text) => sealer_engine::kubeadm::parse_image_documents(&text)
            .map_err(|e| err!("image `{}`: etc/kubeadm.yml: {e}", cf.cluster.image))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(err!("cannot read `{}`: {e}", path.display())),
    };
    let templates = templates(&image.rootfs)?;
    let mut apps = BTreeMap::new();
    // Lite builds keep collected names normalized (`docker.io/library/nginx:1`): the first component is
    // the registry.
    let mut registries: std::collections::BTreeSet<String> =
        image.config.images.iter().filter_map(|i| i.split('/').next().map(str::to_string)).collect();
    for app in &cf.cluster.apps {
        if let Ok(stored) = ws.images().get(app) {
            registries.extend(stored.config.images.iter().filter_map(|i| i.split('/').next().map(str::to_string)));
            apps.insert(app.clone(), stored.config.digest);
        }
    }
    let registry = RegistrySettings::load(&image.rootfs)
        .with_context(|| format!("the registry configuration of image `{}`", cf.cluster.image))?;
    let facts = ImageFacts {
        kubeadm,
        digest: Some(image.config.digest),
        env: image.config.env,
        templates,
        apps,
        registries,
        registry_port: Some(registry.port),
        registry_user: registry.username.clone(),
        hooks: has_executables(&image.rootfs),
        balancer: sealer_providers::cluster::image_carries_balancer(&image.rootfs),
    };
    Ok((facts, None))
}

/// The YAML files of the image's `plugin/` and `plugins/` directories (top level, in name order), as
/// (path in the image, text): the Plugin documents the image carries. Nothing without the image.
pub fn plugin_files(ws: &Workspace, image: &str) -> Result<Vec<(String, String)>> {
    let Ok(image) = ws.images().get(image) else { return Ok(Vec::new()) };
    let mut files = Vec::new();
    for dir in ["plugin", "plugins"] {
        let Ok(entries) = std::fs::read_dir(image.rootfs.join(dir)) else { continue };
        let mut found: Vec<_> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        found.sort();
        for name in found {
            let path = image.rootfs.join(dir).join(&name);
            let relative = format!("{dir}/{name}");
            let size = std::fs::metadata(&path)?.len();
            if size > MAX_TEMPLATE_BYTES {
                bail!("image plugin file `{relative}` is {size} bytes, over the limit of {MAX_TEMPLATE_BYTES}");
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("image plugin file `{relative}` is not UTF-8 text"))?;
            files.push((relative, text));
        }
    }
    Ok(files)
}

/// Whether the image has executables that may be shell-operator hooks (its `hooks/`, `plugins/`,
/// `plugin/`): then the cluster gets a `hooks.*` resource that asks them.
fn has_executables(rootfs: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    ["hooks", "plugins", "plugin"].iter().any(|dir| {
        std::fs::read_dir(rootfs.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    })
}

/// A template or plugin file larger than this is refused: they are configuration files.
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

/// The image's `*.tmpl` files (outside its registry), by rootfs path, in path order.
fn templates(rootfs: &std::path::Path) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut stack = vec![rootfs.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let relative = path.strip_prefix(rootfs).unwrap_or(&path).to_string_lossy().into_owned();
            if kind.is_dir() && relative != "registry" {
                stack.push(path);
            } else if kind.is_file() && relative.ends_with(".tmpl") {
                if entry.metadata()?.len() > MAX_TEMPLATE_BYTES {
                    bail!("template `{relative}` is over {MAX_TEMPLATE_BYTES} bytes");
                }
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("template `{relative}` is not UTF-8 text"))?;
                found.push((relative, text));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Notes every `image.*` create and update of `plan` with how its copy travels (the first host of each
/// group that holds the same files seeds from the workstation, the others fetch from peers, and the first
/// of them relay it on) and, for an
/// update, what the new digest changes against the one the host holds: files to send and their bytes
/// (from the manifests the store keeps by digest).
pub fn note_image_changes(ws: &Workspace, cf: &Clusterfile, plan: &mut Plan) {
    let Ok(image) = ws.images().get(&cf.cluster.image) else { return };
    let copies: Vec<(Address, Option<IpAddr>, Option<String>)> =
        image_copies(plan, &image.config.digest).map(|(c, old)| (c.address.clone(), c.host, old)).collect();
    let route = planned_route(plan, &image.config.digest);
    let count = copies.len();
    // Per digest the hosts hold: what the copy carries, and whether it is relayed (every sealer carries
    // the relay; a small copy goes directly to each host).
    let mut by_digest: BTreeMap<Option<String>, (String, bool)> = BTreeMap::new();
    for (address, host, old) in copies {
        let (files, relay) = by_digest.entry(old.clone()).or_insert_with(|| {
            let all = || relayed(count, bytes_of(&image.rootfs, &changed_paths("", &image.manifest)));
            match &old {
                None => (String::new(), all()),
                Some(old) => match ws.images().manifest_of(old) {
                    Some(manifest) => {
                        let changed = changed_paths(&manifest, &image.manifest);
                        let bytes = bytes_of(&image.rootfs, &changed);
                        let files = format!("{} changed file(s), {bytes} bytes to send to each host; ", changed.len());
                        (files, relayed(count, bytes))
                    }
                    None => (
                        "the local store no longer has the previous image's manifest: changed files are found at \
                         apply; "
                            .to_string(),
                        all(),
                    ),
                },
            }
        });
        let route = if !*relay {
            "copied from the workstation"
        } else if host.is_some_and(|h| route.seeds.contains(&h)) {
            "seed: copied from the workstation, then relayed to the other hosts"
        } else if host.is_some_and(|h| route.relays.contains(&h)) {
            "relayed from a host that holds the copy (the workstation's when no peer is reachable), then relayed \
             on to other hosts"
        } else {
            "relayed from a host that holds the copy (the workstation's when no peer is reachable)"
        };
        plan.notes.insert(address, format!("{files}{route}"));
    }
}

/// The `image.*` changes of `plan` that copy files to their host, in plan order, each with the digest the
/// host holds (`None`: nothing yet).
fn image_copies<'p>(
    plan: &'p Plan,
    digest: &'p str,
) -> impl Iterator<Item = (&'p sealer_engine::ResourceChange, Option<String>)> + 'p {
    plan.changes
        .iter()
        .filter(|c| c.kind == Kind::Image && matches!(c.action, Action::Create | Action::Update | Action::Replace))
        .map(|c| match (c.action, c.before.as_ref().and_then(|b| schema::Image::from_attributes(b).ok())) {
            (Action::Update, Some(before)) => (c, before.digest.known().cloned()),
            _ => (c, None),
        })
        .filter(move |(_, old)| old.as_deref() != Some(digest))
}

/// The hosts the plan names for the copies of an image of `digest`, per group of hosts that hold the same
/// digest (and so get the same files), in plan order.
#[derive(Default)]
pub struct Route {
    /// The first host of each group: an apply lets them copy from the workstation first.
    pub seeds: BTreeSet<IpAddr>,
    /// The next hosts of each group, [`relaying_hosts`] in all with the seed: they fetch from a peer and
    /// serve the others.
    pub relays: BTreeSet<IpAddr>,
}

pub fn planned_route(plan: &Plan, digest: &str) -> Route {
    let mut groups: BTreeMap<Option<String>, Vec<IpAddr>> = BTreeMap::new();
    for (change, old) in image_copies(plan, digest) {
        groups.entry(old).or_default().extend(change.host);
    }
    let mut route = Route::default();
    for hosts in groups.values() {
        route.seeds.extend(hosts.first());
        route.relays.extend(hosts.iter().take(relaying_hosts(hosts.len())).skip(1));
    }
    route
}

/// `sealer-relay`, built with `sealer` for the same target and carried inside it (`build.rs`): what hosts
/// run to relay the image to each other. A host of another architecture cannot run it and gets a direct
/// copy (the relay says so).
pub fn relay_helper() -> Vec<u8> {
    include_bytes!(concat!(env!("OUT_DIR"), "/sealer-relay")).to_vec()
}

fn registry_options(ws: &Workspace, name: &str, insecure: bool) -> Result<RegistryOptions> {
    let registry = oci::registry_of(name)?;
    Ok(RegistryOptions { insecure, credentials: Credentials::new(&ws.home).get(&registry)? })
}

/// Pulls `name` into the local store with the stored login of its registry.
pub fn pull(ws: &Workspace, name: &str, insecure: bool, progress: &dyn TransferProgress) -> Result<Pulled> {
    let opts = registry_options(ws, name, insecure)?;
    Ok(super::runtime()?.block_on(oci::pull(&ws.images(), name, &opts, progress))?)
}

/// A pull when the store lacks `name` (as `sealer run`, `apply` and the `plan` of a recorded cluster do);
/// `None` when it has it.
pub fn ensure_local(ws: &Workspace, name: &str, progress: &dyn TransferProgress) -> Result<Option<Pulled>> {
    match ws.images().get(name) {
        Ok(_) => Ok(None),
        Err(ImageError::NotFound(_)) => {
            pull(ws, name, false, progress).map(Some).with_context(|| format!("cannot pull the image `{name}`"))
        }
        Err(e) => Err(e.into()),
    }
}

/// What `sealer build` needs.
pub struct BuildRequest {
    pub kubefile: PathBuf,
    pub context: PathBuf,
    pub tag: String,
    pub build_args: BTreeMap<String, String>,
    pub platforms: Vec<String>,
    pub insecure: bool,
    /// `REGISTRY=URL` mirrors over those of `$SEALER_HOME/registries.yaml`.
    pub registry_mirrors: Vec<String>,
}

/// The bases a Kubefile builds `FROM` that the local store lacks are pulled first (digest-checked, with
/// the stored login of their registry), as `docker build` does.
fn pull_missing_bases(
    ws: &Workspace,
    req: &BuildRequest,
    say: &mut impl FnMut(&str),
    progress: &dyn TransferProgress,
) -> Result<()> {
    // A Kubefile that does not parse is reported, every line of it, by the build itself.
    let Ok(text) = std::fs::read_to_string(&req.kubefile) else { return Ok(()) };
    let Ok(steps) = kubefile::parse(&text, &req.build_args) else { return Ok(()) };
    for step in steps {
        let kubefile::Instruction::From(base) = step.instruction else { continue };
        if base == "scratch" || !matches!(ws.images().get(&base), Err(ImageError::NotFound(_))) {
            continue;
        }
        say(&format!("FROM {base}: not in the local store, pulling it"));
        let pulled = pull(ws, &base, req.insecure, progress)
            .with_context(|| format!("line {}: cannot pull the base image `{base}`", step.line))?;
        say(&format!("pulled {base} {}", pulled.manifest_digest));
    }
    Ok(())
}

/// Builds the Kubefile into the local store: the steps, then the lite build (every container image the
/// rootfs names, pulled into its registry), then one commit; a failure leaves the store as it was.
pub fn build(
    ws: &Workspace,
    req: &BuildRequest,
    mut say: impl FnMut(&str),
    progress: &dyn TransferProgress,
) -> Result<ImageConfig> {
    let mirrors = Mirrors::load(&ws.home, &req.registry_mirrors)?;
    pull_missing_bases(ws, req, &mut say, progress)?;
    let store = ws.images();
    let (work, mut config) = store.prepare(&req.kubefile, &req.context, &req.tag, &req.build_args, &mut say)?;
    let rootfs = work.join("rootfs");
    let (images, notes) = lite::collect(&rootfs, &config.cmds);
    for note in notes {
        say(&note);
    }
    if !images.is_empty() {
        say(&format!("lite build: {} container image(s) go into the image's registry", images.len()));
        let credentials = Credentials::new(&ws.home);
        let pulled = super::runtime()?.block_on(lite::pull_into(
            &rootfs.join("registry"),
            &images,
            &req.platforms,
            &mirrors,
            |registry| RegistryOptions {
                insecure: req.insecure,
                credentials: credentials.get(registry).ok().flatten(),
            },
            &mut say,
        ));
        if let Err(e) = pulled {
            store.discard(&work);
            return Err(e.into());
        }
        config.images = images;
    }
    Ok(store.commit(&work, config, progress)?)
}

/// Removes `name` from the local store; an image a cluster in the state was installed from is refused
/// unless `force`.
/// Removes `name` from the store, unless (without `force`) something still uses it: a cluster of any state
/// this home knows ([`Workspace::known_states`]) as its image or one of its applications, or another
/// stored image built `FROM` it. Every user is named at once.
pub fn remove(ws: &Workspace, name: &str, force: bool) -> Result<()> {
    if !force {
        let mut users = Vec::new();
        for location in ws.known_states() {
            // A state that cannot be read may use the image: refused, naming it.
            let unreadable = |e: &dyn std::fmt::Display| {
                err!("cannot tell whether state {location} uses `{name}` ({e}); remove it anyway with --force")
            };
            let Some(state) = location.open_read_only().map_err(|e| unreadable(&e))? else { continue };
            for cluster in state.clusters().map_err(|e| unreadable(&e))? {
                let Some(s) = state.load(&cluster).map_err(|e| unreadable(&e))? else { continue };
                // A record that does not read as its kind may name the image: refused, as an unreadable state.
                let uses = |r: &sealer_engine::StoredResource| -> Result<Option<&str>, schema::SchemaError> {
                    let role = match r.address.kind {
                        Kind::Image => "image",
                        Kind::App => "application",
                        _ => return Ok(None),
                    };
                    let image = if r.address.kind == Kind::Image {
                        schema::Image::from_attributes(&r.attributes)?.image
                    } else {
                        schema::App::from_attributes(&r.attributes)?.image
                    };
                    Ok((image == name).then_some(role))
                };
                let mut roles = Vec::new();
                for r in s.resources.values() {
                    roles.extend(uses(r).map_err(|e| unreadable(&e))?);
                }
                roles.sort_unstable();
                roles.dedup();
                for role in roles {
                    users.push(format!("the {role} of cluster `{cluster}` (state {location})"));
                }
            }
        }
        for image in ws.images().list()? {
            if image.base.as_deref() == Some(name) && image.name != name {
                users.push(format!("the base of image `{}`", image.name));
            }
        }
        if !users.is_empty() {
            bail!("image `{name}` is in use: {}; remove it anyway with --force", users.join(", "));
        }
    }
    Ok(ws.images().remove(name)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sealer_engine::{ResourceStatus, StateStore as _, StoredResource, Value};
    use sealer_state::{SqliteStore, StateLocation};

    use super::*;

    /// An image a recorded cluster uses is not removed; nor is one whose use a record that does not read as
    /// its kind hides (a state edited by hand): refused, naming why, never taken as unused.
    #[test]
    fn an_image_in_use_or_hidden_by_an_unreadable_record_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let ws =
            Workspace { state: StateLocation::Sqlite(path.clone()), home: dir.path().join("home"), connections: None };
        let write = |image: Value| {
            let mut store = SqliteStore::open(&path).unwrap();
            let lock = store.lock("c", "me@here", 1, "apply").unwrap();
            let address = Address::new(Kind::Image, "10.0.0.2");
            let resource = StoredResource {
                address: address.clone(),
                host: Some("10.0.0.2".parse().unwrap()),
                status: ResourceStatus::Ready,
                attributes: [("image".to_string(), image)].into(),
                depends_on: Vec::new(),
            };
            store.put_resource(&lock, &address, Some(&resource)).unwrap();
            store.unlock(&lock).unwrap();
        };
        write(Value::text("k:v1"));
        let used = remove(&ws, "k:v1", false).unwrap_err().to_string();
        assert!(used.contains("image `k:v1` is in use: the image of cluster `c`"), "{used}");
        write(Value::List(vec!["k:v1".into()]));
        let hidden = remove(&ws, "k:v1", false).unwrap_err().to_string();
        assert!(
            hidden.contains("cannot tell whether state") && hidden.contains("`image` attribute `image`"),
            "{hidden}"
        );
    }
}

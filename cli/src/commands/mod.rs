pub mod apply;
pub mod graph;
pub mod image;
pub mod plan;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use sealer_engine::{Address, Clusterfile, Diagnostics, Kind, State, Value};
use sealer_providers::cluster::{ClusterContext, ClusterProvider};
use sealer_providers::image::store::{ImageError, ImageStore};
use sealer_providers::{SshAuth, SshTarget};

/// The kubeadm documents of the cluster image (its `etc/kubeadm.yml`), a layer of the merged config; empty,
/// with a warning, when the image is not in the local store yet.
pub fn image_kubeadm(cf: &Clusterfile) -> anyhow::Result<Vec<sealer_engine::clusterfile::KubeadmDocument>> {
    let image = match ImageStore::new(&crate::sealer_home()).get(&cf.cluster.image) {
        Ok(image) => image,
        Err(ImageError::NotFound(name)) => {
            eprintln!(
                "warning: image `{name}` is not in the local store; its etc/kubeadm.yml is not part of this plan"
            );
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    let path = image.rootfs.join("etc/kubeadm.yml");
    match std::fs::read_to_string(&path) {
        Ok(text) => sealer_engine::kubeadm::parse_image_documents(&text)
            .map_err(|e| anyhow::anyhow!("image `{}`: etc/kubeadm.yml: {e}", cf.cluster.image)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read `{}`: {e}", path.display())),
    }
}

/// The async runtime commands that talk to hosts or registries run on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// `--target` values as addresses.
pub fn parse_targets(targets: &[String]) -> anyhow::Result<Vec<Address>> {
    targets.iter().map(|t| t.parse::<Address>().map_err(|e| anyhow::anyhow!("invalid --target: {e}"))).collect()
}

/// Reads and validates a Clusterfile, printing warnings; every error is printed before failing.
pub fn load_clusterfile(path: &Path) -> anyhow::Result<Clusterfile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the Clusterfile `{}`", path.display()))?;
    match sealer_engine::parse(&path.display().to_string(), &text) {
        Ok(parsed) => {
            print_diagnostics(&parsed.warnings);
            Ok(parsed.clusterfile)
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            bail!("`{}` is not a valid Clusterfile ({} error(s) above)", path.display(), diagnostics.errors().count())
        }
    }
}

fn print_diagnostics(diagnostics: &Diagnostics) {
    for d in &diagnostics.0 {
        eprintln!("{d}");
    }
}

/// The secrets of a host's ssh login, as the state keeps them: `(attribute, secret)`.
pub fn ssh_secrets(ssh: &sealer_engine::clusterfile::Ssh) -> [(&'static str, Option<&str>); 2] {
    [
        ("ssh_password", ssh.password.as_ref().map(|s| s.expose())),
        ("ssh_key_passphrase", ssh.key_passphrase.as_ref().map(|s| s.expose())),
    ]
}

/// SSH targets of the Clusterfile's hosts, with the host keys pinned in the state. Hosts only the state
/// still has (being removed) log in as recorded: user, port, key path, and the password or passphrase
/// sealed in the state (opened with the user's state key), else the cluster-wide `spec.ssh`.
pub fn ssh_targets(
    cf: &Clusterfile,
    state: &State,
    strict: bool,
) -> anyhow::Result<BTreeMap<std::net::IpAddr, SshTarget>> {
    let default_key = ["id_ed25519", "id_rsa", "id_ecdsa"]
        .iter()
        .map(|k| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".ssh").join(k))
        .find(|p| p.exists());
    let target = |ip: std::net::IpAddr, ssh: &sealer_engine::clusterfile::Ssh| {
        let password = ssh.password.as_ref().map(|p| p.expose().to_string());
        let auth = match (&ssh.private_key, password) {
            (Some(pk), password) => SshAuth::Key {
                path: PathBuf::from(pk),
                passphrase: ssh.key_passphrase.as_ref().map(|s| s.expose().to_string()),
                password,
            },
            (None, Some(password)) => SshAuth::Password(password),
            (None, None) => {
                SshAuth::Key { path: default_key.clone().unwrap_or_default(), passphrase: None, password: None }
            }
        };
        let recorded = state.resources.get(&Address::new(Kind::Host, ip.to_string())).map(|r| &r.attributes);
        let known = recorded.and_then(|a| match a.get("host_key") {
            Some(Value::Text(k)) if !k.is_empty() => Some(k.clone()),
            _ => None,
        });
        SshTarget {
            ip,
            port: ssh.port,
            user: ssh.user.clone(),
            auth,
            known_host_key: known,
            strict_host_keys: strict,
            connect_timeout: Duration::from_secs(10),
        }
    };
    let mut targets: BTreeMap<_, _> = cf.cluster.hosts.iter().map(|h| (h.ip, target(h.ip, &h.ssh))).collect();
    for resource in state.resources.values().filter(|r| r.address.kind == Kind::Host) {
        let Some(ip) = resource.host else { continue };
        if targets.contains_key(&ip) {
            continue;
        }
        let recorded = &resource.attributes;
        let mut ssh = cf.cluster.ssh.clone();
        if let Some(Value::Text(user)) = recorded.get("ssh_user") {
            ssh.user = user.clone();
        }
        if let Some(Value::Int(port)) = recorded.get("ssh_port") {
            ssh.port = u16::try_from(*port).unwrap_or(22);
        }
        let sealed = |attribute: &str| -> anyhow::Result<Option<sealer_engine::clusterfile::Secret>> {
            let Some(Value::Sealed(sealed)) = recorded.get(attribute) else { return Ok(None) };
            let key = sealer_state::SealingKey::load(&crate::sealer_home(), false)?.with_context(|| {
                format!(
                    "the state keeps the ssh {} of removed host `{ip}` sealed, but there is no state key here \
                     (set SEALER_STATE_KEY or copy the `state.key` of the workstation that applied)",
                    attribute.trim_start_matches("ssh_").replace('_', " ")
                )
            })?;
            Ok(Some(sealer_engine::clusterfile::Secret::new(key.open(&resource.address.to_string(), sealed)?)))
        };
        match recorded.get("ssh_private_key") {
            Some(Value::Text(path)) => {
                ssh.private_key = Some(path.clone());
                ssh.key_passphrase = sealed("ssh_key_passphrase")?;
            }
            // Recorded without a key: it logged in with its password only.
            _ if recorded.get("ssh_auth") == Some(&Value::text("password")) => ssh.private_key = None,
            _ => {}
        }
        if let Some(password) = sealed("ssh_password")? {
            ssh.password = Some(password);
        }
        targets.insert(ip, target(ip, &ssh));
    }
    Ok(targets)
}

/// Seals the host's ssh secrets into the attributes the state keeps for `host.IP` (they are `Sensitive`,
/// without a value, in the plan), so that the host can be reached once the Clusterfile drops it.
pub fn seal_ssh_secrets(
    cf: &Clusterfile,
    key: Option<&sealer_state::SealingKey>,
    address: &Address,
    attributes: &mut sealer_engine::Attributes,
) -> Result<(), String> {
    let (Some(key), Some(ip)) = (key, address.key.parse::<std::net::IpAddr>().ok()) else { return Ok(()) };
    let Some(host) = cf.cluster.hosts.iter().find(|h| h.ip == ip) else { return Ok(()) };
    for (attribute, secret) in ssh_secrets(&host.ssh) {
        if let (Some(secret), Some(value)) = (secret, attributes.get_mut(attribute)) {
            *value = Value::Sealed(key.seal(&address.to_string(), secret).map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

/// A provider for reading the hosts and writing through the cluster's API (kubectl on `first_master`),
/// without an image.
pub fn api_provider(
    cf: &Clusterfile,
    state: &State,
    strict_host_keys: bool,
    first_master: std::net::IpAddr,
    log_dir: PathBuf,
) -> anyhow::Result<ClusterProvider> {
    Ok(ClusterProvider::new(ClusterContext {
        cluster: cf.cluster.name.clone(),
        hosts: ssh_targets(cf, state, strict_host_keys)?,
        first_master,
        masters: masters(cf),
        image: None,
        prior: BTreeMap::new(),
        log_dir,
        command_timeout: Duration::from_secs(60),
        restore_hostnames: false,
    }))
}

/// Reads the live hosts into `state` (hostnames, node labels and taints) so that plans show drift.
pub fn refresh(cf: &Clusterfile, state: &mut State, strict_host_keys: bool) -> anyhow::Result<()> {
    let Some(first_master) = cf.cluster.first_master().map(|h| h.ip) else { return Ok(()) };
    if state.resources.is_empty() {
        return Ok(());
    }
    let log_dir = std::env::temp_dir().join(format!("sealer-refresh-{}", std::process::id()));
    let provider = api_provider(cf, state, strict_host_keys, first_master, log_dir.clone())?;
    let result = runtime()?.block_on(provider.refresh(state));
    let _ = std::fs::remove_dir_all(&log_dir);
    result.map_err(|e| anyhow::anyhow!("{e} (plan with --refresh=false to use the recorded state)"))
}

/// `user@host`, recorded with every lock and history entry.
pub fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// The command line as recorded with a lock and in the history, with any password in a URL masked.
pub fn command_line() -> String {
    std::env::args().map(|a| sealer_state::redact_url(&a)).collect::<Vec<_>>().join(" ")
}

/// The masters the Clusterfile declares, in its order.
pub fn masters(cf: &Clusterfile) -> Vec<std::net::IpAddr> {
    cf.cluster.hosts.iter().filter(|h| h.role == sealer_engine::clusterfile::Role::Master).map(|h| h.ip).collect()
}

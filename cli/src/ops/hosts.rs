//! Reaching the hosts: SSH targets (hosts being removed log in as the state recorded them, with their
//! sealed secrets opened by the user's state key), sealing secrets into the state, and refresh.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{bail, err, Context as _};
use super::Result;
use sealer_engine::clusterfile::{Secret, Ssh};
use sealer_engine::schema::{self, Schema};
use sealer_engine::{Address, Attributes, Clusterfile, Kind, LockInfo, ResourceStatus, State, StateStore, Value};
use sealer_providers::cluster::{ClusterContext, ClusterProvider, Observed};
use sealer_providers::{SshAuth, SshTarget};
use sealer_state::{binding, SealingKey};

use super::Workspace;

/// The secrets of a host's ssh login, as the state keeps them: `(attribute, secret)`.
pub fn ssh_secrets(ssh: &Ssh) -> [(&'static str, Option<&str>); 2] {
    [
        (schema::Host::PASSWORD, ssh.password.as_ref().map(|s| s.expose())),
        (schema::Host::KEY_PASSPHRASE, ssh.key_passphrase.as_ref().map(|s| s.expose())),
    ]
}

/// How to reach `ip`: the Clusterfile's login, and the host key the state pinned (a record that does not
/// read as a host is an error, never a host whose key is trusted anew).
fn target(ip: IpAddr, ssh: &Ssh, state: &State, strict: bool) -> Result<SshTarget> {
    let default_key = ["id_ed25519", "id_rsa", "id_ecdsa"]
        .iter()
        .map(|k| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".ssh").join(k))
        .find(|p| p.exists());
    let password = ssh.password.as_ref().map(|p| p.expose().to_string());
    let auth = match (&ssh.private_key, password) {
        (Some(pk), password) => SshAuth::Key {
            path: PathBuf::from(pk),
            passphrase: ssh.key_passphrase.as_ref().map(|s| s.expose().to_string()),
            password,
        },
        (None, Some(password)) => SshAuth::Password(password),
        (None, None) => SshAuth::Key { path: default_key.unwrap_or_default(), passphrase: None, password: None },
    };
    let recorded = state.resources.get(&Address::new(Kind::Host, ip.to_string()));
    let recorded = recorded.map(|r| schema::Host::from_attributes(&r.attributes)).transpose()?;
    let known = recorded.and_then(|h| h.host_key.known().cloned()).filter(|k| !k.is_empty());
    Ok(SshTarget {
        ip,
        port: ssh.port,
        user: ssh.user.clone(),
        auth,
        known_host_key: known,
        strict_host_keys: strict,
        connect_timeout: Duration::from_secs(10),
    })
}

/// SSH targets of the Clusterfile's hosts, with the host keys pinned in the state, and of the hosts only
/// the state still has (being removed), which log in as recorded (`StoredResource::recorded_login`).
pub fn ssh_targets(
    ws: &Workspace,
    cf: &Clusterfile,
    state: &State,
    strict: bool,
) -> Result<BTreeMap<IpAddr, SshTarget>> {
    let mut targets = BTreeMap::new();
    for h in &cf.cluster.hosts {
        targets.insert(h.ip, target(h.ip, &h.ssh, state, strict)?);
    }
    for resource in state.resources.values() {
        let (Some(ip), Some(login)) = (resource.host, resource.recorded_login()?) else { continue };
        if targets.contains_key(&ip) {
            continue;
        }
        let open = |what: &str, attribute: &str, sealed: &Option<String>| -> Result<Option<Secret>> {
            let Some(sealed) = sealed else { return Ok(None) };
            let key = SealingKey::load(&ws.home, false)?.with_context(|| {
                format!(
                    "the state keeps the ssh {what} of removed host `{ip}` sealed, but there is no state key \
                     here (set SEALER_STATE_KEY or copy the `state.key` of the workstation that applied)"
                )
            })?;
            let (secret, _) = key.open_bound(&cf.cluster.name, &resource.address.to_string(), attribute, sealed)?;
            Ok(Some(Secret::new(secret)))
        };
        let mut ssh = cf.cluster.ssh.clone();
        ssh.user = login.user.unwrap_or(ssh.user);
        ssh.port = login.port.unwrap_or(ssh.port);
        if let Some(key) = login.private_key {
            ssh.private_key = Some(key);
            ssh.key_passphrase = open("key passphrase", schema::Host::KEY_PASSPHRASE, &login.sealed_key_passphrase)?;
        } else if login.password_only {
            ssh.private_key = None;
        }
        if let Some(password) = open("password", schema::Host::PASSWORD, &login.sealed_password)? {
            ssh.password = Some(password);
        }
        targets.insert(ip, target(ip, &ssh, state, strict)?);
    }
    Ok(targets)
}

/// The state key, when the Clusterfile has a secret the state must seal or digest (an ssh secret, a
/// `toSecret` Config document); created on first use.
pub fn sealing_key(ws: &Workspace, cf: &Clusterfile) -> Result<Option<SealingKey>> {
    let has_secrets = cf.cluster.hosts.iter().any(|h| ssh_secrets(&h.ssh).iter().any(|(_, s)| s.is_some()))
        || cf.configs.iter().any(|c| c.is_secret());
    Ok(if has_secrets { SealingKey::load(&ws.home, true)? } else { None })
}

/// Gives each `toSecret` Config document the keyed digest its plan compares instead of its data. Without
/// a state key yet (a plan before the first apply), the digest is unknown, as on a first apply anyway.
pub fn digest_secret_configs(ws: &Workspace, cf: &mut Clusterfile) -> Result<()> {
    if !cf.configs.iter().any(|c| c.is_secret()) {
        return Ok(());
    }
    let Some(key) = SealingKey::load(&ws.home, false)? else { return Ok(()) };
    let cluster = cf.cluster.name.clone();
    for config in cf.configs.iter_mut().filter(|c| c.is_secret()) {
        let owner = binding(&cluster, &format!("config.{}", config.name), "data");
        config.secret_digest = Some(key.digest(&owner, &config.data));
    }
    Ok(())
}

/// The data of the `toSecret` Config documents, for the provider that writes them.
pub fn secret_configs(cf: &Clusterfile) -> BTreeMap<String, String> {
    cf.configs.iter().filter(|c| c.is_secret()).map(|c| (c.name.clone(), c.data.clone())).collect()
}

/// Seals the host's ssh secrets into the attributes the state keeps for `host.IP` (they are `Sensitive`,
/// without a value, in the plan), so that the host can be reached once the Clusterfile drops it.
pub fn seal_ssh_secrets(
    cf: &Clusterfile,
    key: Option<&SealingKey>,
    address: &Address,
    attributes: &mut Attributes,
) -> Result<(), sealer_state::SealingError> {
    let (Some(key), Some(ip)) = (key, address.key.parse::<IpAddr>().ok()) else { return Ok(()) };
    let Some(host) = cf.cluster.hosts.iter().find(|h| h.ip == ip) else { return Ok(()) };
    for (attribute, secret) in ssh_secrets(&host.ssh) {
        if let (Some(secret), Some(value)) = (secret, attributes.get_mut(attribute)) {
            *value = Value::Sealed(key.seal(&binding(&cf.cluster.name, &address.to_string(), attribute), secret)?);
        }
    }
    Ok(())
}

/// A password changed in the Clusterfile plans no change (secrets compare as `(sensitive)`), but the
/// state must keep the one that works, for the day the host is removed: re-sealed in place, nothing
/// remote. Returns how many hosts' records changed.
pub fn reseal_changed_secrets(
    cf: &Clusterfile,
    key: Option<&SealingKey>,
    recorded: &State,
    store: &mut dyn StateStore,
    lock: &LockInfo,
) -> Result<usize> {
    let Some(key) = key else { return Ok(0) };
    let mut changed = 0;
    for host in &cf.cluster.hosts {
        let address = Address::new(Kind::Host, host.ip.to_string());
        let Some(stored) = recorded.resources.get(&address).filter(|r| r.status == ResourceStatus::Ready) else {
            continue;
        };
        let stale = ssh_secrets(&host.ssh).iter().any(|(attribute, secret)| {
            secret.is_some_and(|secret| reseal_needed(key, &cf.cluster.name, &address, attribute, stored, secret))
        });
        if stale {
            let mut resource = stored.clone();
            seal_ssh_secrets(cf, Some(key), &address, &mut resource.attributes)?;
            store.put_resource(lock, &address, Some(&resource))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Whether `stored`'s `attribute` must be sealed again to hold `secret`: it holds another secret, is not
/// sealed at all, or is sealed under the older binding (the address alone), which is moved to the current
/// one once. Opened with the same binding it was sealed with, so an unchanged secret never rewrites the
/// state (a no-op apply keeps the serial, and saved plans stay applicable).
fn reseal_needed(
    key: &SealingKey,
    cluster: &str,
    address: &Address,
    attribute: &str,
    stored: &sealer_engine::StoredResource,
    secret: &str,
) -> bool {
    match stored.attributes.get(attribute) {
        Some(Value::Sealed(sealed)) => match key.open_bound(cluster, &address.to_string(), attribute, sealed) {
            Ok((opened, legacy)) => legacy || opened != secret,
            Err(_) => true,
        },
        Some(Value::Sensitive) => true,
        _ => false,
    }
}

/// A provider for reading the hosts and writing through the cluster's API (kubectl on `first_master`),
/// without an image.
pub fn api_provider(
    ws: &Workspace,
    cf: &Clusterfile,
    state: &State,
    strict_host_keys: bool,
    first_master: IpAddr,
    log_dir: PathBuf,
) -> Result<ClusterProvider> {
    let remote = ws.remote(ssh_targets(ws, cf, state, strict_host_keys)?, Duration::from_secs(60));
    let ctx = ClusterContext {
        cluster: cf.cluster.name.clone(),
        first_master,
        masters: super::masters(cf),
        image: None,
        prior: BTreeMap::new(),
        log_dir,
        restore_hostnames: false,
        secret_configs: BTreeMap::new(),
        apps: BTreeMap::new(),
        // A recorded host the Clusterfile no longer has may be gone: refresh tells them apart by this.
        hosts: cf.cluster.hosts.iter().map(|h| h.ip).collect(),
        distribution: Default::default(),
        forgotten: Default::default(),
    };
    Ok(ClusterProvider::new(ctx, remote))
}

/// Reads the live hosts into `state` (hostnames, node labels and taints) so that plans show drift, and
/// returns the labels the cluster's nodes have.
pub fn refresh(ws: &Workspace, cf: &Clusterfile, state: &mut State, strict_host_keys: bool) -> Result<Observed> {
    let Some(first_master) = cf.cluster.first_master().map(|h| h.ip) else { return Ok(Observed::default()) };
    if state.resources.is_empty() {
        return Ok(Observed::default());
    }
    // A directory of its own with a name nobody can guess or plant a link at, removed when done.
    let logs = tempfile::Builder::new().prefix("sealer-refresh-").tempdir()?;
    let provider = api_provider(ws, cf, state, strict_host_keys, first_master, logs.path().to_path_buf())?;
    let result = ws.block_on(provider.refresh(state))?;
    result.map_err(|e| err!("refresh: {e} (plan with --refresh=false to use the recorded state)"))
}

/// The cluster's nodes as its API has them, asked through the first master only (a host that does not
/// answer elsewhere changes nothing here).
pub fn cluster_nodes(
    ws: &Workspace,
    cf: &Clusterfile,
    state: &State,
    strict_host_keys: bool,
) -> Result<Vec<sealer_providers::cluster::kube::Node>> {
    let first_master = cf.cluster.first_master().map(|h| h.ip).context("the Clusterfile has no master")?;
    if state.resources.is_empty() {
        bail!("cluster `{}` is not in the state: it has no nodes to read", cf.cluster.name);
    }
    let logs = tempfile::Builder::new().prefix("sealer-nodes-").tempdir()?;
    let provider = api_provider(ws, cf, state, strict_host_keys, first_master, logs.path().to_path_buf())?;
    Ok(ws.block_on(provider.nodes())??)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_unchanged_secret_is_not_sealed_again_a_changed_or_legacy_one_is() {
        let home = tempfile::tempdir().unwrap();
        let key = SealingKey::load(home.path(), true).unwrap().unwrap();
        let address = Address::new(Kind::Host, "10.0.0.2");
        let stored = |value: Value| sealer_engine::StoredResource {
            address: address.clone(),
            host: None,
            status: ResourceStatus::Ready,
            attributes: [("ssh_password".to_string(), value)].into(),
            depends_on: Vec::new(),
        };
        let current = key.seal(&binding("c", "host.10.0.0.2", "ssh_password"), "pw-1").unwrap();
        let current = stored(Value::Sealed(current));
        assert!(!reseal_needed(&key, "c", &address, "ssh_password", &current, "pw-1"), "same secret, same binding");
        assert!(reseal_needed(&key, "c", &address, "ssh_password", &current, "pw-2"), "changed secret");
        let legacy = stored(Value::Sealed(key.seal("host.10.0.0.2", "pw-1").unwrap()));
        assert!(reseal_needed(&key, "c", &address, "ssh_password", &legacy, "pw-1"), "older binding moves once");
        assert!(reseal_needed(&key, "c", &address, "ssh_password", &stored(Value::Sensitive), "pw-1"));
        let other =
            stored(Value::Sealed(key.seal(&binding("other", "host.10.0.0.2", "ssh_password"), "pw-1").unwrap()));
        assert!(reseal_needed(&key, "c", &address, "ssh_password", &other, "pw-1"), "another cluster's seal");
    }

    /// The host key the state pinned is offered; a host record that does not read as a host (edited by
    /// hand) is an error, never a host whose key is trusted anew.
    #[test]
    fn a_pinned_host_key_is_kept_and_an_unreadable_record_is_an_error() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let address = Address::new(Kind::Host, "10.0.0.2");
        let mut state = State::empty("c");
        let record = sealer_engine::StoredResource {
            address: address.clone(),
            host: Some(ip),
            status: ResourceStatus::Ready,
            attributes: [("host_key".to_string(), Value::text("ssh-ed25519 AAAApinned"))].into(),
            depends_on: Vec::new(),
        };
        state.resources.insert(address.clone(), record);
        let pinned = target(ip, &Ssh::default(), &state, true).unwrap();
        assert_eq!(pinned.known_host_key.as_deref(), Some("ssh-ed25519 AAAApinned"));
        state.resources.get_mut(&address).unwrap().attributes.insert("ssh_port".into(), Value::text("22"));
        let error = target(ip, &Ssh::default(), &state, true).unwrap_err().to_string();
        assert_eq!(error, "`host` attribute `ssh_port` is text, expected an integer");
    }
}

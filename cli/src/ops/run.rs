//! `sealer run IMAGE`: the Clusterfile the flags mean, written to `.sealer/<cluster>/Clusterfile` (beside
//! the state) and applied like `apply -f` of it. On a cluster `run` made, flags may only add hosts, and an
//! application image joins `spec.apps`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use super::error::{bail, err, Context as _};
use super::Result;
use serde_yaml::{Mapping, Value};

use super::Workspace;

/// sealer's default cluster name.
pub const DEFAULT_CLUSTER: &str = "my-cluster";

/// What the flags of `sealer run` say.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    pub image: String,
    /// IP lists and ranges, as given (`192.168.0.2,192.168.0.3`, `192.168.0.5-192.168.0.7`).
    pub masters: Option<String>,
    pub nodes: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub private_key: Option<String>,
    pub key_passphrase: Option<String>,
    pub port: Option<u16>,
    pub env: Vec<String>,
    pub cmd_args: Vec<String>,
    pub cluster_name: Option<String>,
}

impl RunRequest {
    fn ssh(&self) -> Mapping {
        let mut ssh = Mapping::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                ssh.insert(k.into(), v.into());
            }
        };
        put("user", self.user.clone());
        put("passwd", self.password.clone());
        put("pk", self.private_key.clone());
        put("pkPasswd", self.key_passphrase.clone());
        put("port", self.port.map(|p| p.to_string()));
        ssh
    }
}

/// The Clusterfile `run` keeps for `cluster`; the name must be a cluster name (`a-z0-9-.`), so that it
/// never leads out of the state's directory.
pub fn clusterfile_path(ws: &Workspace, cluster: &str) -> Result<PathBuf> {
    if !sealer_engine::clusterfile::rules::is_rfc1123_subdomain(cluster) || cluster.split('.').any(str::is_empty) {
        bail!("cluster name `{cluster}`: names are lowercase RFC 1123 subdomains (`a-z0-9-.`)");
    }
    Ok(ws.state.local_dir().join(cluster).join("Clusterfile"))
}

/// What `run` acts on, found and checked from the flags and the state alone: nothing here needs the image,
/// so a mistake in the flags is reported before anything is pulled.
pub struct Target {
    pub(super) cluster: String,
    pub(super) path: PathBuf,
    /// The Clusterfile `run` kept for the cluster, if any.
    pub(super) previous: Option<String>,
    /// The Clusterfile the flags mean for a new cluster (it parses); `None` when the state has the cluster.
    pub(super) new_text: Option<String>,
}

/// What `run` is about to do.
pub struct Prepared {
    pub cluster: String,
    pub path: PathBuf,
    /// The Clusterfile before (`None` for a new cluster): put back when nothing was applied.
    pub previous: Option<String>,
    pub text: String,
    /// The image is an application delivered to an existing cluster.
    pub application: bool,
    /// The application was not in `spec.apps` before this run.
    pub joined: bool,
}

/// An image with no Kubernetes of its own (`FROM scratch`: manifests, charts, container images, CMDs)
/// is an application: it needs a cluster to run on.
pub fn is_application(ws: &Workspace, image: &str) -> Result<bool> {
    let image = ws.images().get(image)?;
    Ok(!image.rootfs.join("bin/kubeadm").exists())
}

/// A host list as given; an empty one (`-n ""`, as scripts pass an unset variable) lists no hosts.
fn listed(flag: &Option<String>) -> Option<&str> {
    flag.as_deref().filter(|list| !list.trim().is_empty())
}

fn expand(list: &str, flag: &str) -> Result<Vec<IpAddr>> {
    let mut budget = sealer_engine::clusterfile::MAX_ADDRESSES_PER_FILE;
    sealer_engine::clusterfile::expand_list(list, &mut budget).map_err(|e| err!("{flag} `{list}`: {e}"))
}

/// The cluster `run` acts on: `--cluster-name`, else the one cluster the state holds, else `my-cluster`.
pub fn cluster_name(ws: &Workspace, req: &RunRequest) -> Result<String> {
    if let Some(name) = &req.cluster_name {
        return Ok(name.clone());
    }
    let clusters = match ws.state.open_read_only()? {
        Some(store) => store.clusters()?,
        None => Vec::new(),
    };
    Ok(match clusters.as_slice() {
        [only] => only.clone(),
        _ => DEFAULT_CLUSTER.to_string(),
    })
}

/// The cluster `req` acts on and everything its flags say that does not depend on the image — the cluster
/// name, env, the IP lists, and for a new cluster the whole Clusterfile they mean — checked before the
/// image is pulled: a typo in an IP is reported as such, not as whatever the registry answers.
pub fn target(ws: &Workspace, req: &RunRequest) -> Result<Target> {
    let cluster = cluster_name(ws, req)?;
    for e in &req.env {
        if !e.contains('=') {
            bail!("--env `{e}` is not KEY=VALUE");
        }
    }
    let path = clusterfile_path(ws, &cluster)?;
    let exists = match ws.state.open_read_only()? {
        Some(store) => store.load(&cluster)?.is_some_and(|s| !s.resources.is_empty()),
        None => false,
    };
    let previous = std::fs::read_to_string(&path).ok();
    let new_text = if exists {
        // What the flags may add to an existing cluster depends on the image (hosts, or an application);
        // the addresses they give are checked now all the same.
        for (list, flag) in [(listed(&req.masters), "--masters"), (listed(&req.nodes), "--nodes")] {
            if let Some(list) = list {
                expand(list, flag)?;
            }
        }
        None
    } else {
        let text = new_clusterfile(&cluster, req)?;
        if let Err(diagnostics) = sealer_engine::parse(&path.display().to_string(), &text) {
            // The file is not written yet: its lines and columns would point nowhere, its fields do.
            let problems: Vec<String> = diagnostics
                .errors()
                .map(|d| {
                    let field = d.location.field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default();
                    let value = d.value.as_deref().map(|v| format!(" (value `{v}`)")).unwrap_or_default();
                    format!("{field}{}{value}", d.message)
                })
                .collect();
            bail!("the flags make an invalid Clusterfile: {}", problems.join("; "));
        }
        Some(text)
    };
    Ok(Target { cluster, path, previous, new_text })
}

/// Writes the Clusterfile `req` means for the cluster of `target` (new, scaled up, or with one more
/// application); the image must be in the local store.
pub fn prepare(ws: &Workspace, req: &RunRequest, target: Target) -> Result<Prepared> {
    let Target { cluster, path, previous, new_text } = target;
    let application = is_application(ws, &req.image)?;
    let text = match (new_text, &previous) {
        (Some(_), _) if application => bail!(
            "`{}` is an application image (no Kubernetes of its own): run it on a cluster; there is no cluster \
             `{cluster}` in the state",
            req.image
        ),
        (Some(text), _) => text,
        (None, None) => {
            let what = if application {
                format!("add `{}` to `spec.apps` of your Clusterfile and run `sealer apply -f` on it", req.image)
            } else {
                "edit your Clusterfile and run `sealer apply -f` on it".to_string()
            };
            bail!("cluster `{cluster}` was not made by `sealer run` (its Clusterfile is yours): {what}")
        }
        (None, Some(text)) => update_clusterfile(text, req, application)
            .with_context(|| format!("cluster `{cluster}` ({})", path.display()))?,
    };
    let joined = application && !previous.as_deref().is_some_and(|p| lists_app(p, &req.image));
    Ok(Prepared { cluster, path, previous, text, application, joined })
}

impl Prepared {
    /// An edit of the kept Clusterfile of `cluster` (`sealer delete`, `sealer cert`): `previous` comes back
    /// when the apply changes nothing.
    fn edit(cluster: &str, path: PathBuf, previous: String, text: String) -> Prepared {
        Prepared {
            cluster: cluster.to_string(),
            path,
            previous: Some(previous),
            text,
            application: false,
            joined: false,
        }
    }

    /// Writes the Clusterfile (mode 0600: it may hold the ssh password as the user gave it).
    pub fn write(&self) -> Result<()> {
        write_private(&self.path, &self.text)
    }

    /// Puts the Clusterfile back as it was (nothing was applied).
    pub fn restore(&self) -> Result<()> {
        match &self.previous {
            Some(text) => write_private(&self.path, text),
            None => Ok(std::fs::remove_file(&self.path)?),
        }
    }
}

/// The Clusterfile holds the ssh password as given: 0600 in a 0700 directory, whole or not at all.
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    sealer_providers::private::write_private(path, text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn group(ips: &str, role: &str, ssh: Option<Mapping>) -> Value {
    let mut g = Mapping::new();
    let items: Vec<Value> = ips.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Value::from).collect();
    g.insert("ips".into(), Value::Sequence(items));
    g.insert("roles".into(), Value::Sequence(vec![role.into()]));
    if let Some(ssh) = ssh.filter(|s| !s.is_empty()) {
        g.insert("ssh".into(), Value::Mapping(ssh));
    }
    Value::Mapping(g)
}

fn new_clusterfile(cluster: &str, req: &RunRequest) -> Result<String> {
    let Some(masters) = listed(&req.masters) else {
        bail!(
            "there is no cluster `{cluster}` in the state: a new cluster needs --masters (-m), the IPs of its masters \
             (an application image runs on an existing cluster)"
        );
    };
    let nodes = listed(&req.nodes);
    let mut seen = BTreeSet::new();
    for (list, flag) in [(Some(masters), "--masters"), (nodes, "--nodes")] {
        let Some(list) = list else { continue };
        for ip in expand(list, flag)? {
            if !seen.insert(ip) {
                bail!("{ip} is given twice in --masters and --nodes");
            }
        }
    }
    let mut spec = Mapping::new();
    spec.insert("image".into(), req.image.clone().into());
    let ssh = req.ssh();
    if !ssh.is_empty() {
        spec.insert("ssh".into(), Value::Mapping(ssh));
    }
    if !req.env.is_empty() {
        spec.insert("env".into(), Value::Sequence(req.env.iter().map(|e| Value::from(e.clone())).collect()));
    }
    if !req.cmd_args.is_empty() {
        spec.insert("cmd_args".into(), Value::Sequence(req.cmd_args.iter().map(|e| Value::from(e.clone())).collect()));
    }
    let mut hosts = vec![group(masters, "master", None)];
    if let Some(nodes) = nodes {
        hosts.push(group(nodes, "node", None));
    }
    spec.insert("hosts".into(), Value::Sequence(hosts));
    let mut doc = Mapping::new();
    doc.insert("apiVersion".into(), "sealer.cloud/v2".into());
    doc.insert("kind".into(), "Cluster".into());
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), cluster.into());
    doc.insert("metadata".into(), Value::Mapping(metadata));
    doc.insert("spec".into(), Value::Mapping(spec));
    Ok(format!(
        "# Written by `sealer run`; `sealer apply -f` of this file does what the run did.\n{}",
        serde_yaml::to_string(&doc)?
    ))
}

/// The hosts a kept Clusterfile declares, by IP, with their role, as sealer reads the file (`roles:
/// [node, master]`, `control-plane` and `worker` mean what they mean to `apply`).
fn declared_hosts(text: &str) -> Result<BTreeMap<IpAddr, String>> {
    let parsed = sealer_engine::parse("the kept Clusterfile", text).map_err(|diagnostics| {
        let first = diagnostics.errors().next().map(ToString::to_string).unwrap_or_default();
        err!("the kept Clusterfile is not valid: {first}")
    })?;
    Ok(parsed.clusterfile.cluster.hosts.iter().map(|h| (h.ip, h.role.as_str().to_string())).collect())
}

/// The kept Clusterfile with what `req` adds: hosts (never removed or changed), or an application.
/// Whether the Cluster document of `text` lists `image` in `spec.apps` (however the file is written).
fn lists_app(text: &str, image: &str) -> bool {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|de| <Value as serde::Deserialize>::deserialize(de).ok())
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Cluster"))
        .filter_map(|d| d.get("spec")?.get("apps")?.as_sequence().cloned())
        .any(|apps| apps.iter().any(|a| a.as_str() == Some(image)))
}

fn update_clusterfile(text: &str, req: &RunRequest, application: bool) -> Result<String> {
    let mut docs = yaml_docs(text)?;
    let cluster = docs
        .iter_mut()
        .find(|d: &&mut Value| d.get("kind").and_then(Value::as_str) == Some("Cluster"))
        .context("the kept Clusterfile has no Cluster document")?;
    if cluster.get("apiVersion").and_then(Value::as_str) != Some("sealer.cloud/v2") {
        bail!("the kept Clusterfile is not sealer.cloud/v2");
    }
    let spec = cluster.get_mut("spec").and_then(Value::as_mapping_mut).context("the kept Clusterfile has no spec")?;
    let current_image = spec.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
    if application {
        if listed(&req.masters).is_some() || listed(&req.nodes).is_some() {
            bail!("`{}` is an application image: give it without --masters or --nodes", req.image);
        }
        let apps = spec.entry("apps".into()).or_insert_with(|| Value::Sequence(Vec::new()));
        let list = apps.as_sequence_mut().context("spec.apps is not a list")?;
        if !list.iter().any(|a| a.as_str() == Some(req.image.as_str())) {
            list.push(req.image.clone().into());
        }
        return render(&docs);
    }
    if req.image != current_image {
        bail!(
            "it runs `{current_image}`, not `{}`: change `spec.image` in its Clusterfile and run `sealer apply -f` \
             for an upgrade",
            req.image
        );
    }
    let declared = declared_hosts(text)?;
    let mut added = BTreeMap::new();
    for (list, flag, role) in [(listed(&req.masters), "--masters", "master"), (listed(&req.nodes), "--nodes", "node")] {
        let Some(list) = list else { continue };
        let mut new = Vec::new();
        for ip in expand(list, flag)? {
            match declared.get(&ip) {
                Some(r) if r == role => {}
                Some(r) => bail!("{ip} is a {r} of the cluster, not a {role}: `sealer run` only adds hosts"),
                None => new.push(ip.to_string()),
            }
        }
        if !new.is_empty() {
            added.insert(role, new);
        }
    }
    // Env and CMD arguments are the whole cluster's: on an existing cluster they are an edit of its
    // Clusterfile, never a side effect of adding hosts. ssh flags only reach the hosts being added.
    if !req.env.is_empty() || !req.cmd_args.is_empty() {
        bail!("`sealer run` only adds hosts to an existing cluster; change env and cmd_args in its Clusterfile");
    }
    if added.is_empty() && (req.user.is_some() || req.port.is_some()) {
        bail!("`sealer run` only adds hosts to an existing cluster; ssh flags apply to the hosts it adds");
    }
    let hosts = spec.entry("hosts".into()).or_insert_with(|| Value::Sequence(Vec::new()));
    let hosts = hosts.as_sequence_mut().context("spec.hosts is not a list")?;
    for (role, ips) in added {
        // New hosts reach ssh with the flags given now, else with the cluster's `spec.ssh`.
        hosts.push(group(&ips.join(","), role, Some(req.ssh())));
    }
    render(&docs)
}

/// The kept Clusterfile of a cluster `run` made and the state holds: its path and text.
fn kept(ws: &Workspace, cluster: &str, verb: &str) -> Result<(PathBuf, String)> {
    let in_state = match ws.state.open_read_only()? {
        Some(store) => store.load(cluster)?.is_some_and(|s| !s.resources.is_empty()),
        None => false,
    };
    if !in_state {
        bail!("there is no cluster `{cluster}` in the state: `sealer {verb}` acts on a cluster `sealer run` made");
    }
    let path = clusterfile_path(ws, cluster)?;
    let text = std::fs::read_to_string(&path).map_err(|_| {
        err!(
            "cluster `{cluster}` was not made by `sealer run` (its Clusterfile is yours): edit it and run `sealer \
             apply -f` on it"
        )
    })?;
    Ok((path, text))
}

fn yaml_docs(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        docs.push(serde::Deserialize::deserialize(de).context("the kept Clusterfile is not YAML")?);
    }
    Ok(docs)
}

/// The cluster image a cluster `run` made runs (`sealer join` adds hosts with it).
pub fn kept_image(ws: &Workspace, cluster: &str) -> Result<String> {
    let (path, text) = kept(ws, cluster, "join")?;
    yaml_docs(&text)?
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("Cluster"))
        .and_then(|d| d.get("spec")?.get("image")?.as_str().map(str::to_string))
        .with_context(|| format!("`{}` names no `spec.image`", path.display()))
}

/// The kept Clusterfile of `cluster` without the hosts `masters` and `nodes` list (each must be a host of
/// that role); `sealer delete` applies it. Hosts of a group stay in it one address each.
pub fn prepare_delete(ws: &Workspace, cluster: &str, masters: Option<&str>, nodes: Option<&str>) -> Result<Prepared> {
    let (path, text) = kept(ws, cluster, "delete")?;
    let declared = declared_hosts(&text)?;
    let mut docs = yaml_docs(&text)?;
    let doc = docs
        .iter_mut()
        .find(|d: &&mut Value| d.get("kind").and_then(Value::as_str) == Some("Cluster"))
        .context("the kept Clusterfile has no Cluster document")?;
    let spec = doc.get_mut("spec").and_then(Value::as_mapping_mut).context("the kept Clusterfile has no spec")?;
    let mut removed = BTreeSet::new();
    for (list, flag, role) in [
        (listed(&masters.map(str::to_string)), "--masters", "master"),
        (listed(&nodes.map(str::to_string)), "--nodes", "node"),
    ] {
        let Some(list) = list else { continue };
        for ip in expand(list, flag)? {
            match declared.get(&ip) {
                Some(r) if r == role => {
                    removed.insert(ip);
                }
                Some(r) => bail!("{ip} is a {r} of cluster `{cluster}`, not a {role}"),
                None => bail!("{ip} is not a host of cluster `{cluster}`"),
            }
        }
    }
    if removed.is_empty() {
        bail!("`sealer delete` needs the hosts to remove (--masters, --nodes), or --all for the whole cluster");
    }
    if declared.iter().all(|(ip, role)| role != "master" || removed.contains(ip)) {
        bail!("that would leave cluster `{cluster}` without a master: `sealer delete --all` deletes the cluster");
    }
    let groups = spec.get_mut("hosts").and_then(Value::as_sequence_mut).context("spec.hosts is not a list")?;
    for group in groups.iter_mut() {
        let Some(ips) = group.get_mut("ips").and_then(Value::as_sequence_mut) else { continue };
        let mut kept_ips = Vec::new();
        for item in ips.iter() {
            for ip in expand(item.as_str().unwrap_or_default(), "spec.hosts.ips")? {
                if !removed.contains(&ip) {
                    kept_ips.push(Value::from(ip.to_string()));
                }
            }
        }
        *ips = kept_ips;
    }
    groups.retain(|g| g.get("ips").and_then(Value::as_sequence).is_none_or(|ips| !ips.is_empty()));
    let text_after = render(&docs)?;
    Ok(Prepared::edit(cluster, path, text, text_after))
}

/// The kept Clusterfile of `cluster` with `alt_names` (IP addresses or DNS names, comma separated) added
/// to its kubeadm ClusterConfiguration's `apiServer.certSANs` (a ClusterConfiguration document is added
/// when it has none); `sealer cert` applies it, which makes every master's serving certificate again.
pub fn prepare_cert(ws: &Workspace, cluster: &str, alt_names: &str) -> Result<Prepared> {
    let names = cert_names(alt_names)?;
    let (path, text) = kept(ws, cluster, "cert")?;
    let text_after = with_cert_names(&text, names)?;
    Ok(Prepared::edit(cluster, path, text, text_after))
}

/// The Clusterfile `text` with `names` in its kubeadm ClusterConfiguration's `apiServer.certSANs`.
fn with_cert_names(text: &str, names: Vec<String>) -> Result<String> {
    let mut docs = yaml_docs(text)?;
    let is_cluster_configuration = |d: &Value| {
        d.get("kind").and_then(Value::as_str) == Some("ClusterConfiguration")
            && d.get("apiVersion").and_then(Value::as_str).is_some_and(|v| v.starts_with("kubeadm.k8s.io/"))
    };
    if !docs.iter().any(is_cluster_configuration) {
        let mut doc = Mapping::new();
        // sealer writes kubeadm documents in the API version of the cluster's Kubernetes version.
        doc.insert("apiVersion".into(), "kubeadm.k8s.io/v1beta3".into());
        doc.insert("kind".into(), "ClusterConfiguration".into());
        docs.push(Value::Mapping(doc));
    }
    let doc = docs.iter_mut().rev().find(|d| is_cluster_configuration(d)).context("no ClusterConfiguration")?;
    let config = doc.as_mapping_mut().context("the ClusterConfiguration is not a mapping")?;
    // `apiServer:` and `certSANs:` without a value (their children commented out) are absent.
    let api_server = config.entry("apiServer".into()).or_insert(Value::Null);
    if api_server.is_null() {
        *api_server = Value::Mapping(Mapping::new());
    }
    let api_server = api_server.as_mapping_mut().context("the ClusterConfiguration's apiServer is not a mapping")?;
    let sans = api_server.entry("certSANs".into()).or_insert(Value::Null);
    if sans.is_null() {
        *sans = Value::Sequence(Vec::new());
    }
    let sans = sans.as_sequence_mut().context("the ClusterConfiguration's apiServer.certSANs is not a list")?;
    for name in names {
        if !sans.iter().any(|s| s.as_str() == Some(name.as_str())) {
            sans.push(Value::String(name));
        }
    }
    render(&docs)
}

/// `--alt-names`: each an IP address or a DNS name (a leading `*.` allowed), as a certificate names them.
fn cert_names(list: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut bad = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let host = name.strip_prefix("*.").unwrap_or(name);
        let dns = host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if name.parse::<IpAddr>().is_ok() || dns {
            names.push(name.to_string());
        } else {
            bad.push(format!("`{name}`"));
        }
    }
    if !bad.is_empty() {
        bail!("--alt-names: {} is neither an IP address nor a DNS name", bad.join(", "));
    }
    if names.is_empty() {
        bail!("--alt-names: no name given");
    }
    Ok(names)
}

fn render(docs: &[Value]) -> Result<String> {
    let mut out = String::from("# Written by `sealer run`; `sealer apply -f` of this file does what the run did.\n");
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(masters: Option<&str>, nodes: Option<&str>) -> RunRequest {
        RunRequest {
            image: "kubernetes:v1.19.8".into(),
            masters: masters.map(str::to_string),
            nodes: nodes.map(str::to_string),
            password: Some("Secret-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn alt_names_are_ip_addresses_or_dns_names_and_all_bad_ones_are_named() {
        assert_eq!(cert_names("10.0.0.9, api.example.test,*.apps.example.test,::1").unwrap().len(), 4);
        let err = cert_names("ok.example,bad name,-x.example,a..b,$(id)").unwrap_err().to_string();
        for bad in ["`bad name`", "`-x.example`", "`a..b`", "`$(id)`"] {
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(!err.contains("ok.example"), "{err}");
        assert!(cert_names(" , ").unwrap_err().to_string().contains("no name given"));
    }

    #[test]
    fn cert_names_join_the_cluster_configuration_and_leave_every_other_document_as_it_was() {
        let cluster = "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: k:v1.29.1\n  \
                       hosts:\n  - ips: [10.0.0.2]\n    roles: [master]\n";
        let plugin =
            "---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata:\n  name: p\nspec:\n  type: SHELL\n  \
                      action: PostInstall\n  data: echo hi\n";
        let names = || vec!["api.example".to_string(), "10.0.0.9".to_string()];
        let added = with_cert_names(&format!("{cluster}{plugin}"), names()).unwrap();
        let docs = yaml_docs(&added).unwrap();
        assert_eq!(docs.len(), 3, "{added}");
        assert_eq!(docs[1], yaml_docs(plugin).unwrap()[0], "the plugin is kept as it was");
        assert_eq!(docs[2]["kind"], "ClusterConfiguration");
        assert_eq!(docs[2]["apiServer"]["certSANs"], serde_yaml::from_str::<Value>("[api.example, 10.0.0.9]").unwrap());
        // A v1beta2 document with `apiServer:` left empty, and one with SANs already: merged, not repeated.
        let empty =
            format!("{cluster}---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\napiServer:\n");
        let merged = yaml_docs(&with_cert_names(&empty, names()).unwrap()).unwrap();
        assert_eq!(merged[1]["apiVersion"], "kubeadm.k8s.io/v1beta2");
        assert_eq!(merged[1]["apiServer"]["certSANs"].as_sequence().unwrap().len(), 2);
        let again = with_cert_names(&added, names()).unwrap();
        assert_eq!(again, added, "the same names twice change nothing");
        let wrong =
            format!("{cluster}---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer: [a]\n");
        assert!(with_cert_names(&wrong, names()).unwrap_err().to_string().contains("apiServer is not a mapping"));
    }

    #[test]
    fn the_flags_become_a_v2_clusterfile_that_parses_to_the_same_hosts() {
        let text = new_clusterfile("my-cluster", &req(Some("10.0.0.2,10.0.0.3"), Some("10.0.0.5-10.0.0.6"))).unwrap();
        let cf = sealer_engine::parse("Clusterfile", &text).unwrap().clusterfile;
        let hosts: Vec<(String, &str)> = cf.cluster.hosts.iter().map(|h| (h.ip.to_string(), h.role.as_str())).collect();
        assert_eq!(
            hosts,
            [
                ("10.0.0.2".into(), "master"),
                ("10.0.0.3".into(), "master"),
                ("10.0.0.5".into(), "node"),
                ("10.0.0.6".into(), "node")
            ]
        );
        assert_eq!(cf.cluster.name, "my-cluster");
        assert_eq!(cf.cluster.ssh.password.as_ref().map(|p| p.expose()), Some("Secret-1"));
        assert!(new_clusterfile("c", &req(None, Some("10.0.0.5"))).unwrap_err().to_string().contains("--masters"));
        let twice = new_clusterfile("c", &req(Some("10.0.0.2"), Some("10.0.0.2"))).unwrap_err();
        assert!(twice.to_string().contains("given twice"), "{twice}");
    }

    #[test]
    fn masters_without_nodes_make_a_single_node_cluster() {
        // `sealer run dashboard:latest --masters 192.168.0.2`: no -n, or an empty one, means no nodes.
        for nodes in [None, Some(""), Some(" ")] {
            let text = new_clusterfile("c", &req(Some("10.0.0.2"), nodes)).unwrap();
            let cf = sealer_engine::parse("Clusterfile", &text).unwrap().clusterfile;
            let hosts: Vec<(String, &str)> =
                cf.cluster.hosts.iter().map(|h| (h.ip.to_string(), h.role.as_str())).collect();
            assert_eq!(hosts, [("10.0.0.2".to_string(), "master")], "nodes {nodes:?}");
        }
        // On an existing cluster an empty -n adds nothing either.
        let kept = new_clusterfile("c", &req(Some("10.0.0.2"), None)).unwrap();
        assert_eq!(update_clusterfile(&kept, &req(None, Some("")), false).unwrap(), kept);
        let app = RunRequest { image: "nginx-app:1".into(), ..req(None, Some("")) };
        assert!(update_clusterfile(&kept, &app, true).unwrap().contains("nginx-app:1"), "an empty -n is no host");
    }

    #[test]
    fn the_flags_are_checked_before_the_image_is_needed() {
        // A state that does not exist and a home without images: only the flags are read.
        let dir = std::env::temp_dir().join(format!("sealer-run-target-{}", std::process::id()));
        let ws = Workspace {
            state: sealer_state::StateLocation::parse(&dir.join("state.db").display().to_string()),
            home: dir.join("home"),
            connections: None,
        };
        for (masters, nodes, named) in
            [(Some("10.0.0.999"), None, "10.0.0.999"), (Some("10.0.0.2"), Some("10.0.0.3,10.0.1.999"), "10.0.1.999")]
        {
            let err = target(&ws, &req(masters, nodes)).err().unwrap().to_string();
            assert!(err.contains(&format!("`{named}` is not an IP address")), "{err}");
        }
        let bad_user = RunRequest { user: Some("root; reboot".into()), ..req(Some("10.0.0.2"), None) };
        let err = target(&ws, &bad_user).err().unwrap().to_string();
        assert!(err.contains("the flags make an invalid Clusterfile") && err.contains("spec.ssh.user"), "{err}");
        let single = target(&ws, &req(Some("10.0.0.2"), None)).unwrap();
        assert!(single.new_text.is_some_and(|t| !t.contains("node")));
        assert!(!dir.exists(), "checking the flags wrote nothing");
    }

    #[test]
    fn on_an_existing_cluster_flags_only_add_hosts_and_applications() {
        let kept = new_clusterfile("c", &req(Some("10.0.0.2"), Some("10.0.0.3,10.0.0.4"))).unwrap();
        let grown = update_clusterfile(&kept, &req(None, Some("10.0.0.3-10.0.0.5")), false).unwrap();
        let cf = sealer_engine::parse("Clusterfile", &grown).unwrap().clusterfile;
        assert_eq!(cf.cluster.hosts.len(), 4);
        assert_eq!(cf.cluster.hosts[3].ip.to_string(), "10.0.0.5");
        assert_eq!(update_clusterfile(&grown, &req(None, Some("10.0.0.5")), false).unwrap(), grown, "nothing new");
        let role = update_clusterfile(&kept, &req(Some("10.0.0.3"), None), false).unwrap_err();
        assert!(role.to_string().contains("10.0.0.3 is a node of the cluster, not a master"), "{role}");
        let env = RunRequest { env: vec!["A=1".into()], ..req(None, Some("10.0.0.9")) };
        assert!(update_clusterfile(&kept, &env, false).unwrap_err().to_string().contains("change env and cmd_args"));
        let other = RunRequest { image: "kubernetes:v1.20.0".into(), ..req(None, None) };
        assert!(update_clusterfile(&kept, &other, false).unwrap_err().to_string().contains("for an upgrade"));
        let app = RunRequest { image: "nginx-app:1".into(), ..Default::default() };
        let with_app = update_clusterfile(&kept, &app, true).unwrap();
        assert!(
            with_app.contains("apps:\n  - nginx-app:1") || with_app.contains("apps:\n    - nginx-app:1"),
            "{with_app}"
        );
        assert_eq!(update_clusterfile(&with_app, &app, true).unwrap(), with_app, "an application is listed once");
        assert!(lists_app(&with_app, "nginx-app:1") && !lists_app(&kept, "nginx-app:1"));
        let by_hand = format!("# mine\n{}", with_app.replace("apps:", "apps:  # the apps"));
        assert!(lists_app(&by_hand, "nginx-app:1"), "comments and layout do not matter");
    }
}

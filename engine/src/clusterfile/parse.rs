//! Clusterfile text → [`Clusterfile`], or every problem found in it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Deserialize;
use serde_yaml::Value;

use super::reader::{child_path, scalar_text, DocReader};
use super::rules;
use super::*;
use crate::diagnostic::{quoted_value, Diagnostic, Diagnostics, Location, Severity};
use crate::source_map::{self, DocumentPositions};

const CLUSTER_V2: &str = "sealer.cloud/v2";
const CLUSTER_V1: &str = "sealer.aliyun.com/v1alpha1";
/// Later sealer releases name the same v2 Cluster form `sealer.io/v2`.
const CLUSTER_V2_SEALER_IO: &str = "sealer.io/v2";
const SEALER_API_VERSIONS: &[&str] = &[CLUSTER_V1, CLUSTER_V2, CLUSTER_V2_SEALER_IO, "sealer.io/v1"];
const DEFAULT_CLUSTER_NAME: &str = "my-cluster";

/// A Clusterfile that has no errors, with the warnings found on the way.
#[derive(Debug)]
pub struct Parsed {
    pub clusterfile: Clusterfile,
    pub warnings: Diagnostics,
}

/// The `spec.on` of a plugin, resolved to hosts once every document has been read.
enum Selector {
    All,
    Items(Vec<SelectorItem>),
    Labels(Vec<(String, String)>),
}

enum SelectorItem {
    Role(Role),
    Ips(Vec<IpAddr>),
}

struct PendingPlugin {
    document: usize,
    plugin: Plugin,
    selector: Selector,
    on_text: String,
}

/// A line of HOSTNAME, LABEL or TAINT plugin data, kept until the host list is known.
struct DataLine {
    document: usize,
    path: String,
    line_no: usize,
    ips: Vec<IpAddr>,
    rest: String,
}

#[derive(Default)]
struct Builder {
    cluster: Option<(usize, Cluster)>,
    /// The document that declared each Plugin and Config name: a name is an address, so it is unique.
    names: HashMap<(&'static str, String), usize>,
    plugins: Vec<PendingPlugin>,
    hostname_lines: Vec<DataLine>,
    label_lines: Vec<DataLine>,
    taint_lines: Vec<DataLine>,
    configs: Vec<ConfigFile>,
    kubeadm: Vec<KubeadmDocument>,
}

impl Builder {
    /// Records `name` for `kind`; a name declared before is an error naming both documents.
    fn unique_name(&mut self, r: &mut DocReader<'_>, kind: &'static str, name: &str) -> bool {
        match self.names.entry((kind, name.to_string())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let message = format!(
                    "{kind} `{name}` is declared in documents {} and {}: names must be unique",
                    first.get(),
                    r.document
                );
                r.error("metadata.name", Some(name), message);
                false
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r.document);
                true
            }
        }
    }
}

/// The most hosts a Clusterfile may declare (Kubernetes itself is tested up to 5,000 nodes).
pub const MAX_HOSTS: usize = 10_000;

/// The largest Clusterfile read: 4 MiB holds well over the 10,000 hosts a file may declare.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// A file's YAML documents with the positions of their fields, read in bounded time and memory; a file
/// over the size limit, or whose YAML is too deep or expands too far, is one error instead. Documents that
/// do not parse add their error to `diagnostics`.
fn load(
    file: &str,
    text: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<(Vec<Value>, Vec<DocumentPositions>), Box<Diagnostic>> {
    let refuse = |message: String, line: Option<usize>, column: Option<usize>| {
        let location = Location { file: file.into(), document: None, field: None, line, column };
        Box::new(Diagnostic { severity: Severity::Error, location, message, value: None })
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(refuse(
            format!("the file is {} bytes, over the limit of {MAX_FILE_BYTES}", text.len()),
            None,
            None,
        ));
    }
    // Depth and alias expansion are bounded before serde builds any value.
    let positions = source_map::index(text)
        .map_err(|e| refuse(e.to_string(), Some(e.position().line), Some(e.position().column)))?;
    Ok((read_documents(file, text, diagnostics), positions))
}

/// Reads every document of one Clusterfile. `file` is only used to name the file in diagnostics.
pub fn parse(file: &str, text: &str) -> Result<Parsed, Diagnostics> {
    let mut diagnostics = Vec::new();
    let (documents, positions) = load(file, text, &mut diagnostics).map_err(|d| finish(vec![*d]))?;
    let addresses = std::cell::Cell::new(super::MAX_ADDRESSES_PER_FILE);
    let readers = Readers { file, addresses: &addresses, positions: positions.iter().map(Some).collect() };
    let mut builder = Builder::default();
    for (index, value) in documents.iter().enumerate().filter(|(_, v)| !v.is_null()) {
        read_document(&mut readers.reader(index + 1, &mut diagnostics), value, &mut builder);
    }
    let Some((cluster_document, cluster)) = builder.cluster.take() else {
        if !diagnostics.iter().any(|d| d.severity == Severity::Error) {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                location: Location { file: file.into(), document: None, field: None, line: None, column: None },
                message: format!("no `Cluster` document (apiVersion `{CLUSTER_V2}` or `{CLUSTER_V1}`) in the file"),
                value: None,
            });
        }
        return Err(finish(diagnostics));
    };
    if cluster.hosts.len() > MAX_HOSTS {
        let message = format!("{} hosts, over the limit of {MAX_HOSTS} a cluster may have", cluster.hosts.len());
        readers.reader(cluster_document, &mut diagnostics).error("spec", None, message);
        return Err(finish(diagnostics));
    }
    let members: HashMap<IpAddr, Role> = cluster.hosts.iter().map(|h| (h.ip, h.role)).collect();
    let hostnames = resolve_hostnames(&builder.hostname_lines, &members, &mut diagnostics, &readers);
    let labels = resolve_labels(&builder.label_lines, &members, &mut diagnostics, &readers);
    let taints = resolve_taints(&builder.taint_lines, &members, &mut diagnostics, &readers);
    let mut plugins = Vec::new();
    for pending in builder.plugins {
        let mut r = readers.reader(pending.document, &mut diagnostics);
        if let Some(hosts) = resolve_selector(&mut r, &pending, &cluster) {
            plugins.push(Plugin { hosts, ..pending.plugin });
        }
    }
    let diagnostics = finish(diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    let mut clusterfile =
        Clusterfile { cluster, plugins, hostnames, labels, taints, configs: builder.configs, kubeadm: builder.kubeadm };
    // For a new cluster; plans resolve again with the labels the cluster has, and warn then.
    let version = crate::kubeadm::kubernetes_version(&clusterfile, &[]);
    clusterfile.select_by_labels(&BTreeMap::new(), &version);
    Ok(Parsed { clusterfile, warnings: diagnostics })
}

/// The most plugin files an image's `plugin/` and `plugins/` directories may hold.
pub const MAX_IMAGE_PLUGIN_FILES: usize = 256;

/// Joins the Plugin documents a cluster image carries (`files`: each YAML file of its `plugin/` and
/// `plugins/` directories, as (path in the image, text)) to the Clusterfile's plugins, resolving their
/// `spec.on` against its hosts. A Clusterfile plugin with the same `metadata.name` replaces the image's.
/// Returns the names of the plugins that came from the image, and the warnings; every problem of every
/// file at once otherwise.
pub fn add_image_plugins(
    cf: &mut Clusterfile,
    files: &[(String, String)],
) -> Result<(BTreeSet<String>, Diagnostics), Diagnostics> {
    let mut diagnostics = Vec::new();
    let mut added: BTreeMap<String, String> = BTreeMap::new();
    let mut from_image = Vec::new();
    let declared: BTreeSet<String> = cf.plugins.iter().map(|p| p.name.clone()).collect();
    for (file, text) in files.iter().take(MAX_IMAGE_PLUGIN_FILES) {
        let (documents, positions) = match load(file, text, &mut diagnostics) {
            Ok(loaded) => loaded,
            Err(d) => {
                diagnostics.push(*d);
                continue;
            }
        };
        let addresses = std::cell::Cell::new(super::MAX_ADDRESSES_PER_FILE);
        let readers = Readers { file, addresses: &addresses, positions: positions.iter().map(Some).collect() };
        let mut builder = Builder::default();
        for (index, value) in documents.iter().enumerate().filter(|(_, v)| !v.is_null()) {
            let mut r = readers.reader(index + 1, &mut diagnostics);
            if value.get("kind").and_then(Value::as_str) != Some("Plugin") {
                r.warning(
                    "kind",
                    "not a Plugin document: an image's plugin directory is read for Plugin documents only",
                );
                continue;
            }
            let api_version = r.string(value.get("apiVersion"), "apiVersion").unwrap_or_default();
            check_sealer_api_version(&mut r, &api_version, "Plugin");
            let lines = builder.hostname_lines.len() + builder.label_lines.len() + builder.taint_lines.len();
            read_plugin(&mut r, value, &mut builder);
            if builder.hostname_lines.len() + builder.label_lines.len() + builder.taint_lines.len() > lines {
                r.error("spec.type", None, "an image cannot carry HOSTNAME, LABEL or TAINT plugins: their data names the hosts of one cluster; declare them in the Clusterfile");
            }
        }
        for pending in builder.plugins {
            let mut r = readers.reader(pending.document, &mut diagnostics);
            let name = pending.plugin.name.clone();
            if let Some(first) = added.get(&name) {
                r.error(
                    "metadata.name",
                    Some(&name),
                    format!("plugin `{name}` is also declared in `{first}`: names must be unique"),
                );
                continue;
            }
            added.insert(name.clone(), file.clone());
            if declared.contains(&name) {
                continue;
            }
            if let Some(hosts) = resolve_selector(&mut r, &pending, &cf.cluster) {
                from_image.push(Plugin { hosts, ..pending.plugin });
            }
        }
    }
    if files.len() > MAX_IMAGE_PLUGIN_FILES {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: Location {
                file: files[MAX_IMAGE_PLUGIN_FILES].0.clone(),
                document: None,
                field: None,
                line: None,
                column: None,
            },
            message: format!(
                "the image carries {} plugin files, over the limit of {MAX_IMAGE_PLUGIN_FILES}",
                files.len()
            ),
            value: None,
        });
    }
    let diagnostics = finish(diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    let names = from_image.iter().map(|p| p.name.clone()).collect();
    cf.plugins.extend(from_image);
    Ok((names, diagnostics))
}

fn finish(diagnostics: Vec<Diagnostic>) -> Diagnostics {
    let mut d = Diagnostics(diagnostics);
    d.sort_and_cap();
    d
}

fn read_documents(file: &str, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<Value> {
    let mut documents = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(de) {
            Ok(value) => documents.push(value),
            Err(e) => {
                let loc = e.location();
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    location: Location {
                        file: file.into(),
                        document: Some(index + 1),
                        field: None,
                        line: loc.as_ref().map(|l| l.line()),
                        column: loc.as_ref().map(|l| l.column()),
                    },
                    message: format!("invalid YAML: {}", without_values(strip_location(&e.to_string()))),
                    value: None,
                });
                break;
            }
        }
    }
    documents
}

/// serde_yaml quotes the offending scalar in type errors (`invalid value: string "…", expected an
/// integer`); it may be a password (`passwd: !!int …`), so the message says only that it was a string.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let quoted = &rest[at + "string \"".len()..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        match end {
            Some(i) => rest = &quoted[i + 1..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// serde_yaml appends " at line L column C" to its messages; the location is reported separately.
fn strip_location(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

fn read_document(r: &mut DocReader<'_>, value: &Value, b: &mut Builder) {
    if !matches!(value, Value::Mapping(_)) {
        r.error("", scalar_text(value).as_deref(), "a Clusterfile document must be a mapping");
        return;
    }
    let api_version = r.string(value.get("apiVersion"), "apiVersion").unwrap_or_default();
    let Some(kind) = r.string(value.get("kind"), "kind") else {
        r.error("kind", None, "missing `kind`");
        return;
    };
    match kind.as_str() {
        "Cluster" => {
            if let Some(cluster) = read_cluster(r, value, &api_version) {
                if let Some((first, _)) = &b.cluster {
                    r.error(
                        "kind",
                        Some("Cluster"),
                        format!("a second `Cluster` document (the first is document {first})"),
                    );
                } else {
                    b.cluster = Some((r.document, cluster));
                }
            }
        }
        "Plugin" => {
            check_sealer_api_version(r, &api_version, &kind);
            read_plugin(r, value, b);
        }
        "Config" => {
            check_sealer_api_version(r, &api_version, &kind);
            if let Some(config) = read_config(r, value) {
                if b.unique_name(r, "Config", &config.name) {
                    b.configs.push(config);
                }
            }
        }
        "InitConfiguration"
        | "ClusterConfiguration"
        | "JoinConfiguration"
        | "KubeProxyConfiguration"
        | "KubeletConfiguration" => read_kubeadm(r, value, api_version, kind, b),
        other => r.error(
            "kind",
            Some(other),
            // Both are whatever the document holds: quoted as values are, never in full.
            format!(
                "unknown kind `{}` (apiVersion `{}`); expected Cluster, Plugin, Config or a kubeadm configuration kind",
                quoted_value(other),
                quoted_value(&api_version)
            ),
        ),
    }
}

fn check_sealer_api_version(r: &mut DocReader<'_>, api_version: &str, kind: &str) {
    if !SEALER_API_VERSIONS.contains(&api_version) {
        r.error(
            "apiVersion",
            Some(api_version),
            format!("unknown apiVersion for kind `{kind}`; expected one of {}", SEALER_API_VERSIONS.join(", ")),
        );
    }
}

fn metadata_name(r: &mut DocReader<'_>, doc: &Value) -> Option<String> {
    let name = r.string(doc.get("metadata").and_then(|m| m.get("name")), "metadata.name")?;
    if !rules::is_rfc1123_subdomain(&name) {
        r.error("metadata.name", Some(&name), "names must be lowercase RFC 1123 subdomains (`a-z0-9-.`)");
        return None;
    }
    Some(name)
}

/// A Plugin's or Config's name, as sealer takes them (`MyShell`, `label_nodes.so`): letters of either case,
/// digits, `.`, `_`, `-`. Addresses stay unambiguous: the phase and the IP that follow a name in
/// `plugin.NAME.PHASE.IP` and `config.NAME.IP` are read from the right.
fn object_name(r: &mut DocReader<'_>, doc: &Value) -> Option<String> {
    let name = r.string(doc.get("metadata").and_then(|m| m.get("name")), "metadata.name")?;
    if !rules::is_object_name(&name) {
        r.error("metadata.name", Some(&name), "a name is 1-253 of `A-Za-z0-9._-`, not `.` or `..`");
        return None;
    }
    Some(name)
}

fn read_cluster(r: &mut DocReader<'_>, doc: &Value, api_version: &str) -> Option<Cluster> {
    let v2 = match api_version {
        CLUSTER_V2 | CLUSTER_V2_SEALER_IO => true,
        CLUSTER_V1 => false,
        other => {
            r.error(
                "apiVersion",
                Some(other),
                format!("unknown apiVersion for kind `Cluster`; expected `{CLUSTER_V2}`, `{CLUSTER_V2_SEALER_IO}` or `{CLUSTER_V1}`"),
            );
            return None;
        }
    };
    // A bad name is reported; the rest of the document is still read, so every problem shows at once.
    let name = if doc.get("metadata").and_then(|m| m.get("name")).is_some() {
        metadata_name(r, doc).unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_string())
    } else {
        DEFAULT_CLUSTER_NAME.to_string()
    };
    let empty = Value::Mapping(Default::default());
    let spec = r.mapping(doc.get("spec"), "spec").unwrap_or(&empty);
    let image = match r.string(spec.get("image"), "spec.image") {
        None => {
            r.error("spec.image", None, "missing `spec.image`: the cluster image to install");
            String::new()
        }
        Some(image) if !rules::is_image_reference(&image) => {
            r.error("spec.image", Some(&image), "not a valid image reference");
            image
        }
        Some(image) => image,
    };
    let ssh = read_ssh(r, spec.get("ssh"), "spec.ssh", &Ssh::default());
    let env = read_env(r, spec.get("env"), "spec.env", &BTreeMap::new());
    let cmd_args_key = if spec.get("cmdArgs").is_some() { "cmdArgs" } else { "cmd_args" };
    let cmd_args =
        r.string_list(spec.get(cmd_args_key), &format!("spec.{cmd_args_key}")).into_iter().map(|(_, s)| s).collect();
    let mut cluster = Cluster {
        name,
        api_version: api_version.to_string(),
        image,
        cmd_args,
        env,
        hosts: Vec::new(),
        pod_cidr: None,
        svc_cidr: None,
        cert_sans: Vec::new(),
        ssh: ssh.clone(),
        apps: Vec::new(),
    };
    let mut seen: HashMap<IpAddr, String> = HashMap::new();
    if v2 {
        r.warn_unknown_keys(spec, "spec", &["image", "ssh", "env", "cmd_args", "cmdArgs", "hosts", "apps"]);
        read_v2_hosts(r, spec, &mut cluster, &ssh, &mut seen);
        cluster.apps = read_apps(r, spec.get("apps"));
        if cluster.hosts.is_empty() && spec.get("hosts").is_none_or(|h| h.is_null()) {
            r.error("spec.hosts", None, "missing `spec.hosts`: at least one master is needed");
        }
    } else {
        r.warn_unknown_keys(
            spec,
            "spec",
            &["image", "ssh", "env", "cmd_args", "cmdArgs", "masters", "nodes", "network", "certSANS", "provider"],
        );
        read_v1_hosts(r, spec, &mut cluster, &ssh, &mut seen);
    }
    if !cluster.hosts.is_empty() && cluster.first_master().is_none() {
        let field = if v2 { "spec.hosts" } else { "spec.masters.ipList" };
        r.error(field, None, "no host has the role `master`; a cluster needs at least one");
    }
    Some(cluster)
}

/// `spec.apps`: image references, one application each (two with the same name would be one `app.NAME`).
fn read_apps(r: &mut DocReader<'_>, value: Option<&Value>) -> Vec<String> {
    let mut apps: Vec<String> = Vec::new();
    for (path, image) in r.string_list(value, "spec.apps") {
        if !rules::is_image_reference(&image) {
            r.error(&path, Some(&image), "not a valid image reference");
        } else if let Some(other) = apps.iter().find(|a| app_name(a) == app_name(&image)) {
            let message =
                format!("application `{}` is already `{other}`: one image per application name", app_name(&image));
            r.error(&path, Some(&image), message);
        } else {
            apps.push(image);
        }
    }
    apps
}

fn read_v2_hosts(
    r: &mut DocReader<'_>,
    spec: &Value,
    cluster: &mut Cluster,
    ssh: &Ssh,
    seen: &mut HashMap<IpAddr, String>,
) {
    for (g, group) in r.sequence(spec.get("hosts"), "spec.hosts").iter().enumerate() {
        let path = format!("spec.hosts[{g}]");
        let Some(group) = r.mapping(Some(group), &path) else {
            r.error(&path, None, "a host group needs `ips` and `roles`");
            continue;
        };
        r.warn_unknown_keys(group, &path, &["ips", "roles", "ssh", "env"]);
        let roles = r.string_list(group.get("roles"), &child_path(&path, "roles"));
        let mut role = None;
        for (role_path, name) in &roles {
            match name.as_str() {
                "master" | "control-plane" => role = Some(Role::Master),
                "node" | "worker" => role = role.or(Some(Role::Node)),
                other => r.error(role_path, Some(other), "unknown role; expected `master` or `node`"),
            }
        }
        if roles.is_empty() {
            r.error(&child_path(&path, "roles"), None, "missing `roles`: `[master]` or `[node]`");
        }
        let group_ssh = read_ssh(r, group.get("ssh"), &child_path(&path, "ssh"), ssh);
        let env = read_env(r, group.get("env"), &child_path(&path, "env"), &cluster.env);
        let ips = r.string_list(group.get("ips"), &child_path(&path, "ips"));
        if ips.is_empty() {
            r.error(&child_path(&path, "ips"), None, "missing `ips`: the addresses of this group");
        }
        for (ip_path, text) in ips {
            for ip in expand_ips(r, &ip_path, &text, seen) {
                if let Some(role) = role {
                    cluster.hosts.push(Host { ip, role, ssh: group_ssh.clone(), env: env.clone() });
                }
            }
        }
    }
}

fn read_v1_hosts(
    r: &mut DocReader<'_>,
    spec: &Value,
    cluster: &mut Cluster,
    ssh: &Ssh,
    seen: &mut HashMap<IpAddr, String>,
) {
    if let Some(provider) = r.string(spec.get("provider"), "spec.provider") {
        if !provider.eq_ignore_ascii_case("BAREMETAL") {
            r.error("spec.provider", Some(&provider), "only the `BAREMETAL` provider is supported: hosts must exist");
        }
    }
    for (field, role) in [("masters", Role::Master), ("nodes", Role::Node)] {
        let path = format!("spec.{field}");
        let Some(group) = r.mapping(spec.get(field), &path) else {
            if role == Role::Master {
                r.error(
                    &child_path(&path, "ipList"),
                    None,
                    "missing `spec.masters.ipList`: at least one master is needed",
                );
            }
            continue;
        };
        r.warn_unknown_keys(group, &path, &["ipList", "count", "cpu", "memory", "systemDisk", "dataDisks"]);
        for (ip_path, text) in r.string_list(group.get("ipList"), &child_path(&path, "ipList")) {
            for ip in expand_ips(r, &ip_path, &text, seen) {
                cluster.hosts.push(Host { ip, role, ssh: ssh.clone(), env: cluster.env.clone() });
            }
        }
    }
    if let Some(network) = r.mapping(spec.get("network"), "spec.network") {
        r.warn_unknown_keys(network, "spec.network", &["podCIDR", "svcCIDR", "cniName", "withoutCNI", "interface"]);
        cluster.pod_cidr = read_cidr(r, network.get("podCIDR"), "spec.network.podCIDR");
        cluster.svc_cidr = read_cidr(r, network.get("svcCIDR"), "spec.network.svcCIDR");
    }
    for (path, san) in r.string_list(spec.get("certSANS"), "spec.certSANS") {
        if san.parse::<IpAddr>().is_err() && !rules::is_rfc1123_subdomain(&san) {
            r.error(&path, Some(&san), "a certificate SAN must be an IP address or a DNS name");
        } else {
            cluster.cert_sans.push(san);
        }
    }
}

fn read_cidr(r: &mut DocReader<'_>, value: Option<&Value>, path: &str) -> Option<String> {
    let text = r.string(value, path)?;
    let valid = text.split_once('/').is_some_and(|(ip, len)| {
        ip.parse::<IpAddr>().is_ok_and(|ip| len.parse::<u8>().is_ok_and(|l| l <= if ip.is_ipv4() { 32 } else { 128 }))
    });
    if !valid {
        r.error(path, Some(&text), "not a CIDR (`10.96.0.0/22`)");
        return None;
    }
    Some(text)
}

fn expand_ips(r: &mut DocReader<'_>, path: &str, text: &str, seen: &mut HashMap<IpAddr, String>) -> Vec<IpAddr> {
    match r.expand(text) {
        Err(e) => {
            r.error(path, Some(text), e.to_string());
            Vec::new()
        }
        Ok(ips) => ips
            .into_iter()
            .filter(|ip| match seen.get(ip) {
                Some(first) => {
                    r.error(path, Some(text), format!("IP `{ip}` is declared twice (first at `{first}`)"));
                    false
                }
                None => {
                    seen.insert(*ip, path.to_string());
                    true
                }
            })
            .collect(),
    }
}

/// A secret scalar as text (`passwd: 12345678` is the password `12345678`); anything else is an error
/// that names the field and the expected type, never the value.
fn secret(r: &mut DocReader<'_>, value: Option<&Value>, path: &str) -> Option<Secret> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Secret::new(s.clone())),
        Some(Value::Number(n)) => Some(Secret::new(n.to_string())),
        Some(Value::Bool(b)) => Some(Secret::new(b.to_string())),
        Some(_) => {
            r.error(path, None, "expected a string");
            None
        }
    }
}

fn read_ssh(r: &mut DocReader<'_>, value: Option<&Value>, path: &str, base: &Ssh) -> Ssh {
    let mut ssh = base.clone();
    // Whatever is there may be a secret written in the wrong place: the error never shows it.
    let map = match value {
        None | Some(Value::Null) => return ssh,
        Some(map @ Value::Mapping(_)) => map,
        Some(_) => {
            r.error(path, None, "expected a mapping of user, passwd, pk, pkPasswd and port");
            return ssh;
        }
    };
    r.warn_unknown_keys(map, path, &["user", "passwd", "pk", "pkPasswd", "port"]);
    if let Some(user) = r.string(map.get("user"), &child_path(path, "user")) {
        let valid = !user.is_empty()
            && user.len() <= 32
            && user.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            ssh.user = user;
        } else {
            r.error(&child_path(path, "user"), Some(&user), "not a valid user name");
        }
    }
    // Secrets are read without ever being echoed into a diagnostic; a number or a boolean is its text.
    if let Some(password) = secret(r, map.get("passwd"), &child_path(path, "passwd")) {
        ssh.password = Some(password);
    }
    if let Some(pk) = r.string(map.get("pk"), &child_path(path, "pk")) {
        ssh.private_key = Some(pk);
    }
    if let Some(passphrase) = secret(r, map.get("pkPasswd"), &child_path(path, "pkPasswd")) {
        ssh.key_passphrase = Some(passphrase);
    }
    if let Some(port) = map.get("port").filter(|v| !v.is_null()) {
        let port_path = child_path(path, "port");
        let text = scalar_text(port).unwrap_or_default();
        match text.trim().parse::<u16>() {
            Ok(p) if p > 0 => ssh.port = p,
            _ => r.error(&port_path, Some(&text), "not a TCP port (1-65535)"),
        }
    }
    ssh
}

fn read_env(
    r: &mut DocReader<'_>,
    value: Option<&Value>,
    path: &str,
    base: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = base.clone();
    let mut put = |r: &mut DocReader<'_>, item_path: &str, key: &str, val: String| {
        if rules::is_env_name(key) {
            env.insert(key.to_string(), val);
        } else {
            r.error(item_path, Some(key), "an env name must be non-empty, without `=`, NUL or a line break");
        }
    };
    match value {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let key = scalar_text(k).unwrap_or_default();
                let item_path = child_path(path, &key);
                let val = r.string(Some(v), &item_path).unwrap_or_default();
                put(r, &item_path, &key, val);
            }
        }
        other => {
            for (item_path, item) in r.string_list(other, path) {
                match item.split_once('=') {
                    Some((k, v)) => put(r, &item_path, k.trim(), v.to_string()),
                    None => r.error(&item_path, Some(&item), "expected `NAME=value`"),
                }
            }
        }
    }
    env
}

const KNOWN_PLUGIN_TYPES: [&str; 6] = ["HOSTNAME", "SHELL", "LABEL", "TAINT", "CLUSTERCHECK", "ETCD"];

fn read_plugin(r: &mut DocReader<'_>, doc: &Value, b: &mut Builder) {
    let name = object_name(r, doc);
    if doc.get("metadata").and_then(|m| m.get("name")).is_none() {
        r.error("metadata.name", None, "missing `metadata.name`: every plugin needs a name");
    }
    let empty = Value::Mapping(Default::default());
    let spec = r.mapping(doc.get("spec"), "spec").unwrap_or(&empty);
    r.warn_unknown_keys(spec, "spec", &["type", "action", "on", "data", "scope"]);
    // Without a type, a plugin named after a known type is of that type, as sealer takes it.
    let inferred = name.as_deref().filter(|n| KNOWN_PLUGIN_TYPES.contains(&n.to_ascii_uppercase().as_str()));
    let type_name = match (spec.get("type"), inferred) {
        (None, Some(name)) => name.to_string(),
        (value, _) => match r.string(value, "spec.type") {
            Some(t) => t,
            None => {
                r.error(
                    "spec.type",
                    None,
                    "missing `spec.type` (HOSTNAME, SHELL, LABEL, TAINT, CLUSTERCHECK, ETCD or a plugin name)",
                );
                return;
            }
        },
    };
    let data = r.string(spec.get("data"), "spec.data").unwrap_or_default();
    let upper = type_name.to_ascii_uppercase();
    let data_lines = |r: &mut DocReader<'_>, out: &mut Vec<DataLine>| {
        for (line_no, line) in data.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (ip_part, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            match r.expand(ip_part) {
                Ok(ips) => out.push(DataLine {
                    document: r.document,
                    path: "spec.data".into(),
                    line_no: line_no + 1,
                    ips,
                    rest: rest.trim().to_string(),
                }),
                Err(e) => r.error("spec.data", Some(line), format!("line {} of data: {e}", line_no + 1)),
            }
        }
    };
    let plugin_type = match upper.as_str() {
        "HOSTNAME" => return data_lines(r, &mut b.hostname_lines),
        "LABEL" => return data_lines(r, &mut b.label_lines),
        "TAINT" => return data_lines(r, &mut b.taint_lines),
        "SHELL" => PluginType::Shell,
        "CLUSTERCHECK" => PluginType::ClusterCheck,
        "ETCD" => PluginType::Etcd,
        _ if type_name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') => {
            PluginType::OutOfTree(type_name.clone())
        }
        _ => {
            r.error(
                "spec.type",
                Some(&type_name),
                "a plugin type must be a known type or an executable name (`A-Za-z0-9_-`)",
            );
            return;
        }
    };
    let mut phases = Vec::new();
    match r.string(spec.get("action"), "spec.action") {
        Some(action) => {
            for part in action.split('|').map(str::trim) {
                match Phase::from_name(part) {
                    Some(p) if !phases.contains(&p) => phases.push(p),
                    Some(_) => {}
                    None => r.error(
                        "spec.action",
                        Some(part),
                        format!(
                            "unknown plugin action; expected one of {}",
                            Phase::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                }
            }
        }
        None if matches!(plugin_type, PluginType::ClusterCheck | PluginType::Etcd) => phases.push(Phase::PostInstall),
        None => r.error("spec.action", None, "missing `spec.action`: the phase(s) at which the plugin runs"),
    }
    if plugin_type == PluginType::Shell && data.trim().is_empty() {
        r.error("spec.data", None, "a SHELL plugin needs the script to run in `spec.data`");
    }
    let on_text = r.string(spec.get("on"), "spec.on").unwrap_or_default();
    let selector = parse_selector(r, &on_text);
    if let (Some(name), Some(selector)) = (name, selector) {
        if !b.unique_name(r, "Plugin", &name) {
            return;
        }
        b.plugins.push(PendingPlugin {
            document: r.document,
            plugin: Plugin {
                name,
                plugin_type,
                phases,
                hosts: Vec::new(),
                data,
                label_selector: match &selector {
                    Selector::Labels(pairs) => {
                        Some(LabelSelector { pairs: pairs.clone(), location: r.location("spec.on") })
                    }
                    _ => None,
                },
            },
            selector,
            on_text,
        });
    }
}

fn parse_selector(r: &mut DocReader<'_>, on: &str) -> Option<Selector> {
    let on = on.trim();
    if on.is_empty() {
        return Some(Selector::All);
    }
    if on.contains('=') {
        let mut pairs = Vec::new();
        for part in on.split(',').map(str::trim) {
            match part.split_once('=') {
                Some((k, v)) if rules::label_key_problem(k.trim()).is_none() => {
                    pairs.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => {
                    r.error("spec.on", Some(part), "a label selector is `key=value[,key=value]`");
                    return None;
                }
            }
        }
        return Some(Selector::Labels(pairs));
    }
    let mut items = Vec::new();
    for part in on.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "master" | "masters" => items.push(SelectorItem::Role(Role::Master)),
            "node" | "nodes" => items.push(SelectorItem::Role(Role::Node)),
            _ => match r.expand(part) {
                Ok(ips) => items.push(SelectorItem::Ips(ips)),
                Err(e) => {
                    r.error("spec.on", Some(part), format!("expected master, node, IPs, ranges or `key=value`: {e}"));
                    return None;
                }
            },
        }
    }
    Some(Selector::Items(items))
}

fn resolve_selector(r: &mut DocReader<'_>, pending: &PendingPlugin, cluster: &Cluster) -> Option<Vec<IpAddr>> {
    // Cluster-wide plugins act through the API server, so they run once, on the first master.
    if matches!(pending.plugin.plugin_type, PluginType::ClusterCheck | PluginType::Etcd) {
        return Some(cluster.first_master().map(|m| vec![m.ip]).unwrap_or_default());
    }
    let selected: BTreeSet<IpAddr> = match &pending.selector {
        Selector::All => cluster.hosts.iter().map(|h| h.ip).collect(),
        // Resolved with every label source once the Clusterfile is whole (`select_by_labels`).
        Selector::Labels(_) => BTreeSet::new(),
        Selector::Items(items) => {
            let mut set = BTreeSet::new();
            for item in items {
                match item {
                    SelectorItem::Role(role) => {
                        set.extend(cluster.hosts.iter().filter(|h| h.role == *role).map(|h| h.ip))
                    }
                    SelectorItem::Ips(ips) => {
                        for ip in ips {
                            if cluster.hosts.iter().any(|h| h.ip == *ip) {
                                set.insert(*ip);
                            } else {
                                r.error(
                                    "spec.on",
                                    Some(&pending.on_text),
                                    format!("IP `{ip}` is not a host of the cluster"),
                                );
                                return None;
                            }
                        }
                    }
                }
            }
            set
        }
    };
    Some(cluster.hosts.iter().map(|h| h.ip).filter(|ip| selected.contains(ip)).collect())
}

/// Makes readers for documents after the first pass, when problems found across documents are reported.
struct Readers<'a> {
    file: &'a str,
    addresses: &'a std::cell::Cell<usize>,
    positions: Vec<Option<&'a DocumentPositions>>,
}

impl Readers<'_> {
    fn reader<'s>(&'s self, document: usize, diagnostics: &'s mut Vec<Diagnostic>) -> DocReader<'s> {
        let positions = self.positions.get(document - 1).copied().flatten();
        DocReader { file: self.file, addresses: self.addresses, document, positions, diagnostics }
    }
}

/// The IPs of a data line that are hosts of the cluster. Others are skipped with a warning naming the
/// line of the file, as sealer goes on past nodes it does not have.
fn members_only(r: &mut DocReader<'_>, line: &DataLine, members: &HashMap<IpAddr, Role>) -> Vec<IpAddr> {
    let (inside, strangers): (Vec<IpAddr>, Vec<IpAddr>) = line.ips.iter().partition(|ip| members.contains_key(ip));
    if !strangers.is_empty() {
        let named: Vec<String> = strangers.iter().map(ToString::to_string).collect();
        r.warning_at_line(
            &line.path,
            line.line_no,
            Some(named.join(",")),
            "this data line names hosts that are not in the cluster: they are skipped",
        );
    }
    inside
}

fn resolve_hostnames(
    lines: &[DataLine],
    members: &HashMap<IpAddr, Role>,
    diagnostics: &mut Vec<Diagnostic>,
    readers: &Readers<'_>,
) -> BTreeMap<IpAddr, String> {
    let mut by_ip = BTreeMap::new();
    let mut by_name: HashMap<String, IpAddr> = HashMap::new();
    for line in lines {
        let mut r = readers.reader(line.document, diagnostics);
        let ips = members_only(&mut r, line, members);
        if ips.is_empty() {
            continue;
        }
        let name = line.rest.as_str();
        let at = format!("line {} of data", line.line_no);
        if line.ips.len() != 1 {
            r.error(&line.path, Some(name), format!("{at}: a hostname line names exactly one IP"));
        } else if !rules::is_rfc1123_label(name) {
            r.error(
                &line.path,
                Some(name),
                format!("{at}: a hostname must be an RFC 1123 label (lowercase `a-z0-9-`, at most 63)"),
            );
        } else if let Some(other) = by_name.get(name).filter(|other| **other != ips[0]) {
            r.error(&line.path, Some(name), format!("{at}: hostname already given to `{other}`"));
        } else if by_ip.get(&ips[0]).is_some_and(|n: &String| n != name) {
            r.error(&line.path, Some(name), format!("{at}: `{}` already has another hostname", ips[0]));
        } else {
            by_name.insert(name.to_string(), ips[0]);
            by_ip.insert(ips[0], name.to_string());
        }
    }
    by_ip
}

fn resolve_labels(
    lines: &[DataLine],
    members: &HashMap<IpAddr, Role>,
    diagnostics: &mut Vec<Diagnostic>,
    readers: &Readers<'_>,
) -> BTreeMap<IpAddr, BTreeMap<String, String>> {
    let mut out: BTreeMap<IpAddr, BTreeMap<String, String>> = BTreeMap::new();
    for line in lines {
        let mut r = readers.reader(line.document, diagnostics);
        let ips = members_only(&mut r, line, members);
        if ips.is_empty() {
            continue;
        }
        let at = format!("line {} of data", line.line_no);
        if line.rest.is_empty() {
            r.error(&line.path, Some(&line.rest), format!("{at}: expected `IP key=value[,key=value]`"));
            continue;
        }
        for pair in line.rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                r.error(&line.path, Some(pair), format!("{at}: expected `key=value`"));
                continue;
            };
            if let Some(problem) = rules::label_key_problem(key) {
                r.error(&line.path, Some(key), format!("{at}: invalid label key: {problem}"));
                continue;
            }
            if let Some(problem) = rules::label_value_problem(value) {
                r.error(&line.path, Some(value), format!("{at}: invalid label value: {problem}"));
                continue;
            }
            for ip in &ips {
                let labels = out.entry(*ip).or_default();
                match labels.get(key) {
                    Some(existing) if existing != value => r.error(
                        &line.path,
                        Some(pair),
                        format!("{at}: label `{key}` of `{ip}` is already declared as `{existing}`"),
                    ),
                    _ => {
                        labels.insert(key.to_string(), value.to_string());
                    }
                }
            }
        }
    }
    out
}

/// What is wrong with a taint of a TAINT plugin's data.
#[derive(Debug, thiserror::Error)]
enum TaintProblem {
    #[error("expected `key=value:Effect` or `key:Effect-`")]
    Shape,
    #[error("unknown taint effect `{0}`; expected NoSchedule, PreferNoSchedule or NoExecute")]
    Effect(String),
    #[error("invalid taint key `{key}`: {problem}")]
    Key { key: String, problem: String },
    #[error("invalid taint value: {0}")]
    Value(String),
}

/// `key=value:Effect`, `key:Effect`, and with a trailing `-` the removal of such a taint.
fn parse_taint(spec: &str) -> Result<(Taint, bool), TaintProblem> {
    let (spec, remove) = match spec.strip_suffix('-') {
        Some(s) => (s, true),
        None => (spec, false),
    };
    let Some((kv, effect)) = spec.rsplit_once(':') else {
        return Err(TaintProblem::Shape);
    };
    let Some(effect) = TaintEffect::from_name(effect) else {
        return Err(TaintProblem::Effect(effect.to_string()));
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if let Some(problem) = rules::label_key_problem(key) {
        return Err(TaintProblem::Key { key: key.to_string(), problem: problem.to_string() });
    }
    if let Some(problem) = value.as_deref().and_then(rules::label_value_problem) {
        return Err(TaintProblem::Value(problem.to_string()));
    }
    Ok((Taint { key: key.to_string(), value, effect }, remove))
}

fn resolve_taints(
    lines: &[DataLine],
    members: &HashMap<IpAddr, Role>,
    diagnostics: &mut Vec<Diagnostic>,
    readers: &Readers<'_>,
) -> BTreeMap<IpAddr, HostTaints> {
    let mut out: BTreeMap<IpAddr, HostTaints> = BTreeMap::new();
    for line in lines {
        let mut r = readers.reader(line.document, diagnostics);
        let ips = members_only(&mut r, line, members);
        if ips.is_empty() {
            continue;
        }
        let at = format!("line {} of data", line.line_no);
        if line.rest.is_empty() {
            r.error(&line.path, Some(&line.rest), format!("{at}: expected `IPs key=value:Effect`"));
            continue;
        }
        for spec in line.rest.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
            match parse_taint(spec) {
                Err(problem) => r.error(&line.path, Some(spec), format!("{at}: {problem}")),
                Ok((taint, remove)) => {
                    for ip in &ips {
                        let host = out.entry(*ip).or_default();
                        let (add_to, other) =
                            if remove { (&mut host.absent, &host.present) } else { (&mut host.present, &host.absent) };
                        if other.contains(&taint) {
                            r.error(&line.path, Some(spec), format!("{at}: taint both added and removed on `{ip}`"));
                        } else {
                            add_to.insert(taint.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

fn read_config(r: &mut DocReader<'_>, doc: &Value) -> Option<ConfigFile> {
    let name = object_name(r, doc);
    if doc.get("metadata").and_then(|m| m.get("name")).is_none() {
        r.error("metadata.name", None, "missing `metadata.name`: every Config needs a name");
    }
    let empty = Value::Mapping(Default::default());
    let spec = r.mapping(doc.get("spec"), "spec").unwrap_or(&empty);
    r.warn_unknown_keys(spec, "spec", &["path", "data", "strategy", "process"]);
    let path = match r.string(spec.get("path"), "spec.path") {
        None => {
            r.error("spec.path", None, "missing `spec.path`: the file in the image rootfs");
            None
        }
        Some(p) => match rules::rootfs_path_problem(&p) {
            Some(problem) => {
                r.error("spec.path", Some(&p), problem);
                None
            }
            None => Some(p),
        },
    };
    let data = r.string(spec.get("data"), "spec.data");
    if data.is_none() {
        r.error("spec.data", None, "missing `spec.data`: the content to write");
    }
    let strategy = match r.string(spec.get("strategy"), "spec.strategy").as_deref() {
        None | Some("overwrite") => ConfigStrategy::Overwrite,
        Some("merge") => ConfigStrategy::Merge,
        Some(other) => {
            r.error("spec.strategy", Some(other), "unknown strategy; expected `merge` or `overwrite`");
            ConfigStrategy::Overwrite
        }
    };
    let mut process = Vec::new();
    for part in r.string(spec.get("process"), "spec.process").unwrap_or_default().split('|').map(str::trim) {
        match part {
            "" => {}
            "toJson" => process.push(ConfigProcess::ToJson),
            "toBase64" => process.push(ConfigProcess::ToBase64),
            "toSecret" => process.push(ConfigProcess::ToSecret),
            other => r.error("spec.process", Some(other), "unknown process; expected toJson, toBase64 or toSecret"),
        }
    }
    let data = data?;
    let needs_yaml = strategy == ConfigStrategy::Merge
        || process.iter().any(|p| matches!(p, ConfigProcess::ToJson | ConfigProcess::ToSecret));
    if needs_yaml {
        if let Err(e) = serde_yaml::from_str::<Value>(&data) {
            r.error(
                "spec.data",
                None,
                format!("merge, toJson and toSecret need YAML data: {}", strip_location(&e.to_string())),
            );
        }
    }
    Some(ConfigFile { name: name?, path: path?, data, strategy, process, secret_digest: None })
}

fn read_kubeadm(r: &mut DocReader<'_>, doc: &Value, api_version: String, kind: String, b: &mut Builder) {
    let accepted: &[&str] = match kind.as_str() {
        "KubeProxyConfiguration" => &["kubeproxy.config.k8s.io/v1alpha1"],
        "KubeletConfiguration" => &["kubelet.config.k8s.io/v1beta1"],
        _ => &["kubeadm.k8s.io/v1beta1", "kubeadm.k8s.io/v1beta2", "kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"],
    };
    if !accepted.contains(&api_version.as_str()) {
        r.error(
            "apiVersion",
            Some(&api_version),
            format!("unknown apiVersion for kind `{kind}`; expected {}", accepted.join(" or ")),
        );
        return;
    }
    if b.kubeadm.iter().any(|d| d.kind == kind) {
        r.error("kind", Some(&kind), "a second document of this kind; merge them into one");
        return;
    }
    let mut body = doc.clone();
    if let Value::Mapping(m) = &mut body {
        m.remove("apiVersion");
        m.remove("kind");
    }
    b.kubeadm.push(KubeadmDocument { api_version, kind, body });
}

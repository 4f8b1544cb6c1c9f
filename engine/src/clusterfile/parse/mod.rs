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

mod cluster;
mod config;
mod plugin;

use cluster::*;
use config::*;
use plugin::*;

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
        for pending in image_plugin_documents(&readers, &documents, &mut diagnostics) {
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

/// The Plugin documents of one plugin file of an image; any other kind is a warning, and a HOSTNAME,
/// LABEL or TAINT plugin an error (their data names the hosts of one cluster).
fn image_plugin_documents(
    readers: &Readers<'_>,
    documents: &[Value],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PendingPlugin> {
    let mut builder = Builder::default();
    for (index, value) in documents.iter().enumerate().filter(|(_, v)| !v.is_null()) {
        let mut r = readers.reader(index + 1, diagnostics);
        if value.get("kind").and_then(Value::as_str) != Some("Plugin") {
            r.warning("kind", "not a Plugin document: an image's plugin directory is read for Plugin documents only");
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
    builder.plugins
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

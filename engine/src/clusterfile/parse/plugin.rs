//! Plugin documents, and the HOSTNAME, LABEL and TAINT data resolved once every host is known.

use super::*;

const KNOWN_PLUGIN_TYPES: [&str; 6] = ["HOSTNAME", "SHELL", "LABEL", "TAINT", "CLUSTERCHECK", "ETCD"];

pub(super) fn read_plugin(r: &mut DocReader<'_>, doc: &Value, b: &mut Builder) {
    let name = object_name(r, doc);
    if doc.get("metadata").and_then(|m| m.get("name")).is_none() {
        r.error("metadata.name", None, "missing `metadata.name`: every plugin needs a name");
    }
    let empty = Value::Mapping(Default::default());
    let spec = r.mapping(doc.get("spec"), "spec").unwrap_or(&empty);
    r.warn_unknown_keys(spec, "spec", &["type", "action", "on", "data", "scope"]);
    let Some(type_name) = type_name(r, spec, name.as_deref()) else { return };
    let data = r.string(spec.get("data"), "spec.data").unwrap_or_default();
    let plugin_type = match type_name.to_ascii_uppercase().as_str() {
        "HOSTNAME" => return data_lines(r, &data, &mut b.hostname_lines),
        "LABEL" => return data_lines(r, &data, &mut b.label_lines),
        "TAINT" => return data_lines(r, &data, &mut b.taint_lines),
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
    let phases = phases(r, spec, &plugin_type);
    if plugin_type == PluginType::Shell && data.trim().is_empty() {
        r.error("spec.data", None, "a SHELL plugin needs the script to run in `spec.data`");
    }
    let on_text = r.string(spec.get("on"), "spec.on").unwrap_or_default();
    let selector = parse_selector(r, &on_text);
    if let (Some(name), Some(selector)) = (name, selector) {
        if !b.unique_name(r, "Plugin", &name) {
            return;
        }
        let label_selector = match &selector {
            Selector::Labels(pairs) => Some(LabelSelector { pairs: pairs.clone(), location: r.location("spec.on") }),
            _ => None,
        };
        let plugin = Plugin { name, plugin_type, phases, hosts: Vec::new(), data, label_selector };
        b.plugins.push(PendingPlugin { document: r.document, plugin, selector, on_text });
    }
}

/// `spec.type`; without one, a plugin named after a known type is of that type, as sealer takes it.
fn type_name(r: &mut DocReader<'_>, spec: &Value, name: Option<&str>) -> Option<String> {
    let inferred = name.filter(|n| KNOWN_PLUGIN_TYPES.contains(&n.to_ascii_uppercase().as_str()));
    match (spec.get("type"), inferred) {
        (None, Some(name)) => Some(name.to_string()),
        (value, _) => {
            let found = r.string(value, "spec.type");
            if found.is_none() {
                r.error(
                    "spec.type",
                    None,
                    "missing `spec.type` (HOSTNAME, SHELL, LABEL, TAINT, CLUSTERCHECK, ETCD or a plugin name)",
                );
            }
            found
        }
    }
}

/// The lines of a HOSTNAME, LABEL or TAINT plugin's data, each with the IPs it starts with, kept until the
/// hosts are known.
fn data_lines(r: &mut DocReader<'_>, data: &str, out: &mut Vec<DataLine>) {
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
}

/// `spec.action`: the phases, `|`-separated; CLUSTERCHECK and ETCD plugins default to PostInstall.
fn phases(r: &mut DocReader<'_>, spec: &Value, plugin_type: &PluginType) -> Vec<Phase> {
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
    phases
}

pub(super) fn parse_selector(r: &mut DocReader<'_>, on: &str) -> Option<Selector> {
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

pub(super) fn resolve_selector(
    r: &mut DocReader<'_>,
    pending: &PendingPlugin,
    cluster: &Cluster,
) -> Option<Vec<IpAddr>> {
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

/// The IPs of a data line that are hosts of the cluster. Others are skipped with a warning naming the
/// line of the file, as sealer goes on past nodes it does not have.
pub(super) fn members_only(r: &mut DocReader<'_>, line: &DataLine, members: &HashMap<IpAddr, Role>) -> Vec<IpAddr> {
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

pub(super) fn resolve_hostnames(
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

/// Every item of every data line (its text after the IPs, split at `separators`) with the members the
/// line names: the loop LABEL and TAINT data share. A line naming no member is left out (`members_only`
/// said why); one with nothing after its IPs is an error expecting `expected`.
fn each_item(
    lines: &[DataLine],
    members: &HashMap<IpAddr, Role>,
    diagnostics: &mut Vec<Diagnostic>,
    readers: &Readers<'_>,
    (separators, expected): (&[char], &str),
    mut item: impl FnMut(&mut DocReader<'_>, &DataLine, &str, &[IpAddr], &str),
) {
    for line in lines {
        let mut r = readers.reader(line.document, diagnostics);
        let ips = members_only(&mut r, line, members);
        if ips.is_empty() {
            continue;
        }
        let at = format!("line {} of data", line.line_no);
        if line.rest.is_empty() {
            r.error(&line.path, Some(&line.rest), format!("{at}: expected `{expected}`"));
            continue;
        }
        for part in line.rest.split(separators).map(str::trim).filter(|p| !p.is_empty()) {
            item(&mut r, line, &at, &ips, part);
        }
    }
}

pub(super) fn resolve_labels(
    lines: &[DataLine],
    members: &HashMap<IpAddr, Role>,
    diagnostics: &mut Vec<Diagnostic>,
    readers: &Readers<'_>,
) -> BTreeMap<IpAddr, BTreeMap<String, String>> {
    let mut out: BTreeMap<IpAddr, BTreeMap<String, String>> = BTreeMap::new();
    let shape = (&[','][..], "IP key=value[,key=value]");
    each_item(lines, members, diagnostics, readers, shape, |r, line, at, ips, pair| {
        let Some((key, value)) = pair.split_once('=') else {
            return r.error(&line.path, Some(pair), format!("{at}: expected `key=value`"));
        };
        if let Some(problem) = rules::label_key_problem(key) {
            return r.error(&line.path, Some(key), format!("{at}: invalid label key: {problem}"));
        }
        if let Some(problem) = rules::label_value_problem(value) {
            return r.error(&line.path, Some(value), format!("{at}: invalid label value: {problem}"));
        }
        for ip in ips {
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
    });
    out
}

/// What is wrong with a taint of a TAINT plugin's data.
#[derive(Debug, thiserror::Error)]
pub(super) enum TaintProblem {
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
pub(super) fn parse_taint(spec: &str) -> Result<(Taint, bool), TaintProblem> {
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

pub(super) fn resolve_taints(
    lines: &[DataLine],
    members: &HashMap<IpAddr, Role>,
    diagnostics: &mut Vec<Diagnostic>,
    readers: &Readers<'_>,
) -> BTreeMap<IpAddr, HostTaints> {
    let mut out: BTreeMap<IpAddr, HostTaints> = BTreeMap::new();
    let shape = (&[',', ' '][..], "IPs key=value:Effect");
    each_item(lines, members, diagnostics, readers, shape, |r, line, at, ips, spec| match parse_taint(spec) {
        Err(problem) => r.error(&line.path, Some(spec), format!("{at}: {problem}")),
        Ok((taint, remove)) => {
            for ip in ips {
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
    });
    out
}

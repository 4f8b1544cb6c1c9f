//! The Cluster document: its hosts, ssh settings and env.

use super::*;

pub(super) fn read_cluster(r: &mut DocReader<'_>, doc: &Value, api_version: &str) -> Option<Cluster> {
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
pub(super) fn read_apps(r: &mut DocReader<'_>, value: Option<&Value>) -> Vec<String> {
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

pub(super) fn read_v2_hosts(
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

pub(super) fn read_v1_hosts(
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

pub(super) fn read_cidr(r: &mut DocReader<'_>, value: Option<&Value>, path: &str) -> Option<String> {
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

pub(super) fn expand_ips(
    r: &mut DocReader<'_>,
    path: &str,
    text: &str,
    seen: &mut HashMap<IpAddr, String>,
) -> Vec<IpAddr> {
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
pub(super) fn secret(r: &mut DocReader<'_>, value: Option<&Value>, path: &str) -> Option<Secret> {
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

pub(super) fn read_ssh(r: &mut DocReader<'_>, value: Option<&Value>, path: &str, base: &Ssh) -> Ssh {
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

pub(super) fn read_env(
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

//! The kubeadm configuration a cluster is installed with: built-in defaults, then the Clusterfile's
//! network fields, then its partial kubeadm documents, merged field by field.
//!
//! This lives in the engine (not in a provider) because the merged text is part of the plan: a change to
//! it must show as a diff before anything runs.

use std::net::IpAddr;

use serde_yaml::{Mapping, Value};

use crate::clusterfile::{Clusterfile, KubeadmDocument};
use crate::error::KubeadmError;

pub const API_SERVER_DOMAIN: &str = "apiserver.cluster.local";
pub const REGISTRY_DOMAIN: &str = "sea.hub";
pub const REGISTRY_PORT: u16 = 5000;
/// Registries whose images every host pulls from the cluster's registry (`sea.hub:5000`), beside those the
/// lite build collected from: pods keep their original image names and never need the internet.
pub const MIRRORED_REGISTRIES: [&str; 5] = ["docker.io", "registry.k8s.io", "k8s.gcr.io", "quay.io", "ghcr.io"];

/// A registry name that may become a directory of `/etc/containerd/certs.d`: `host[:port]`.
pub fn is_registry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['.', '-', ':'])
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}
/// The virtual IP nodes use to reach the masters (sealer's lvscare), excluded from kube-proxy's IPVS.
pub const VIRTUAL_IP: &str = "10.103.97.2";
const DEFAULT_KUBERNETES_VERSION: &str = "v1.22.15";
const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";

/// Documents of the merged configuration, in the order kubeadm reads them.
const INIT_KINDS: [&str; 4] =
    ["InitConfiguration", "ClusterConfiguration", "KubeProxyConfiguration", "KubeletConfiguration"];

const KINDS: [&str; 5] = [
    "InitConfiguration",
    "ClusterConfiguration",
    "KubeProxyConfiguration",
    "KubeletConfiguration",
    "JoinConfiguration",
];

/// The kubeadm documents a cluster image carries (its `etc/kubeadm.yml`): the layer between the built-in
/// defaults and the Clusterfile.
pub fn parse_image_documents(text: &str) -> Result<Vec<KubeadmDocument>, KubeadmError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut body: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| KubeadmError::Yaml { document: i + 1, message: e.to_string() })?;
        if body.is_null() {
            continue;
        }
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if !KINDS.contains(&kind.as_str()) {
            return Err(KubeadmError::UnknownKind { document: i + 1, kind });
        }
        let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Value::Mapping(m) = &mut body {
            m.shift_remove("apiVersion");
            m.shift_remove("kind");
        }
        out.push(KubeadmDocument { api_version, kind, body });
    }
    Ok(out)
}

/// The Kubernetes version: the Clusterfile's `kubernetesVersion`, else the image's, else the image tag
/// when it is one (`kubernetes:v1.22.15`), else the default.
pub fn kubernetes_version(cf: &Clusterfile, image: &[KubeadmDocument]) -> String {
    let declared = cf
        .kubeadm
        .iter()
        .chain(image)
        .filter(|d| d.kind == "ClusterConfiguration")
        .find_map(|d| d.body.get("kubernetesVersion"))
        .and_then(Value::as_str);
    if let Some(v) = declared {
        return v.to_string();
    }
    let tag = cf.cluster.image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
    match tag.and_then(parse_version) {
        Some(_) => tag.unwrap_or(DEFAULT_KUBERNETES_VERSION).to_string(),
        None => DEFAULT_KUBERNETES_VERSION.to_string(),
    }
}

/// The labels kubeadm puts on every control-plane node: `node-role.kubernetes.io/master` before 1.24,
/// `node-role.kubernetes.io/control-plane` from 1.20 on.
pub fn master_labels(kubernetes_version: &str) -> Vec<&'static str> {
    let (major, minor) = parse_version(kubernetes_version).unwrap_or((1, 22));
    let mut labels = Vec::new();
    if major == 1 && minor < 24 {
        labels.push("node-role.kubernetes.io/master");
    }
    if major > 1 || minor >= 20 {
        labels.push("node-role.kubernetes.io/control-plane");
    }
    labels
}

/// Why kubeadm would refuse to take a cluster from one version to another.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefusal {
    #[error("`{0}` is not a Kubernetes version (vMAJOR.MINOR.PATCH)")]
    NotAVersion(String),
    #[error("a downgrade: kubeadm does not downgrade a cluster")]
    Downgrade,
    #[error("kubeadm upgrades one minor version at a time: go to v{major}.{next} first")]
    SkipsMinor { major: u32, next: u32 },
    #[error("kubeadm does not upgrade across major versions")]
    Major,
}

/// kubeadm's rules for `from` → `to`: no downgrade, no minor version skipped.
pub fn check_upgrade(from: &str, to: &str) -> Result<(), UpgradeRefusal> {
    let parse = |v: &str| full_version(v).ok_or_else(|| UpgradeRefusal::NotAVersion(v.to_string()));
    let (old, new) = (parse(from)?, parse(to)?);
    if new < old {
        return Err(UpgradeRefusal::Downgrade);
    }
    if new.0 != old.0 {
        return Err(UpgradeRefusal::Major);
    }
    if new.1 > old.1 + 1 {
        return Err(UpgradeRefusal::SkipsMinor { major: old.0, next: old.1 + 1 });
    }
    Ok(())
}

/// `(major, minor, patch)` of `v1.22.15` (a pre-release suffix of the patch is ignored).
fn full_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.strip_prefix('v')?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.split(['-', '+']).next()?.parse().ok()?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// The documents of a merged configuration as kubeadm reads them: a key without a value is no key (kubeadm
/// takes both as unset). `None` when the text does not read as YAML.
fn read_documents(text: &str) -> Option<Vec<Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let doc: Value = serde::Deserialize::deserialize(document).ok()?;
        if !doc.is_null() {
            documents.push(without_absent(&doc));
        }
    }
    Some(documents)
}

/// Whether two merged configurations differ in more than the Kubernetes version (which an upgrade
/// changes through kubeadm, not through reconfiguration).
pub fn differs_beyond_version(a: &str, b: &str) -> bool {
    let without_version = |text: &str| {
        read_documents(text).map(|documents| {
            documents
                .into_iter()
                .map(|mut v| {
                    if let Value::Mapping(m) = &mut v {
                        m.remove("kubernetesVersion");
                    }
                    v
                })
                .collect::<Vec<_>>()
        })
    };
    match (without_version(a), without_version(b)) {
        (Some(a), Some(b)) => a != b,
        _ => a != b,
    }
}

/// Whether a planned configuration and a recorded one make the same kubeadm call, so that the plan has
/// nothing to do: keys without a value are no keys, and for a worker (`control_plane` false) a recorded
/// `controlPlane` section is ignored (records from before it was left out of workers' plans had one;
/// kubeadm never got it: [`with_join_credentials`] leaves it out of a worker's join).
pub fn same_planned_config(planned: &str, recorded: &str, control_plane: bool) -> bool {
    let read = |text: &str| {
        read_documents(text).map(|documents| {
            documents
                .into_iter()
                .map(|mut doc| {
                    if !control_plane && doc.get("kind").and_then(Value::as_str) == Some("JoinConfiguration") {
                        if let Value::Mapping(m) = &mut doc {
                            m.shift_remove("controlPlane");
                        }
                    }
                    doc
                })
                .collect::<Vec<_>>()
        })
    };
    match (read(planned), read(recorded)) {
        (Some(planned), Some(recorded)) => planned == recorded,
        _ => planned == recorded,
    }
}

/// `(major, minor)` of `v1.22.15`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.strip_prefix('v')?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.split('-').next()?.parse().ok()?;
    parts.next()?;
    Some((major, minor))
}

/// kubeadm's config API version for a Kubernetes version: v1beta2 up to 1.21, v1beta3 from 1.22.
pub fn kubeadm_api_version(kubernetes_version: &str) -> &'static str {
    match parse_version(kubernetes_version) {
        Some((1, minor)) if minor < 22 => "kubeadm.k8s.io/v1beta2",
        _ => "kubeadm.k8s.io/v1beta3",
    }
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Sequence(items.into_iter().map(Value::String).collect())
}

/// sealer's documented default configuration, one body (without apiVersion and kind) per kind.
const DOCUMENTED_DEFAULTS: &str = include_str!("kubeadm_defaults.yml");

/// The documented default body of `kind`.
fn documented(kind: &str) -> Value {
    serde_yaml::Deserializer::from_str(DOCUMENTED_DEFAULTS)
        .filter_map(|d| <Value as serde::Deserialize>::deserialize(d).ok())
        .find(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
        .map(|mut d| {
            if let Value::Mapping(m) = &mut d {
                m.shift_remove("apiVersion");
                m.shift_remove("kind");
            }
            // The document leaves some keys without a value (`cgroupDriver:`: sealer's code, not the file,
            // chose it): unset, so kubeadm's own default applies, and no `null` is planned.
            without_absent(&d)
        })
        .unwrap_or(Value::Mapping(Mapping::new()))
}

/// `value` without the mapping keys that have no value (YAML's `key:` or `key: null`), at any depth.
fn without_absent(value: &Value) -> Value {
    match value {
        Value::Mapping(m) => Value::Mapping(
            m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_absent(v))).collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.iter().map(without_absent).collect()),
        other => other.clone(),
    }
}

/// The container runtime socket kubelet talks to: dockershim before 1.24 (removed then), containerd after,
/// as sealer's images did.
pub fn cri_socket(kubernetes_version: &str) -> &'static str {
    match parse_version(kubernetes_version) {
        Some((1, minor)) if minor < 24 => DOCKERSHIM_SOCKET,
        _ => CRI_SOCKET,
    }
}

const DOCKERSHIM_SOCKET: &str = "/var/run/dockershim.sock";

/// The documented defaults for `version`, with what sealer's code sets: the first master's advertise
/// address, the version, controlPlaneEndpoint and the certSANs every member needs.
fn defaults(first_master: IpAddr, version: &str) -> Vec<(&'static str, Value)> {
    let mut init = documented("InitConfiguration");
    init["localAPIEndpoint"]["advertiseAddress"] = Value::String(first_master.to_string());
    init["nodeRegistration"]["criSocket"] = Value::String(cri_socket(version).into());
    let mut cluster = documented("ClusterConfiguration");
    cluster["kubernetesVersion"] = Value::String(version.into());
    cluster["controlPlaneEndpoint"] = Value::String(format!("{API_SERVER_DOMAIN}:6443"));
    // kubeadm adds each member's own address to its certificate, so the masters' addresses are not listed:
    // listed, every scaling of the masters would rewrite the first master's configuration.
    let sans = vec!["127.0.0.1".to_string(), API_SERVER_DOMAIN.to_string(), VIRTUAL_IP.to_string()];
    cluster["apiServer"]["certSANs"] = strings(sans);
    vec![
        ("InitConfiguration", init),
        ("ClusterConfiguration", cluster),
        ("KubeProxyConfiguration", documented("KubeProxyConfiguration")),
        ("KubeletConfiguration", documented("KubeletConfiguration")),
    ]
}

/// Field-level merge of `over` onto `base`: mappings merge recursively, `certSANs` lists are unioned,
/// anything else in `over` replaces what `base` had. A key of `over` without a value sets nothing (as in
/// sealer, whose merge overrides only with values that are there), so the result has no key without one.
pub fn merge(base: &mut Value, over: &Value) {
    merge_at(base, over, "");
}

fn merge_at(base: &mut Value, over: &Value, key: &str) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o.iter().filter(|(_, v)| !v.is_null()) {
                let name = k.as_str().unwrap_or_default().to_string();
                match b.get_mut(k) {
                    Some(existing) => merge_at(existing, v, &name),
                    None => {
                        b.insert(k.clone(), without_absent(v));
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) if key == "certSANs" => {
            for item in o {
                if !b.contains(item) {
                    b.push(item.clone());
                }
            }
        }
        (b, o) => *b = without_absent(o),
    }
}

fn api_version_of(kind: &str, kubeadm_version: &'static str) -> &'static str {
    match kind {
        "KubeProxyConfiguration" => "kubeproxy.config.k8s.io/v1alpha1",
        "KubeletConfiguration" => "kubelet.config.k8s.io/v1beta1",
        _ => kubeadm_version,
    }
}

fn render(documents: Vec<(&str, Value)>, kubeadm_version: &'static str) -> String {
    let mut out = String::new();
    for (kind, body) in documents {
        let mut doc = Mapping::new();
        doc.insert("apiVersion".into(), Value::String(api_version_of(kind, kubeadm_version).into()));
        doc.insert("kind".into(), Value::String(kind.into()));
        if let Value::Mapping(m) = body {
            doc.extend(m);
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&Value::Mapping(doc)).unwrap_or_default());
    }
    out
}

/// The merged configuration `kubeadm init --config` gets on the first master: defaults < the image's
/// documents < the Clusterfile's network fields < the Clusterfile's documents.
pub fn init_config(cf: &Clusterfile, image: &[KubeadmDocument], first_master: IpAddr) -> String {
    let version = kubernetes_version(cf, image);
    let mut documents = defaults(first_master, &version);
    for (kind, body) in &mut documents {
        if let Some(layer) = image.iter().find(|d| d.kind == *kind) {
            merge(body, &layer.body);
        }
        if *kind == "ClusterConfiguration" {
            if let Some(pod) = &cf.cluster.pod_cidr {
                body["networking"]["podSubnet"] = Value::String(pod.clone());
            }
            if let Some(svc) = &cf.cluster.svc_cidr {
                body["networking"]["serviceSubnet"] = Value::String(svc.clone());
            }
            let sans = strings(cf.cluster.cert_sans.iter().cloned());
            merge(body, &yaml_with("apiServer", yaml_with("certSANs", sans)));
        }
        if let Some(user) = cf.kubeadm.iter().find(|d| d.kind == *kind) {
            merge(body, &user.body);
        }
    }
    debug_assert!(documents.iter().map(|(k, _)| *k).eq(INIT_KINDS));
    render(documents, kubeadm_api_version(&version))
}

/// The merged configuration as another control-plane member applies it (`kubeadm init phase
/// control-plane`): the same, but advertising its own address.
pub fn for_control_plane_member(config: &str, member: IpAddr) -> Result<String, KubeadmError> {
    let mut out = String::new();
    for (i, document) in serde_yaml::Deserializer::from_str(config).enumerate() {
        let yaml = |e: serde_yaml::Error| KubeadmError::Yaml { document: i + 1, message: e.to_string() };
        let mut doc: Value = serde::Deserialize::deserialize(document).map_err(yaml)?;
        if doc.is_null() {
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("InitConfiguration") {
            merge(
                &mut doc,
                &yaml_with("localAPIEndpoint", yaml_with("advertiseAddress", Value::String(member.to_string()))),
            );
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).map_err(yaml)?);
    }
    Ok(out)
}

/// The merged `JoinConfiguration` a control-plane member joins with (defaults < the image's < the
/// Clusterfile's); the token, CA hash, certificate key and the member's own advertise address are added at
/// apply time ([`with_join_credentials`]), never planned.
pub fn join_config(cf: &Clusterfile, image: &[KubeadmDocument]) -> String {
    let (body, version) = merged_join(cf, image);
    render(vec![("JoinConfiguration", body)], kubeadm_api_version(&version))
}

/// The merged `JoinConfiguration` a worker joins with: the control-plane member's without its
/// `controlPlane` section, since kubeadm joins as a control-plane member exactly when that section is
/// there; the plan shows what the worker will run.
pub fn worker_join_config(cf: &Clusterfile, image: &[KubeadmDocument]) -> String {
    let (mut body, version) = merged_join(cf, image);
    if let Value::Mapping(m) = &mut body {
        m.shift_remove("controlPlane");
    }
    render(vec![("JoinConfiguration", body)], kubeadm_api_version(&version))
}

/// The merged `JoinConfiguration` body and the Kubernetes version it is for.
fn merged_join(cf: &Clusterfile, image: &[KubeadmDocument]) -> (Value, String) {
    let layers: Vec<&KubeadmDocument> =
        image.iter().chain(&cf.kubeadm).filter(|d| d.kind == "JoinConfiguration").collect();
    let version = kubernetes_version(cf, image);
    let mut body = documented("JoinConfiguration");
    body["discovery"]["bootstrapToken"]["apiServerEndpoint"] = Value::String(format!("{API_SERVER_DOMAIN}:6443"));
    body["nodeRegistration"]["criSocket"] = Value::String(cri_socket(&version).into());
    for layer in layers {
        merge(&mut body, &layer.body);
    }
    (body, version)
}

/// What one host joins with: the planned `JoinConfiguration` with the join credentials, and for a
/// control-plane member its `controlPlane` section (its own advertise address and the certificate key).
/// Written to the host 0600 and removed after the join, so no secret is on a command line.
pub fn with_join_credentials(
    config: &str,
    token: &str,
    ca_hash: &str,
    control_plane: Option<(IpAddr, &str)>,
) -> Result<String, KubeadmError> {
    let mut out = String::new();
    for (i, document) in serde_yaml::Deserializer::from_str(config).enumerate() {
        let yaml = |e: serde_yaml::Error| KubeadmError::Yaml { document: i + 1, message: e.to_string() };
        let mut doc: Value = serde::Deserialize::deserialize(document).map_err(yaml)?;
        if doc.get("kind").and_then(Value::as_str) == Some("JoinConfiguration") {
            let text = |s: &str| Value::String(s.to_string());
            let mut bootstrap = Mapping::new();
            bootstrap.insert("token".into(), text(token));
            bootstrap.insert("caCertHashes".into(), Value::Sequence(vec![text(ca_hash)]));
            merge(&mut doc, &yaml_with("discovery", yaml_with("bootstrapToken", Value::Mapping(bootstrap))));
            // kubeadm joins as a control-plane member exactly when this section is there. A worker's
            // planned configuration has none; a plan saved before that was so still does.
            if control_plane.is_none() {
                if let Value::Mapping(m) = &mut doc {
                    m.shift_remove("controlPlane");
                }
            }
            if let Some((address, key)) = control_plane {
                let mut endpoint = Mapping::new();
                endpoint.insert("advertiseAddress".into(), text(&address.to_string()));
                endpoint.insert("bindPort".into(), Value::Number(6443.into()));
                let mut section = Mapping::new();
                section.insert("localAPIEndpoint".into(), Value::Mapping(endpoint));
                section.insert("certificateKey".into(), text(key));
                merge(&mut doc, &yaml_with("controlPlane", Value::Mapping(section)));
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).map_err(yaml)?);
    }
    Ok(out)
}

fn yaml_with(key: &str, value: Value) -> Value {
    let mut m = Mapping::new();
    m.insert(key.into(), value);
    Value::Mapping(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn merge_overrides_scalars_keeps_siblings_and_unions_cert_sans() {
        let mut base = yaml("a: {b: 1, c: 2}\napiServer: {certSANs: [x, y]}\nlist: [1, 2]\n");
        merge(&mut base, &yaml("a: {b: 9}\napiServer: {certSANs: [y, z]}\nlist: [3]\n"));
        assert_eq!(base, yaml("a: {b: 9, c: 2}\napiServer: {certSANs: [x, y, z]}\nlist: [3]\n"));
    }

    #[test]
    fn the_image_layer_sits_between_defaults_and_the_clusterfile() {
        let text = "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec:\n  image: k:v1.22.15\n  hosts:\n    - {ips: [10.0.0.2], roles: [master]}\n\
                    ---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n    from: clusterfile\n";
        let cf = crate::parse("Clusterfile", text).unwrap().clusterfile;
        let image = parse_image_documents(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: v1.21.4\napiServer:\n  extraArgs:\n    from: image\n    image-only: \"1\"\n",
        )
        .unwrap();
        let merged = init_config(&cf, &image, "10.0.0.2".parse().unwrap());
        assert!(merged.contains("from: clusterfile") && merged.contains("image-only: '1'"), "{merged}");
        assert!(merged.contains("audit-log-format: json"), "defaults stay under both: {merged}");
        assert!(merged.contains("kubernetesVersion: v1.21.4") && merged.contains("kubeadm.k8s.io/v1beta2"), "{merged}");
        assert!(parse_image_documents("kind: Pod\n").is_err());
    }

    #[test]
    fn another_member_advertises_its_own_address_and_keeps_the_rest() {
        let text = "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec:\n  image: k:v1.22.15\n  hosts:\n    - {ips: [10.0.0.2, 10.0.0.3], roles: [master]}\n";
        let cf = crate::parse("Clusterfile", text).unwrap().clusterfile;
        let first = init_config(&cf, &[], "10.0.0.2".parse().unwrap());
        let member = for_control_plane_member(&first, "10.0.0.3".parse().unwrap()).unwrap();
        assert_eq!(member, first.replace("advertiseAddress: 10.0.0.2", "advertiseAddress: 10.0.0.3"));
        assert_ne!(member, first);
    }

    #[test]
    fn keys_without_a_value_are_never_merged_in() {
        let mut base = yaml("a: {b: 1}\nc: 2\n");
        merge(&mut base, &yaml("a: {b: ~, d: {e: ~, f: 3}}\nc: {g: ~}\nh:\n"));
        assert_eq!(base, yaml("a: {b: 1, d: {f: 3}}\nc: {}\n"), "a key without a value sets nothing");
    }

    #[test]
    fn the_merged_kubelet_configuration_leaves_the_cgroup_driver_to_kubeadm() {
        let text = "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec:\n  image: k:v1.22.15\n  hosts:\n    - {ips: [10.0.0.2], roles: [master]}\n";
        let cf = crate::parse("Clusterfile", text).unwrap().clusterfile;
        let merged = init_config(&cf, &[], "10.0.0.2".parse().unwrap());
        assert!(!merged.contains("null") && !merged.contains("cgroupDriver"), "{merged}");
        assert!(merged.contains("cgroupsPerQOS: true"), "the rest of the document stays: {merged}");
        // A value given by the image or the Clusterfile is planned as given.
        let image = parse_image_documents(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
        )
        .unwrap();
        assert!(init_config(&cf, &image, "10.0.0.2".parse().unwrap()).contains("\ncgroupDriver: systemd\n"));
    }

    #[test]
    fn a_worker_joins_without_the_control_plane_section_and_a_master_with_it() {
        let text = "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec:\n  image: k:v1.22.15\n  hosts:\n    - {ips: [10.0.0.2, 10.0.0.3], roles: [master]}\n    - {ips: [10.0.0.5], roles: [node]}\n\
                    ---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: '150'\n";
        let cf = crate::parse("Clusterfile", text).unwrap().clusterfile;
        let (master, worker) = (join_config(&cf, &[]), worker_join_config(&cf, &[]));
        assert!(master.contains("controlPlane:\n  localAPIEndpoint:\n    bindPort: 6443\n"), "{master}");
        assert!(!worker.contains("controlPlane"), "{worker}");
        let line_diff: Vec<&str> = master.lines().filter(|l| !worker.lines().any(|w| w == *l)).collect();
        assert_eq!(line_diff, ["controlPlane:", "  localAPIEndpoint:", "    bindPort: 6443"], "nothing else differs");
        assert!(worker.contains("max-pods: '150'"));
    }

    #[test]
    fn configurations_recorded_before_the_tidying_ask_for_the_same() {
        let text = "apiVersion: sealer.cloud/v2\nkind: Cluster\nspec:\n  image: k:v1.22.15\n  hosts:\n    - {ips: [10.0.0.2], roles: [master]}\n    - {ips: [10.0.0.5], roles: [node]}\n";
        let cf = crate::parse("Clusterfile", text).unwrap().clusterfile;
        let init = init_config(&cf, &[], "10.0.0.2".parse().unwrap());
        let recorded_init = init.replace("cgroupsPerQOS: true", "cgroupDriver: null\ncgroupsPerQOS: true");
        assert_ne!(init, recorded_init);
        assert!(same_planned_config(&init, &recorded_init, true));
        assert!(!differs_beyond_version(&recorded_init, &init), "no reconfiguration of the control plane");
        assert!(!same_planned_config(&init.replace("maxPods: 110", "maxPods: 111"), &recorded_init, true));
        let (master, worker) = (join_config(&cf, &[]), worker_join_config(&cf, &[]));
        assert!(same_planned_config(&worker, &master, false), "a worker never used its recorded section");
        assert!(!same_planned_config(&worker, &master, true), "a master joins with it");
        assert!(!same_planned_config(&worker.replace("5m0s", "6m0s"), &master, false));
    }

    #[test]
    fn api_version_follows_kubernetes_version() {
        assert_eq!(kubeadm_api_version("v1.21.3"), "kubeadm.k8s.io/v1beta2");
        assert_eq!(kubeadm_api_version("v1.22.0"), "kubeadm.k8s.io/v1beta3");
        assert_eq!(kubeadm_api_version("v1.28.1"), "kubeadm.k8s.io/v1beta3");
    }
}

#[cfg(test)]
mod join_tests {
    use super::*;

    #[test]
    fn join_credentials_go_into_the_join_configuration_only() {
        let config = "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    \
                      apiServerEndpoint: apiserver.cluster.local:6443\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: '150'\n";
        let node = with_join_credentials(config, "abcdef.0123456789abcdef", "sha256:00ff", None).unwrap();
        let doc: Value = serde_yaml::from_str(node.trim_start_matches("---\n")).unwrap();
        let bt = &doc["discovery"]["bootstrapToken"];
        assert_eq!(bt["token"], Value::from("abcdef.0123456789abcdef"));
        assert_eq!(bt["caCertHashes"][0], Value::from("sha256:00ff"));
        assert_eq!(bt["apiServerEndpoint"], Value::from("apiserver.cluster.local:6443"));
        assert_eq!(doc["nodeRegistration"]["kubeletExtraArgs"]["max-pods"], Value::from("150"));
        assert!(doc.get("controlPlane").is_none());
        let master = with_join_credentials(config, "t", "h", Some(("10.0.0.3".parse().unwrap(), "key"))).unwrap();
        let doc: Value = serde_yaml::from_str(master.trim_start_matches("---\n")).unwrap();
        assert_eq!(doc["controlPlane"]["certificateKey"], Value::from("key"));
        assert_eq!(doc["controlPlane"]["localAPIEndpoint"]["advertiseAddress"], Value::from("10.0.0.3"));
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;

    #[test]
    fn kubeadm_upgrades_one_minor_version_at_a_time_and_never_down() {
        assert_eq!(check_upgrade("v1.22.15", "v1.23.0"), Ok(()));
        assert_eq!(check_upgrade("v1.22.1", "v1.22.15"), Ok(()));
        assert_eq!(check_upgrade("v1.22.15", "v1.22.15"), Ok(()));
        assert_eq!(check_upgrade("v1.22.15", "v1.24.0"), Err(UpgradeRefusal::SkipsMinor { major: 1, next: 23 }));
        assert_eq!(check_upgrade("v1.23.0", "v1.22.15"), Err(UpgradeRefusal::Downgrade));
        assert_eq!(check_upgrade("v1.22.15", "v2.0.0"), Err(UpgradeRefusal::Major));
        assert_eq!(check_upgrade("latest", "v1.23.0"), Err(UpgradeRefusal::NotAVersion("latest".into())));
        assert_eq!(
            check_upgrade("v1.22.15", "v1.24.0").unwrap_err().to_string(),
            "kubeadm upgrades one minor version at a time: go to v1.23 first"
        );
    }

    #[test]
    fn only_the_version_changing_is_not_a_reconfiguration() {
        let a = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: v1.22.15\nclusterName: x\n";
        let b = a.replace("v1.22.15", "v1.23.0");
        assert!(!differs_beyond_version(a, &b));
        assert!(differs_beyond_version(a, &b.replace("clusterName: x", "clusterName: y")));
    }
}

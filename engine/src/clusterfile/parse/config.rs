//! Config documents and the kubeadm documents a Clusterfile carries.

use super::*;

pub(super) fn read_config(r: &mut DocReader<'_>, doc: &Value) -> Option<ConfigFile> {
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

pub(super) fn read_kubeadm(r: &mut DocReader<'_>, doc: &Value, api_version: String, kind: String, b: &mut Builder) {
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

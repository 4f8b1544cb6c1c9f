//! The lite build: every container image a cluster image's `manifests/`, `charts/` and
//! `manifests/imageList` name is pulled into the image's `registry/` directory, in the storage layout a
//! distribution registry serves, so that at install time the first master serves them and no host needs
//! the internet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Reference;
use serde_yaml::Value;
use sha2::{Digest, Sha256};

use super::mirrors::Mirrors;
use super::oci::{client_for, RegistryOptions};
use super::store::ImageError;

/// `nginx` → `docker.io/library/nginx:latest`, the way Docker reads references.
pub fn normalize(reference: &str) -> Option<String> {
    let r = reference.trim();
    if r.is_empty() || r.contains("{{") || r.contains(char::is_whitespace) {
        return None;
    }
    let (first, rest) = r.split_once('/').unwrap_or(("", r));
    let qualified = if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        r.to_string()
    } else {
        format!("docker.io/{r}")
    };
    let last = qualified.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || qualified.contains('@') {
        Some(qualified)
    } else {
        Some(format!("{qualified}:latest"))
    }
}

fn images_in_workloads(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default();
                if matches!(key, "containers" | "initContainers" | "ephemeralContainers") {
                    for c in v.as_sequence().into_iter().flatten() {
                        if let Some(image) = c.get("image").and_then(Value::as_str) {
                            out.extend(normalize(image));
                        }
                    }
                }
                images_in_workloads(v, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| images_in_workloads(i, out)),
        _ => {}
    }
}

fn images_in_values(value: &Value, out: &mut BTreeSet<String>) {
    if let Value::Mapping(m) = value {
        match (m.get("repository").and_then(Value::as_str), m.get("tag")) {
            (Some(repo), Some(tag)) => {
                let tag = match tag {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                out.extend(normalize(&if tag.is_empty() { repo.to_string() } else { format!("{repo}:{tag}") }));
            }
            _ => {
                if let Some(image) = m.get("image").and_then(Value::as_str) {
                    out.extend(normalize(image));
                }
            }
        }
        m.values().for_each(|v| images_in_values(v, out));
    } else if let Value::Sequence(items) = value {
        items.iter().for_each(|i| images_in_values(i, out));
    }
}

/// Every file under `dir`, links not followed: what the scan reads stays inside the rootfs.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => files(&entry.path(), out),
            Ok(t) if t.is_file() => out.push(entry.path()),
            _ => {}
        }
    }
}

/// Top-level directories of the rootfs the generic scan leaves out: `manifests` (read with its image
/// list), `charts` (templates are not YAML until rendered), and sealer's own — the registry's storage
/// and the plugins.
const NOT_WORKLOADS: [&str; 4] = ["manifests", "charts", "registry", "plugins"];

/// A file larger than this is not read for images (no manifest is; a stray dump would cost memory).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The images the Kubernetes objects of `file` name (YAML or JSON, several documents); a file that is not
/// YAML is noted and skipped.
fn read_workloads(file: &Path, found: &mut BTreeSet<String>, notes: &mut Vec<String>) {
    if std::fs::metadata(file).is_ok_and(|m| m.len() > MAX_MANIFEST_BYTES) {
        notes.push(format!("skipped {} (over {} MiB)", file.display(), MAX_MANIFEST_BYTES >> 20));
        return;
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    for document in serde_yaml::Deserializer::from_str(&text) {
        match serde::Deserialize::deserialize(document) {
            // Only Kubernetes objects (with a kind) name workload images; other YAML is skipped.
            Ok(v @ Value::Mapping(_)) if v.get("kind").is_some() => images_in_workloads(&v, found),
            Ok(_) => {}
            Err(e) => {
                notes.push(format!("skipped {} (not YAML: {e})", file.display()));
                break;
            }
        }
    }
}

fn is_yaml(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// What the image's CMDs apply from the rootfs: the files and directories of `kubectl apply|create|replace
/// -f PATH` and the chart directories `helm install|upgrade` names, resolved inside the rootfs (a path that
/// leads out of it, or is a URL, is noted, not read).
fn applied_by_cmds(rootfs: &Path, cmds: &[String], notes: &mut Vec<String>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut manifests, mut charts) = (Vec::new(), Vec::new());
    let Ok(root) = rootfs.canonicalize() else { return (manifests, charts) };
    let inside = |path: &str| -> Option<PathBuf> {
        let p = root.join(path).canonicalize().ok()?;
        p.starts_with(&root).then_some(p)
    };
    for cmd in cmds {
        // Each command of a CMD line (`a && b; c | d`) on its own.
        for command in cmd.split(['&', ';', '|', '\n']) {
            let words: Vec<&str> = command.split_whitespace().map(|w| w.trim_matches(['"', '\''])).collect();
            match words.first().map(|w| w.rsplit('/').next().unwrap_or(w)) {
                Some("kubectl") if words.iter().any(|w| matches!(*w, "apply" | "create" | "replace")) => {
                    let mut paths = Vec::new();
                    for (i, w) in words.iter().enumerate() {
                        if let Some(p) = w.strip_prefix("--filename=").or_else(|| w.strip_prefix("-f=")) {
                            paths.push(p);
                        } else if matches!(*w, "-f" | "--filename") {
                            paths.extend(words.get(i + 1));
                        }
                    }
                    for path in paths.into_iter().filter(|p| *p != "-") {
                        if path.starts_with("http://") || path.starts_with("https://") {
                            notes.push(format!(
                                "CMD `{}` applies {path} when it runs: its container images are not carried \
                                 (download it with RUN)",
                                command.trim()
                            ));
                            continue;
                        }
                        match inside(path) {
                            Some(p) if p.is_dir() => {
                                let mut found = Vec::new();
                                files(&p, &mut found);
                                manifests.extend(
                                    found
                                        .into_iter()
                                        .filter(|f| is_yaml(f) || f.extension().is_some_and(|e| e == "json")),
                                );
                            }
                            Some(p) => manifests.push(p),
                            None => notes.push(format!(
                                "CMD `{}`: `{path}` is not a file of the image: its container images are not carried",
                                command.trim()
                            )),
                        }
                    }
                }
                Some("helm") if words.iter().any(|w| matches!(*w, "install" | "upgrade")) => {
                    charts.extend(
                        words
                            .iter()
                            .skip(1)
                            .filter(|w| !w.starts_with('-'))
                            .filter_map(|w| inside(w))
                            .filter(|d| d.join("Chart.yaml").is_file()),
                    );
                }
                _ => {}
            }
        }
    }
    (manifests, charts)
}

/// Every container image the rootfs names, normalised and de-duplicated, with notes for the build output:
/// `manifests/` (its YAML and `imageList`), `charts/`, what the image's CMDs apply, and every Kubernetes
/// object in a YAML file elsewhere in the rootfs (outside sealer's own directories).
pub fn collect(rootfs: &Path, cmds: &[String]) -> (Vec<String>, Vec<String>) {
    let mut found = BTreeSet::new();
    let mut notes = Vec::new();
    let mut manifests = Vec::new();
    files(&rootfs.join("manifests"), &mut manifests);
    let mut elsewhere = Vec::new();
    for entry in std::fs::read_dir(rootfs).into_iter().flatten().flatten() {
        let name = entry.file_name();
        match entry.file_type() {
            Ok(t) if t.is_dir() && !NOT_WORKLOADS.iter().any(|d| name == *d) => files(&entry.path(), &mut elsewhere),
            Ok(t) if t.is_file() => elsewhere.push(entry.path()),
            _ => {}
        }
    }
    // A chart's templates are not YAML until rendered: charts outside `charts/` are read as charts only.
    elsewhere.retain(|f| !f.ancestors().skip(1).take_while(|d| *d != rootfs).any(|d| d.join("Chart.yaml").is_file()));
    let (applied, applied_charts) = applied_by_cmds(rootfs, cmds, &mut notes);
    let mut yaml: Vec<PathBuf> = manifests.iter().chain(&elsewhere).filter(|f| is_yaml(f)).cloned().collect();
    // What a CMD applies is read whatever its name: sealer knows it is a manifest.
    yaml.extend(applied);
    yaml.sort();
    yaml.dedup();
    for file in &manifests {
        if file.file_name().is_some_and(|n| n == "imageList") {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for line in text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).filter(|l| !l.is_empty()) {
                found.extend(normalize(line));
            }
        }
    }
    for file in &yaml {
        read_workloads(file, &mut found, &mut notes);
    }
    let mut charts = Vec::new();
    files(&rootfs.join("charts"), &mut charts);
    let mut chart_dirs: Vec<PathBuf> = charts
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "Chart.yaml"))
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    let known = |d: &PathBuf| chart_dirs.iter().any(|c| c.canonicalize().ok().as_ref() == Some(d));
    let more: Vec<PathBuf> = applied_charts.into_iter().filter(|d| !known(d)).collect();
    for dir in &more {
        charts.push(dir.join("values.yaml"));
    }
    chart_dirs.extend(more);
    let mut unrendered = Vec::new();
    for dir in chart_dirs {
        match helm_template(&dir) {
            Some(Ok(rendered)) => {
                for document in serde_yaml::Deserializer::from_str(&rendered) {
                    if let Ok(v @ Value::Mapping(_)) = serde::Deserialize::deserialize(document) {
                        images_in_workloads(&v, &mut found);
                    }
                }
            }
            Some(Err(e)) => {
                notes.push(format!("charts: `helm template {}` failed ({e}); reading its values.yaml", dir.display()));
                unrendered.push(dir);
            }
            None => unrendered.push(dir),
        }
    }
    // Charts helm did not render (no helm on PATH, or it failed), and bare values files: their images
    // are read from the values (`image`, or `repository` with `tag`).
    charts.retain(|f| f.file_name().is_some_and(|n| n == "values.yaml"));
    charts.retain(|values| {
        let dir = values.parent().unwrap_or(Path::new(""));
        unrendered.iter().any(|u| u == dir) || !dir.join("Chart.yaml").exists()
    });
    if !charts.is_empty() && !helm_available() {
        notes.push("charts: images read from values.yaml (templates were not rendered: helm is not on PATH)".into());
    }
    for values in charts {
        if let Ok(v) = serde_yaml::from_str::<Value>(&std::fs::read_to_string(&values).unwrap_or_default()) {
            images_in_values(&v, &mut found);
        }
    }
    (found.into_iter().collect(), notes)
}

fn helm_available() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("helm").is_file()))
}

/// Why `helm template` gave nothing to read.
#[derive(Debug, thiserror::Error)]
enum HelmError {
    #[error("cannot run helm: {0}")]
    Run(#[source] std::io::Error),
    #[error("{0}")]
    Failed(String),
}

/// `helm template` of a chart directory: `None` when helm is not on PATH.
fn helm_template(chart: &Path) -> Option<Result<String, HelmError>> {
    if !helm_available() {
        return None;
    }
    let name = chart.file_name().and_then(|n| n.to_str()).unwrap_or("chart");
    let out = match std::process::Command::new("helm").arg("template").arg(name).arg(chart).output() {
        Ok(out) => out,
        Err(e) => return Some(Err(HelmError::Run(e))),
    };
    Some(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HelmError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    })
}

fn io(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Writes `relative` under `root` (creating directories), unless it is there already.
fn put(root: &Path, relative: &str, data: &[u8]) -> Result<(), ImageError> {
    let path = root.join(relative);
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    std::fs::write(&path, data).map_err(|e| io(&path, e))
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn blob_path(digest: &str) -> String {
    let h = hex(digest);
    format!("docker/registry/v2/blobs/sha256/{}/{h}/data", &h[..2.min(h.len())])
}

const MANIFEST_TYPES: [&str; 4] =
    [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE];

/// Pulls every image into `registry_root` (the image's `registry/`), all platforms unless `platforms`
/// names some (`linux/amd64`). Manifests and blobs are checked against their digests.
pub async fn pull_into(
    registry_root: &Path,
    images: &[String],
    platforms: &[String],
    mirrors: &Mirrors,
    options: impl Fn(&str) -> RegistryOptions,
    mut say: impl FnMut(&str),
) -> Result<(), ImageError> {
    for name in images {
        let fail = |what: &str, e: &dyn std::fmt::Display| ImageError::Io {
            path: name.clone(),
            message: format!("{what}: {e}"),
        };
        let original: Reference = name.parse().map_err(|e| fail("not an image reference", &e))?;
        let repo = original.repository().to_string();
        let (reference, opts) = source_of(&original, mirrors, &options);
        let (client, auth) = client_for(&reference, &opts);
        let (raw, digest) =
            client.pull_manifest_raw(&reference, &auth, &MANIFEST_TYPES).await.map_err(|e| fail("manifest", &e))?;
        let mut queue = vec![(raw.to_vec(), digest.clone())];
        let mut first = true;
        while let Some((raw, digest)) = queue.pop() {
            let actual = format!("sha256:{:x}", Sha256::digest(&raw));
            if actual != digest {
                return Err(fail("manifest digest mismatch", &format!("expected {digest}, got {actual}")));
            }
            put(registry_root, &blob_path(&digest), &raw)?;
            let link =
                format!("docker/registry/v2/repositories/{repo}/_manifests/revisions/sha256/{}/link", hex(&digest));
            put(registry_root, &link, digest.as_bytes())?;
            if first {
                keep_tag(registry_root, &repo, reference.tag().unwrap_or("latest"), &digest)?;
                first = false;
            }
            let manifest: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| fail("manifest JSON", &e))?;
            if let Some(children) = manifest["manifests"].as_array() {
                for child in children {
                    let platform = format!(
                        "{}/{}",
                        child["platform"]["os"].as_str().unwrap_or(""),
                        child["platform"]["architecture"].as_str().unwrap_or("")
                    );
                    if !platforms.is_empty() && !platforms.contains(&platform) {
                        continue;
                    }
                    let child_digest = child["digest"].as_str().unwrap_or_default().to_string();
                    let by_digest =
                        Reference::with_digest(reference.registry().to_string(), repo.clone(), child_digest.clone());
                    let (raw, got) = client
                        .pull_manifest_raw(&by_digest, &auth, &MANIFEST_TYPES)
                        .await
                        .map_err(|e| fail("platform manifest", &e))?;
                    queue.push((raw.to_vec(), if got.is_empty() { child_digest } else { got }));
                }
                continue;
            }
            keep_blobs(&client, &reference, (registry_root, &repo), &manifest, &fail).await?;
        }
        say(&format!("image {name} {digest}"));
    }
    Ok(())
}

/// Where `original` is fetched from: the registry's mirror when it has one (kept under its own name
/// either way), with that registry's options.
fn source_of(
    original: &Reference,
    mirrors: &Mirrors,
    options: &impl Fn(&str) -> RegistryOptions,
) -> (Reference, RegistryOptions) {
    let Some(mirror) = mirrors.of(original.resolve_registry()) else {
        return (original.clone(), options(original.resolve_registry()));
    };
    let repo = original.repository().to_string();
    let reference = match original.digest() {
        Some(d) => Reference::with_digest(mirror.host.clone(), repo, d.to_string()),
        None => Reference::with_tag(mirror.host.clone(), repo, original.tag().unwrap_or("latest").to_string()),
    };
    let mut opts = options(&mirror.host);
    opts.insecure |= mirror.plain_http;
    (reference, opts)
}

/// The tag of `repo` in the registry's storage, pointing at `digest`.
fn keep_tag(registry_root: &Path, repo: &str, tag: &str, digest: &str) -> Result<(), ImageError> {
    let current = format!("docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link");
    std::fs::create_dir_all(registry_root.join(&current).parent().unwrap_or(registry_root))
        .map_err(|e| io(registry_root, e))?;
    std::fs::write(registry_root.join(&current), digest.as_bytes()).map_err(|e| io(registry_root, e))?;
    let index =
        format!("docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/index/sha256/{}/link", hex(digest));
    put(registry_root, &index, digest.as_bytes())
}

/// The layers and configuration an image manifest names, fetched unless the storage has them, checked
/// against their digests, and linked to `repo`.
async fn keep_blobs(
    client: &oci_client::Client,
    reference: &Reference,
    (registry_root, repo): (&Path, &str),
    manifest: &serde_json::Value,
    fail: &dyn Fn(&str, &dyn std::fmt::Display) -> ImageError,
) -> Result<(), ImageError> {
    let mut blobs: Vec<String> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect();
    blobs.extend(manifest["config"]["digest"].as_str().map(str::to_string));
    for blob in blobs {
        let target = registry_root.join(blob_path(&blob));
        if !target.exists() {
            let mut data = Vec::new();
            client.pull_blob(reference, blob.as_str(), &mut data).await.map_err(|e| fail("blob", &e))?;
            let actual = format!("sha256:{:x}", Sha256::digest(&data));
            if actual != blob {
                return Err(fail("blob digest mismatch", &format!("expected {blob}, got {actual}")));
            }
            put(registry_root, &blob_path(&blob), &data)?;
        }
        let link = format!("docker/registry/v2/repositories/{repo}/_layers/sha256/{}/link", hex(&blob));
        put(registry_root, &link, blob.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(normalize("nginx").as_deref(), Some("docker.io/library/nginx:latest"));
        assert_eq!(normalize("nginx:1.25").as_deref(), Some("docker.io/library/nginx:1.25"));
        assert_eq!(normalize("bitnami/redis").as_deref(), Some("docker.io/bitnami/redis:latest"));
        assert_eq!(normalize("quay.io/x/y:1").as_deref(), Some("quay.io/x/y:1"));
        assert_eq!(normalize("127.0.0.1:5000/a/b").as_deref(), Some("127.0.0.1:5000/a/b:latest"));
        assert_eq!(normalize("localhost/a@sha256:00").as_deref(), Some("localhost/a@sha256:00"));
        assert_eq!(normalize("{{ .Values.image }}"), None);
    }

    /// Beyond `manifests/` and `charts/`: what the CMDs apply (any name, a directory, a chart given to
    /// helm), and Kubernetes objects in YAML anywhere else in the rootfs; never through a link, never
    /// outside the rootfs, never sealer's own plugins or a URL (noted instead).
    #[test]
    fn what_the_cmds_apply_and_workloads_elsewhere_are_collected_inside_the_rootfs_only() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("rootfs");
        for d in ["extra", "deploy", "plugins", "mychart/templates"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let pod = |image: &str| {
            format!("apiVersion: v1\nkind: Pod\nspec:\n  containers: [{{name: c, image: \"{image}\"}}]\n")
        };
        std::fs::write(dir.join("recommended.yaml"), pod("kubernetesui/dashboard:v2.0.0")).unwrap();
        std::fs::write(
            dir.join("app.json"),
            r#"{"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": "json-app:1"}]}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("deploy/a.yml"), pod("in-dir:1")).unwrap();
        std::fs::write(dir.join("extra/others.yaml"), pod("elsewhere:1")).unwrap();
        std::fs::write(dir.join("plugins/p.yaml"), pod("plugin-doc:1")).unwrap();
        std::fs::write(dir.join("mychart/Chart.yaml"), "name: mychart\n").unwrap();
        std::fs::write(dir.join("mychart/values.yaml"), "image: {repository: chart-app, tag: \"3\"}\n").unwrap();
        std::fs::write(dir.join("mychart/templates/d.yaml"), "image: {{ .Values.image.repository }}\n").unwrap();
        std::fs::write(top.path().join("outside.yaml"), pod("outside:1")).unwrap();
        std::os::unix::fs::symlink(top.path(), dir.join("link")).unwrap();
        let cmds = [
            "kubectl apply -f recommended.yaml && kubectl create --filename=app.json".to_string(),
            "kubectl apply -f deploy/".to_string(),
            "kubectl apply -f ../outside.yaml; kubectl apply -f https://example.com/x.yaml".to_string(),
            "helm install app mychart --namespace x".to_string(),
        ];
        let (images, notes) = collect(&dir, &cmds);
        let mut expected = vec![
            "docker.io/kubernetesui/dashboard:v2.0.0",
            "docker.io/library/elsewhere:1",
            "docker.io/library/in-dir:1",
            "docker.io/library/json-app:1",
        ];
        // The chart's images: rendered by helm when it is on PATH, else read from its values.
        if !helm_available() {
            expected.insert(0, "docker.io/library/chart-app:3");
        }
        expected.sort_unstable();
        assert_eq!(images, expected, "{notes:?}");
        assert!(!notes.iter().any(|n| n.contains("d.yaml")), "a chart's templates are not read as YAML: {notes:?}");
        assert!(notes.iter().any(|n| n.contains("`../outside.yaml` is not a file of the image")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("applies https://example.com/x.yaml when it runs")), "{notes:?}");
    }

    #[test]
    fn workloads_charts_and_image_lists_are_collected() {
        let dir = std::env::temp_dir().join(format!("sealer-lite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("manifests/sub")).unwrap();
        std::fs::create_dir_all(dir.join("charts/app")).unwrap();
        std::fs::write(
            dir.join("manifests/app.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers: [{name: i, image: busybox}]\n      containers: [{name: c, image: nginx:1.25}]\n---\n\
             apiVersion: batch/v1\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: j, image: quay.io/x/job:2}]\n",
        )
        .unwrap();
        std::fs::write(dir.join("manifests/sub/pod.yml"), "apiVersion: v1\nkind: Pod\nspec:\n  ephemeralContainers: [{name: e, image: debug:1}]\n  containers: [{name: c, image: nginx:1.25}]\n").unwrap();
        std::fs::write(dir.join("manifests/not-k8s.yaml"), "image: not-collected:1\n").unwrap();
        std::fs::write(dir.join("manifests/broken.yaml"), "a: [\n").unwrap();
        std::fs::write(dir.join("manifests/imageList"), "# pinned\nregistry.k8s.io/pause:3.9\n\nredis # cache\n")
            .unwrap();
        std::fs::write(
            dir.join("charts/app/values.yaml"),
            "image:\n  repository: bitnami/app\n  tag: 7.0\nsidecar:\n  image: envoy:v1\n",
        )
        .unwrap();
        let (images, notes) = collect(&dir, &[]);
        assert_eq!(
            images,
            [
                "docker.io/bitnami/app:7.0",
                "docker.io/library/busybox:latest",
                "docker.io/library/debug:1",
                "docker.io/library/envoy:v1",
                "docker.io/library/nginx:1.25",
                "docker.io/library/redis:latest",
                "quay.io/x/job:2",
                "registry.k8s.io/pause:3.9",
            ]
        );
        assert!(notes.iter().any(|n| n.contains("broken.yaml")) && notes.iter().any(|n| n.contains("not rendered")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

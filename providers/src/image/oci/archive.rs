//! `sealer save` and `sealer load`: images as OCI archives.

use super::pull::layer_groups;
use super::*;

/// A stored image as the three OCI blobs an archive holds.
pub(super) struct OciBlobs {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

pub(super) fn blobs(store: &ImageStore, name: &str) -> Result<OciBlobs, ImageError> {
    let image = store.get(name)?;
    let layer = layer(&image.rootfs)?;
    let diff_id = sha256(&layer);
    let json = |e: serde_json::Error| ImageError::Io { path: name.to_string(), message: e.to_string() };
    let config = serde_json::to_vec(&oci_config(&image.config, &diff_id)).map_err(json)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": IMAGE_CONFIG_MEDIA_TYPE, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": IMAGE_LAYER_MEDIA_TYPE, "digest": diff_id, "size": layer.len()}],
    }))
    .map_err(json)?;
    Ok(OciBlobs { manifest, config, layer })
}

/// `sealer save`: the image as an OCI archive (an OCI image layout in a tar), which `load` and other OCI
/// tools (`skopeo ... oci-archive:FILE`) read.
pub fn save(store: &ImageStore, name: &str, file: &Path) -> Result<String, ImageError> {
    let OciBlobs { manifest, config, layer } = blobs(store, name)?;
    let digest = sha256(&manifest);
    let staging = store.work_dir()?;
    let fail = |e: std::io::Error| ImageError::Io { path: file.display().to_string(), message: e.to_string() };
    let layout = staging.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).map_err(fail)?;
    for data in [&manifest, &config, &layer] {
        let d = sha256(data);
        std::fs::write(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:")), data).map_err(fail)?;
    }
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion": "1.0.0"}"#).map_err(fail)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).map_err(fail)?;
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(file)
        .arg(".")
        .status()
        .map_err(fail)?;
    store.discard(&staging);
    if !status.success() {
        return Err(ImageError::Io { path: file.display().to_string(), message: "tar failed".into() });
    }
    Ok(digest)
}

/// `sealer load`: every image of an OCI archive into the store, each blob checked against its digest.
pub fn load(store: &ImageStore, file: &Path) -> Result<Vec<ImageConfig>, ImageError> {
    let fail = |m: String| ImageError::Io { path: file.display().to_string(), message: m };
    let staging = store.work_dir()?;
    let layout = staging.join("layout");
    std::fs::create_dir_all(&layout).map_err(|e| fail(e.to_string()))?;
    let result = (|| {
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-xf")
            .arg(file)
            .status()
            .map_err(|e| fail(e.to_string()))?;
        if !status.success() {
            return Err(fail("not a tar archive".into()));
        }
        let blobs = layout.join("blobs/sha256");
        let blob = |digest: &str| -> Result<Vec<u8>, ImageError> {
            let data = std::fs::read(blobs.join(checked_digest(digest).map_err(|e| fail(e.to_string()))?))
                .map_err(|e| fail(format!("blob {digest}: {e}")))?;
            if sha256(&data) != digest {
                return Err(fail(format!("blob {digest} does not match its digest")));
            }
            Ok(data)
        };
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(layout.join("index.json")).map_err(|e| fail(format!("index.json: {e}")))?,
        )
        .map_err(|e| fail(format!("index.json: {e}")))?;
        let mut loaded = Vec::new();
        for entry in index["manifests"].as_array().into_iter().flatten() {
            let name = entry["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .ok_or_else(|| fail("an image without a name".into()))?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&blob(entry["digest"].as_str().unwrap_or_default())?)
                    .map_err(|e| fail(e.to_string()))?;
            let config: serde_json::Value =
                serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap_or_default())?)
                    .map_err(|e| fail(e.to_string()))?;
            let descriptors: Vec<OciDescriptor> = serde_json::from_value(manifest["layers"].clone())
                .map_err(|e| fail(format!("the layers of `{name}`: {e}")))?;
            let layers = layer_groups(&descriptors).map_err(|e| fail(format!("`{name}`: {e}")))?;
            let work = store.work_dir()?;
            for layer in layers {
                let files: Vec<PathBuf> =
                    layer.blobs.iter().filter_map(|b| Some(blobs.join(checked_digest(&b.digest).ok()?))).collect();
                // Every blob is checked: a layer's own digest, or the whole a layer's pieces make.
                let expected = layer.whole_digest.as_deref().unwrap_or(&layer.blobs[0].digest);
                if let Err(e) = unpack_files(&files, layer.gzip, Some(expected), &work.join("rootfs")) {
                    store.discard(&work);
                    return Err(fail(format!("layer of `{name}`: {e}")));
                }
            }
            loaded.push(store.commit(&work, image_config(name, &config), &Quiet)?);
        }
        Ok(loaded)
    })();
    store.discard(&staging);
    result
}

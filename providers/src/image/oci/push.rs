//! `sealer push`: an image's layer, in pieces a registry takes, its configuration and manifest.

use super::*;

/// What a push did.
pub struct Pushed {
    pub manifest_digest: String,
    pub blobs: usize,
    pub bytes_sent: u64,
    pub blobs_skipped: usize,
    /// Bytes of the blobs the registry had already (an earlier push, interrupted or not) and that were
    /// not sent again.
    pub bytes_skipped: u64,
}

/// The layer's descriptors with the byte range each covers: the layer itself when it fits in one
/// request, its pieces otherwise.
pub(super) fn layer_descriptors(data: &[u8], diff_id: &str) -> Vec<(OciDescriptor, std::ops::Range<usize>)> {
    if data.len() <= PUSH_PIECE {
        let descriptor = OciDescriptor {
            media_type: IMAGE_LAYER_MEDIA_TYPE.into(),
            digest: diff_id.to_string(),
            size: data.len() as i64,
            ..OciDescriptor::default()
        };
        return vec![(descriptor, 0..data.len())];
    }
    (0..data.len())
        .step_by(PUSH_PIECE)
        .map(|start| {
            let range = start..(start + PUSH_PIECE).min(data.len());
            let descriptor = OciDescriptor {
                media_type: LAYER_PIECE_MEDIA_TYPE.into(),
                digest: sha256(&data[range.clone()]),
                size: range.len() as i64,
                annotations: Some([(PIECE_OF_ANNOTATION.to_string(), diff_id.to_string())].into()),
                ..OciDescriptor::default()
            };
            (descriptor, range)
        })
        .collect()
}

/// Pushes image `name` of the local store to the registry its name points at: each blob the registry
/// lacks goes up in one request; blobs it already has are skipped, so a re-run after an interrupted push
/// sends only the rest (and the piece that was cut off).
pub async fn push(
    store: &ImageStore,
    name: &str,
    opts: &RegistryOptions,
    progress: &dyn TransferProgress,
) -> Result<Pushed, ImageError> {
    let image = store.get(name)?;
    let reference = reference(name)?;
    let data = layer(&image.rootfs)?;
    let diff_id = sha256(&data);
    let config = serde_json::to_vec(&oci_config(&image.config, &diff_id))
        .map_err(|e| ImageError::Io { path: name.to_string(), message: e.to_string() })?;
    let layers = layer_descriptors(&data, &diff_id);
    let manifest = OciImageManifest {
        config: OciDescriptor {
            media_type: IMAGE_CONFIG_MEDIA_TYPE.into(),
            digest: sha256(&config),
            size: config.len() as i64,
            ..OciDescriptor::default()
        },
        layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        ..OciImageManifest::default()
    };
    let client = client(&reference, opts);
    let token = client
        .auth(&reference, &auth(opts), RegistryOperation::Push)
        .await
        .map_err(oci_error("authentication", name))?;
    let authorization = match (token, &opts.credentials) {
        (Some(token), _) => Some(format!("Bearer {token}")),
        (None, Some((user, password))) => {
            use base64::Engine as _;
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
        }
        (None, None) => None,
    };
    let http = reqwest::Client::new();
    let uploader = Uploader {
        http: &http,
        origin: format!(
            "{}://{}",
            if plain_http(&reference, opts) { "http" } else { "https" },
            reference.resolve_registry()
        ),
        repository: reference.repository().to_string(),
        authorization,
    };
    let mut pushed =
        Pushed { manifest_digest: String::new(), blobs: 0, bytes_sent: 0, blobs_skipped: 0, bytes_skipped: 0 };
    let blobs = layers
        .iter()
        .map(|(d, range)| (&data[range.clone()], &d.digest))
        .chain([(config.as_slice(), &manifest.config.digest)]);
    for (bytes, digest) in blobs {
        pushed.blobs += 1;
        if client.blob_exists(&reference, digest).await.map_err(oci_error("checking a blob", name))? {
            progress.finish(digest, true);
            pushed.blobs_skipped += 1;
            pushed.bytes_skipped += bytes.len() as u64;
            continue;
        }
        uploader
            .upload(bytes, digest, progress)
            .await
            .map_err(|e| ImageError::Io { path: name.to_string(), message: format!("push: {e}") })?;
        progress.finish(digest, false);
        pushed.bytes_sent += bytes.len() as u64;
    }
    client.push_manifest(&reference, &manifest.into()).await.map_err(oci_error("pushing the manifest", name))?;
    let (_, digest) = client
        .pull_image_manifest(&reference, &auth(opts))
        .await
        .map_err(oci_error("reading the pushed manifest", name))?;
    pushed.manifest_digest = digest;
    Ok(pushed)
}

//! `sealer pull`: a manifest's layers, fetched (resumed where an earlier pull stopped), checked, unpacked.

use super::*;

/// What a pull did.
pub struct Pulled {
    pub config: ImageConfig,
    pub manifest_digest: String,
    /// Bytes an earlier, interrupted pull had already brought and this one did not fetch again.
    pub resumed_bytes: u64,
}

/// Pulls `name` into the local store; every blob is checked against its digest, and the store changes
/// only when the whole image arrived. A layer download that was interrupted resumes where it stopped.
pub async fn pull(
    store: &ImageStore,
    name: &str,
    opts: &RegistryOptions,
    progress: &dyn TransferProgress,
) -> Result<Pulled, ImageError> {
    let reference = reference(name)?;
    let client = client(&reference, opts);
    let (manifest, manifest_digest, config) =
        client.pull_manifest_and_config(&reference, &auth(opts)).await.map_err(oci_error("pull", name))?;
    let refused = |message: String| ImageError::Io { path: name.to_string(), message };
    if manifest.config.media_type != IMAGE_CONFIG_MEDIA_TYPE {
        return Err(refused(format!("config media type `{}` is not an OCI image config", manifest.config.media_type)));
    }
    let config_digest = sha256(config.as_bytes());
    if config_digest != manifest.config.digest {
        return Err(refused(format!("config digest {config_digest} is not the manifest's {}", manifest.config.digest)));
    }
    let oci: serde_json::Value = serde_json::from_str(&config).map_err(|e| refused(e.to_string()))?;
    let layers = match layer_groups(&manifest.layers) {
        Ok(layers) => layers,
        Err(why) => return Err(refused(why.to_string())),
    };
    let work = store.work_dir()?;
    let mut partials = Vec::new();
    let mut resumed_bytes = 0;
    // A piece that repeats (a stretch of zeros) is fetched once and counted once.
    let mut fetched = std::collections::HashSet::new();
    for layer in layers {
        let mut files = Vec::new();
        let mut result = Ok(());
        for blob in &layer.blobs {
            let partial = store.partial_blob(&blob.digest)?;
            files.push(partial.clone());
            partials.push(partial.clone());
            if !fetched.insert(&blob.digest) {
                continue;
            }
            match fetch_blob(&client, &reference, blob, &partial, progress).await {
                Ok(resumed) => resumed_bytes += resumed,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Each blob was checked as it arrived; joined pieces are checked as the layer they make.
        let result =
            result.and_then(|()| unpack_files(&files, layer.gzip, layer.whole_digest.as_deref(), &work.join("rootfs")));
        if let Err(e) = result {
            store.discard(&work);
            if matches!(e, LayerError::Digest { .. }) {
                // Pieces that do not make their layer are of no use to a later pull.
                files.iter().for_each(|f| drop(std::fs::remove_file(f)));
            }
            return Err(refused(e.to_string()));
        }
    }
    let config = store.commit(&work, image_config(name, &oci), progress)?;
    for partial in partials {
        let _ = std::fs::remove_file(partial);
    }
    Ok(Pulled { config, manifest_digest, resumed_bytes })
}

/// A layer of a pulled manifest: one blob, or the pieces a push split it into.
#[derive(Debug)]
pub(super) struct PulledLayer<'a> {
    pub(super) blobs: Vec<&'a OciDescriptor>,
    pub(super) gzip: bool,
    /// For pieces: the digest the whole layer must have.
    pub(super) whole_digest: Option<String>,
}

/// Puts a manifest's layers together: consecutive pieces of the same layer are one layer.
pub(super) fn layer_groups(descriptors: &[OciDescriptor]) -> Result<Vec<PulledLayer<'_>>, ManifestRefused> {
    let mut layers: Vec<PulledLayer> = Vec::new();
    for d in descriptors {
        checked_digest(&d.digest)?;
        if d.media_type == LAYER_PIECE_MEDIA_TYPE {
            let Some(whole) = d.annotations.as_ref().and_then(|a| a.get(PIECE_OF_ANNOTATION)) else {
                return Err(ManifestRefused::PieceOfNothing(d.digest.clone()));
            };
            checked_digest(whole)?;
            match layers.last_mut() {
                Some(last) if last.whole_digest.as_ref() == Some(whole) => last.blobs.push(d),
                _ => layers.push(PulledLayer { blobs: vec![d], gzip: false, whole_digest: Some(whole.clone()) }),
            }
            continue;
        }
        let gzip = d.media_type.ends_with("gzip");
        if d.media_type != IMAGE_LAYER_MEDIA_TYPE && !gzip {
            return Err(ManifestRefused::MediaType(d.media_type.clone()));
        }
        layers.push(PulledLayer { blobs: vec![d], gzip, whole_digest: None });
    }
    Ok(layers)
}

/// Downloads one blob into `partial` (continuing from what an earlier, interrupted pull left there) and
/// returns how many bytes were there already, once the file's SHA-256 is the descriptor's; a blob that
/// does not match is deleted and refused.
pub(super) async fn fetch_blob(
    client: &Client,
    reference: &Reference,
    layer: &OciDescriptor,
    partial: &Path,
    progress: &dyn TransferProgress,
) -> Result<u64, LayerError> {
    use futures_util::StreamExt as _;
    use std::io::Seek as _;
    let io = |source| LayerError::Write { path: partial.display().to_string(), source };
    let pull = |e: &dyn std::fmt::Display| LayerError::Pull { digest: layer.digest.clone(), message: e.to_string() };
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let total = u64::try_from(layer.size).unwrap_or(0);
    // An earlier pull stopped after the last byte arrived: nothing is fetched again when it checks out.
    if have == total && total > 0 && file_digest(partial).is_ok_and(|d| d == layer.digest) {
        progress.start(&layer.digest, total, total);
        progress.finish(&layer.digest, true);
        return Ok(total);
    }
    let response = if have > 0 && have < total {
        client.pull_blob_stream_partial(reference, layer, have, None).await
    } else {
        client.pull_blob_stream(reference, layer).await.map(BlobResponse::Full)
    }
    .map_err(|e| pull(&e))?;
    let (mut stream, resumed) = match response {
        BlobResponse::Partial(s) => (s.stream, have),
        BlobResponse::Full(s) => (s.stream, 0),
    };
    let mut file =
        std::fs::OpenOptions::new().create(true).append(resumed > 0).write(true).open(partial).map_err(io)?;
    if resumed == 0 {
        file.set_len(0).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    }
    progress.start(&layer.digest, total, resumed);
    while let Some(chunk) = stream.next().await {
        // A connection cut off keeps what arrived: the next pull continues from it.
        let chunk = chunk.map_err(|e| pull(&e))?;
        file.write_all(&chunk).map_err(io)?;
        progress.advance(chunk.len() as u64);
    }
    drop(file);
    let digest =
        file_digest(partial).map_err(|source| LayerError::Read { path: partial.display().to_string(), source })?;
    if digest != layer.digest {
        let _ = std::fs::remove_file(partial);
        return Err(LayerError::Digest { expected: layer.digest.clone(), actual: digest });
    }
    progress.finish(&layer.digest, false);
    Ok(resumed)
}

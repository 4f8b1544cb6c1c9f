//! Cluster images as OCI images in real registries: the rootfs is one tar layer, and the config is a
//! standard OCI image config whose labels carry what install needs (so `skopeo inspect` and other OCI
//! clients read it too). Pulls verify every blob against its digest.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::store::{ImageConfig, ImageError, ImageStore, IMAGE_FORMAT_VERSION};
use super::upload::Uploader;
use super::{Quiet, TransferProgress};

mod archive;
mod pull;
mod push;

pub use archive::{load, save};
pub use pull::{pull, Pulled};
pub use push::{push, Pushed};

/// Sealer's own label (as sealer writes it): JSON with the image type and its launch commands.
pub const SEALER_EXTENSION_LABEL: &str = "sealer.image.extension";
const CMDS_LABEL: &str = "sealer.io/cmds";
const FORMAT_LABEL: &str = "sealer.io/image-format-version";
const IMAGES_LABEL: &str = "sealer.io/container-images";
/// The image it was built `FROM`, so that `rmi` knows it is in use after a push and pull, or save and load.
const BASE_LABEL: &str = "sealer.io/base";
/// The labels sealer writes into a pushed image's config: a Kubefile may not set them.
pub const RESERVED_LABELS: [&str; 5] = [CMDS_LABEL, FORMAT_LABEL, IMAGES_LABEL, BASE_LABEL, SEALER_EXTENSION_LABEL];

pub struct RegistryOptions {
    /// Plain HTTP (always for 127.0.0.1 and localhost).
    pub insecure: bool,
    /// Basic-auth credentials; never printed.
    pub credentials: Option<(String, String)>,
}

fn oci_error(what: &str, name: &str) -> impl Fn(oci_client::errors::OciDistributionError) -> ImageError {
    let (what, name) = (what.to_string(), name.to_string());
    move |e| {
        let hint = network_cause(&e).map(|(cause, todo)| format!(" ({cause}: {todo})")).unwrap_or_default();
        ImageError::Io { path: name.clone(), message: format!("{what}: {e}{hint}") }
    }
}

/// What went wrong on the way to a registry, found in the error's chain of causes, and what to do about
/// it: the top error of a request only says which URL failed.
pub(crate) fn network_cause(e: &(dyn std::error::Error + 'static)) -> Option<(&'static str, &'static str)> {
    use oci_client::errors::OciDistributionError as Oci;
    if let Some(Oci::UnauthorizedError { .. } | Oci::AuthenticationFailure(_)) = e.downcast_ref::<Oci>() {
        return Some(("the registry refused the credentials (401)", "log in with `sealer login REGISTRY`"));
    }
    // The causes only: the top error's text names the URL, whose path may say anything (`bitnami/openssl`).
    let mut at = e.source();
    while let Some(err) = at {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return Some(("connection refused", "is the registry running at that address and port?"))
                }
                std::io::ErrorKind::TimedOut => return Some(("timed out", "is the registry reachable from here?")),
                _ => {}
            }
        }
        let text = err.to_string().to_lowercase();
        if text.contains("dns error") || text.contains("failed to lookup address") || text.contains("name or service") {
            return Some((
                "the registry's name does not resolve",
                "offline, build with `--registry-mirror REGISTRY=URL` or `mirrors:` in $SEALER_HOME/registries.yaml",
            ));
        }
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            return Some((
                "TLS failed",
                "a registry on plain HTTP needs `--insecure`; one with a certificate of its own, that CA trusted here",
            ));
        }
        if text.contains("connection refused") {
            return Some(("connection refused", "is the registry running at that address and port?"));
        }
        at = err.source();
    }
    None
}

/// The registry an image name points at (`docker.io` when it names none).
pub fn registry_of(name: &str) -> Result<String, ImageError> {
    Ok(reference(name)?.resolve_registry().to_string())
}

fn reference(name: &str) -> Result<Reference, ImageError> {
    name.parse::<Reference>()
        .map_err(|e| ImageError::Io { path: name.to_string(), message: format!("not an image reference: {e}") })
}

/// A client and credentials for the registry `reference` points at.
pub fn client_for(reference: &Reference, opts: &RegistryOptions) -> (Client, RegistryAuth) {
    (client(reference, opts), auth(opts))
}

/// Plain HTTP for `--insecure` and for registries on this machine; TLS otherwise.
fn plain_http(reference: &Reference, opts: &RegistryOptions) -> bool {
    opts.insecure || is_local(reference.resolve_registry())
}

/// A registry on this machine (`127.0.0.1[:port]`, `localhost[:port]`, `[::1][:port]`), spoken to over
/// plain HTTP. The host is compared whole: `localhost.example.com` is not this machine.
pub fn is_local(registry: &str) -> bool {
    let host = registry.split('/').next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

fn client(reference: &Reference, opts: &RegistryOptions) -> Client {
    let protocol = if plain_http(reference, opts) { ClientProtocol::Http } else { ClientProtocol::Https };
    Client::new(ClientConfig { protocol, ..Default::default() })
}

fn auth(opts: &RegistryOptions) -> RegistryAuth {
    match &opts.credentials {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The rootfs as a reproducible tar (sorted, fixed times and owners): an unchanged rootfs always gives
/// the same layer digest.
fn layer(rootfs: &Path) -> Result<Vec<u8>, ImageError> {
    let out = std::process::Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-cf", "-", "."])
        .output()
        .map_err(|e| ImageError::Io { path: rootfs.display().to_string(), message: format!("cannot run tar: {e}") })?;
    if !out.status.success() {
        return Err(ImageError::Io {
            path: rootfs.display().to_string(),
            message: String::from_utf8_lossy(&out.stderr).into(),
        });
    }
    Ok(out.stdout)
}

fn oci_config(config: &ImageConfig, diff_id: &str) -> serde_json::Value {
    let mut labels = config.labels.clone();
    labels.insert(FORMAT_LABEL.into(), config.format_version.clone());
    labels.insert(CMDS_LABEL.into(), serde_json::to_string(&config.cmds).unwrap_or_default());
    if let Some(base) = &config.base {
        labels.insert(BASE_LABEL.into(), base.clone());
    }
    labels.insert(IMAGES_LABEL.into(), serde_json::to_string(&config.images).unwrap_or_default());
    let extension = serde_json::json!({"type": "kube-installer", "launch": {"cmds": config.cmds}, "env": config.env});
    labels.insert(SEALER_EXTENSION_LABEL.into(), extension.to_string());
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::json!({
        "architecture": arch(),
        "os": "linux",
        "config": {"Env": env, "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
}

/// Reads our labels back, and sealer's own `sealer.image.extension` for images sealer built.
fn image_config(name: &str, oci: &serde_json::Value) -> ImageConfig {
    let labels: BTreeMap<String, String> = oci["config"]["Labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default();
    let extension: serde_json::Value =
        labels.get(SEALER_EXTENSION_LABEL).and_then(|e| serde_json::from_str(e).ok()).unwrap_or_default();
    let cmds: Vec<String> = labels
        .get(CMDS_LABEL)
        .and_then(|c| serde_json::from_str(c).ok())
        .or_else(|| {
            extension["launch"]["cmds"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
        })
        .unwrap_or_default();
    let env: BTreeMap<String, String> = oci["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter().filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
        })
        .unwrap_or_default();
    ImageConfig {
        format_version: labels.get(FORMAT_LABEL).cloned().unwrap_or_else(|| IMAGE_FORMAT_VERSION.into()),
        name: name.to_string(),
        digest: String::new(),
        base: labels.get(BASE_LABEL).cloned(),
        cmds,
        env,
        images: labels.get(IMAGES_LABEL).and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default(),
        labels: labels
            .into_iter()
            .filter(|(k, _)| {
                ![CMDS_LABEL, FORMAT_LABEL, SEALER_EXTENSION_LABEL, IMAGES_LABEL, BASE_LABEL].contains(&k.as_str())
            })
            .collect(),
    }
}

/// Why a layer could not be brought into the store.
#[derive(Debug, thiserror::Error)]
enum LayerError {
    #[error("cannot run tar: {0}")]
    Tar(#[source] std::io::Error),
    #[error("the layer does not unpack: {0}")]
    Unpack(String),
    #[error("pull of {digest}: {message}")]
    Pull { digest: String, message: String },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {expected} arrived with digest {actual}: refused (damaged or tampered)")]
    Digest { expected: String, actual: String },
}

/// `sha256:` and 64 lowercase hex digits: the only digests blobs are fetched and kept under (a digest
/// names a file in `images/.partial/` and in an archive's `blobs/`).
fn checked_digest(digest: &str) -> Result<&str, ManifestRefused> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| ManifestRefused::Digest(digest.to_string()))
}

/// Why the layers a manifest lists cannot be pulled.
#[derive(Debug, thiserror::Error)]
enum ManifestRefused {
    #[error("`{0}` is not a sha256 digest")]
    Digest(String),
    #[error("layer piece {0} does not say which layer it is of ({PIECE_OF_ANNOTATION})")]
    PieceOfNothing(String),
    #[error("layer media type `{0}` is not an OCI layer")]
    MediaType(String),
}

/// The SHA-256 of a file, read a MiB at a time.
fn file_digest(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(format!("sha256:{:x}", hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// Unpacks one layer into `dir` from its blob files, in order (one file, or the pieces of a layer), streamed
/// through tar a MiB at a time, so memory holds no layer whole. With `expected`, the joined bytes must
/// have that digest (checked before tar's own verdict, which a wrong piece makes meaningless).
fn unpack_files(files: &[PathBuf], gzip: bool, expected: Option<&str>, dir: &Path) -> Result<(), LayerError> {
    use std::io::Read as _;
    let mut child = std::process::Command::new("tar")
        .args(if gzip { ["-xzf", "-"] } else { ["-xf", "-"] })
        .arg("-C")
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(LayerError::Tar)?;
    let mut stdin = child.stdin.take();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut read = Ok(());
    'files: for path in files {
        let read_error = |source| LayerError::Read { path: path.display().to_string(), source };
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) => {
                read = Err(read_error(e));
                break;
            }
        };
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    read = Err(read_error(e));
                    break 'files;
                }
            };
            hasher.update(&buffer[..n]);
            // tar stopped reading (a damaged layer): the digest still says which bytes were wrong.
            if stdin.as_mut().is_some_and(|i| i.write_all(&buffer[..n]).is_err()) {
                stdin = None;
            }
        }
    }
    let fed = stdin.is_some();
    drop(stdin);
    let out = child.wait_with_output().map_err(LayerError::Tar)?;
    read?;
    let actual = format!("sha256:{:x}", hasher.finalize());
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(LayerError::Digest { expected: expected.to_string(), actual });
    }
    if !out.status.success() || !fed {
        return Err(LayerError::Unpack(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

/// The largest blob a push sends in one request. A bigger layer goes as pieces of this size, so a push
/// killed at any point leaves at most one piece to send again (see `upload` for why a registry's upload
/// session cannot be continued instead).
pub const PUSH_PIECE: usize = 8 << 20;
/// The media type of a piece of a layer: the bytes of the layer's tar from one offset, in order.
pub const LAYER_PIECE_MEDIA_TYPE: &str = "application/vnd.sealer.image.layer.piece.v1.tar";
/// On each piece: the digest of the whole layer, checked when a pull has put the pieces together.
const PIECE_OF_ANNOTATION: &str = "io.sealer.layer.piece-of";

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::pull::layer_groups;
    use super::push::layer_descriptors;
    use super::*;

    /// A big layer goes as pieces that cover it exactly, each naming the whole; a pull puts them back
    /// together as one layer; a small layer stays a standard OCI layer.
    #[test]
    fn a_layer_over_one_piece_is_pushed_as_pieces_and_pulled_as_one() {
        let data: Vec<u8> = (0..2 * PUSH_PIECE + 1).map(|i| (i % 253) as u8).collect();
        let whole = sha256(&data);
        let pieces = layer_descriptors(&data, &whole);
        let ranges: Vec<_> = pieces.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(ranges, [0..PUSH_PIECE, PUSH_PIECE..2 * PUSH_PIECE, 2 * PUSH_PIECE..2 * PUSH_PIECE + 1]);
        for (d, r) in &pieces {
            assert_eq!((d.media_type.as_str(), d.size as usize), (LAYER_PIECE_MEDIA_TYPE, r.len()));
            assert_eq!(d.digest, sha256(&data[r.clone()]));
            assert_eq!(d.annotations.as_ref().unwrap()[PIECE_OF_ANNOTATION], whole);
        }
        let small_digest = sha256(&data[..PUSH_PIECE]);
        let small = layer_descriptors(&data[..PUSH_PIECE], &small_digest);
        assert_eq!(small.len(), 1);
        assert_eq!(
            (small[0].0.media_type.as_str(), small[0].0.digest.as_str()),
            (IMAGE_LAYER_MEDIA_TYPE, small_digest.as_str())
        );

        let mut descriptors: Vec<OciDescriptor> = small.into_iter().map(|(d, _)| d).collect();
        descriptors.extend(pieces.into_iter().map(|(d, _)| d));
        let groups = layer_groups(&descriptors).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].blobs.len(), groups[0].whole_digest.as_deref()), (1, None));
        assert_eq!((groups[1].blobs.len(), groups[1].whole_digest.as_deref()), (3, Some(whole.as_str())));

        descriptors[0].digest = "sha256:../../etc/passwd".into();
        assert!(layer_groups(&descriptors).unwrap_err().to_string().contains("is not a sha256 digest"));
        descriptors[0].digest = small_digest;
        descriptors[1].annotations = None;
        assert!(layer_groups(&descriptors).unwrap_err().to_string().contains("does not say which layer it is of"));
        descriptors[1].media_type = "text/plain".into();
        assert!(layer_groups(&descriptors).unwrap_err().to_string().contains("`text/plain` is not an OCI layer"));
    }

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<dyn std::error::Error + Send + Sync>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// A request error for `url` caused by `cause`, as reqwest nests them.
    fn request(url: &'static str, cause: Box<dyn std::error::Error + Send + Sync>) -> Wrapped {
        Wrapped(url, Some(cause))
    }

    #[test]
    fn the_cause_of_a_registry_error_is_found_in_its_chain_and_says_what_to_do() {
        let refused =
            request("error sending request", Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)));
        assert_eq!(network_cause(&refused).map(|c| c.0), Some("connection refused"));
        let dns = request("url", Box::new(Wrapped("dns error: failed to lookup address information", None)));
        assert!(network_cause(&dns).is_some_and(|(_, todo)| todo.contains("--registry-mirror")));
        let tls = request("url", Box::new(Wrapped("invalid peer certificate: UnknownIssuer", None)));
        assert!(network_cause(&tls).is_some_and(|(_, todo)| todo.contains("--insecure")));
        use crate::image::oci::is_local;
        assert!(is_local("127.0.0.1:5000") && is_local("localhost") && is_local("[::1]:5000"));
        assert!(!is_local("localhost.attacker.invalid") && !is_local("127.0.0.1.nip.io:5000") && !is_local("reg.io"));
        let unauthorized = oci_client::errors::OciDistributionError::UnauthorizedError { url: "u".into() };
        assert!(network_cause(&unauthorized).is_some_and(|(_, todo)| todo.contains("sealer login")));
        // The URL itself says nothing: an image named `openssl` is no TLS failure.
        assert_eq!(network_cause(&Wrapped("404 for https://r/v2/bitnami/openssl-tls/manifests/1", None)), None);
        assert_eq!(network_cause(&Wrapped("manifest unknown", None)), None);
    }
}

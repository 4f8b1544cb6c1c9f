//! Blob upload as the OCI distribution protocol has it (`POST`, then one `PUT ?digest=` with the bytes).
//! oci-client pushes blobs too, but it neither counts what it sent nor reports progress, so this speaks
//! HTTP itself, with the token or basic credentials oci-client negotiated.
//!
//! Why there is no chunked, resumable session: distribution (the registry Debian packages, and sea.hub)
//! signs an upload's offset into its `_state` and cancels the upload when the bytes it holds differ from
//! it, and it keeps the part of a request body that arrived before a connection was cut. A push killed
//! mid-request therefore leaves a session no client can continue. Pushes resume at blob granularity
//! instead: no blob is larger than one request (`oci::push` splits big layers into pieces), and the
//! registry's `HEAD` says which it already has.

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use super::TransferProgress;

pub struct Uploader<'a> {
    pub http: &'a reqwest::Client,
    /// `http://HOST:PORT` or `https://HOST`.
    pub origin: String,
    pub repository: String,
    /// `Bearer ...` or `Basic ...`, when the registry wants one.
    pub authorization: Option<String>,
}

/// Why an upload failed: the connection, or an answer the protocol does not allow.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{step}: {source}")]
    Http {
        step: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{step}: {answer}")]
    Refused { step: String, answer: String },
}

type Result<T> = std::result::Result<T, UploadError>;

fn http(step: impl Into<String>) -> impl FnOnce(reqwest::Error) -> UploadError {
    let step = step.into();
    move |source| UploadError::Http { step, source }
}

impl Uploader<'_> {
    /// The credentials go only to the registry itself: an upload `Location` on another host (a storage
    /// redirect) or another scheme gets none.
    fn headers(&self, url: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let own = url.strip_prefix(self.origin.as_str()).is_some_and(|rest| rest.starts_with('/'));
        if let Some(value) = self.authorization.as_deref().filter(|_| own).and_then(|a| a.parse().ok()) {
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    /// A `Location` header made absolute.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.origin)
        }
    }

    /// Uploads `data` as blob `digest`.
    pub async fn upload(&self, data: &[u8], digest: &str, progress: &dyn TransferProgress) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.origin, self.repository);
        let response = self
            .http
            .post(&url)
            .headers(self.headers(&url))
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(http("starting an upload"))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(UploadError::Refused { step: "starting an upload".into(), answer: describe(response).await });
        }
        let location =
            response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(|l| self.absolute(l)).ok_or_else(
                || UploadError::Refused {
                    step: "starting an upload".into(),
                    answer: format!("{} without a Location", response.status()),
                },
            )?;
        progress.start(digest, data.len() as u64, 0);
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let response = self
            .http
            .put(&url)
            .headers(self.headers(&url))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, data.len())
            .body(data.to_vec())
            .send()
            .await
            .map_err(http(format!("sending {digest}")))?;
        if response.status() != StatusCode::CREATED {
            return Err(UploadError::Refused { step: format!("sending {digest}"), answer: describe(response).await });
        }
        progress.advance(data.len() as u64);
        Ok(())
    }
}

async fn describe(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    format!("{status} {}", body.chars().take(300).collect::<String>().trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Quiet;

    #[test]
    fn credentials_go_only_to_the_registry_itself() {
        let http = reqwest::Client::new();
        let uploader = Uploader {
            http: &http,
            origin: "https://reg.example".into(),
            repository: "team/blob".into(),
            authorization: Some("Basic dTpw".into()),
        };
        assert!(uploader.headers("https://reg.example/v2/team/blob/blobs/uploads/1").contains_key(AUTHORIZATION));
        for elsewhere in
            ["https://reg.example.evil/v2/", "http://reg.example/v2/", "https://store.example/u", "https://reg.example"]
        {
            assert!(!uploader.headers(elsewhere).contains_key(AUTHORIZATION), "{elsewhere}");
        }
    }

    /// An upload reaches the real distribution registry as the blob its digest names; bytes that do not
    /// match their digest are refused with the registry's own answer.
    #[tokio::test]
    async fn an_upload_reaches_a_real_registry_and_a_wrong_digest_is_refused() {
        use sha2::Digest as _;
        if !std::path::Path::new("/usr/bin/docker-registry").exists() {
            assert!(std::env::var("CI").is_err(), "CI must install docker-registry");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut registry = std::process::Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let http = reqwest::Client::new();
        let uploader = Uploader {
            http: &http,
            origin: format!("http://127.0.0.1:{port}"),
            repository: "team/blob".into(),
            authorization: None,
        };
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&data));

        let wrong = uploader.upload(&data[1..], &digest, &Quiet).await.unwrap_err().to_string();
        uploader.upload(&data, &digest, &Quiet).await.unwrap();
        let blob = http.get(format!("http://127.0.0.1:{port}/v2/team/blob/blobs/{digest}")).send().await.unwrap();
        let status = blob.status();
        let body = blob.bytes().await.unwrap();
        let _ = registry.kill();
        let _ = registry.wait();
        assert_eq!((status, body.as_ref()), (StatusCode::OK, data.as_slice()));
        assert!(wrong.starts_with(&format!("sending {digest}: 400")) && wrong.contains("DIGEST_INVALID"), "{wrong}");
    }
}

//! Resumable chunked blob upload (the OCI distribution protocol's `POST`, `PATCH` with `Content-Range`,
//! `PUT ?digest=`). The upload session is recorded on disk after every chunk the registry accepted, so a
//! push that was interrupted continues where the registry says it stopped instead of sending the blob
//! again. oci-client keeps its sessions private, so this speaks HTTP itself, with the token or basic
//! credentials oci-client negotiated.

use std::path::PathBuf;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::TransferProgress;

/// One blob's upload session as last acknowledged by the registry.
#[derive(Serialize, Deserialize)]
struct Session {
    digest: String,
    location: String,
    offset: u64,
}

pub struct Uploader<'a> {
    pub http: &'a reqwest::Client,
    /// `http://HOST:PORT` or `https://HOST`.
    pub origin: String,
    pub repository: String,
    /// `Bearer ...` or `Basic ...`, when the registry wants one.
    pub authorization: Option<String>,
    /// Where session files live (`images/.partial`).
    pub sessions: PathBuf,
    pub chunk: usize,
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
    fn session_path(&self, digest: &str) -> PathBuf {
        self.sessions.join(format!("upload-{}.json", digest.replace(':', "-")))
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = self.authorization.as_deref().and_then(|a| a.parse().ok()) {
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

    fn location_of(&self, response: &reqwest::Response) -> Result<String> {
        response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(|l| self.absolute(l)).ok_or_else(|| {
            UploadError::Refused {
                step: "the registry's answer".into(),
                answer: format!("{} without a Location", response.status()),
            }
        })
    }

    /// Bytes the registry holds for the session at `location` (its `Range: 0-LAST`), `None` when the
    /// session is gone or the answer is ambiguous.
    async fn registry_offset(&self, location: &str, recorded: u64) -> Option<u64> {
        let response = self.http.get(location).headers(self.headers()).send().await.ok()?;
        if response.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let range = response.headers().get(RANGE)?.to_str().ok()?.to_string();
        let last: u64 = range.strip_prefix("0-")?.parse().ok()?;
        // "0-0" is both "nothing" and "one byte": trust it only when the record says nothing was sent.
        match (last, recorded) {
            (0, 0) => Some(0),
            (0, _) => None,
            (last, _) => Some(last + 1),
        }
    }

    fn save(&self, session: &Session) {
        if let Ok(json) = serde_json::to_vec(session) {
            let path = self.session_path(&session.digest);
            let partial = path.with_extension("partial");
            if std::fs::write(&partial, json).and_then(|()| std::fs::rename(&partial, &path)).is_err() {
                let _ = std::fs::remove_file(&partial);
            }
        }
    }

    async fn start(&self, digest: &str) -> Result<Session> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.origin, self.repository);
        let response = self
            .http
            .post(&url)
            .headers(self.headers())
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(http("starting an upload"))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(UploadError::Refused { step: "starting an upload".into(), answer: describe(response).await });
        }
        let session = Session { digest: digest.to_string(), location: self.location_of(&response)?, offset: 0 };
        self.save(&session);
        Ok(session)
    }

    /// Sends the next chunk of `data` and records the session the registry acknowledged.
    async fn send_chunk(&self, session: &mut Session, data: &[u8], progress: &dyn TransferProgress) -> Result<()> {
        let start = session.offset as usize;
        let end = (start + self.chunk).min(data.len());
        let response = self
            .http
            .patch(&session.location)
            .headers(self.headers())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("Content-Range", format!("{start}-{}", end - 1))
            .header(CONTENT_LENGTH, end - start)
            .body(data[start..end].to_vec())
            .send()
            .await
            .map_err(http(format!("sending bytes {start}-{}", end - 1)))?;
        if response.status() != StatusCode::ACCEPTED {
            let step = format!("sending bytes {start}-{}", end - 1);
            return Err(UploadError::Refused { step, answer: describe(response).await });
        }
        session.location = self.location_of(&response)?;
        session.offset = end as u64;
        self.save(session);
        progress.advance((end - start) as u64);
        Ok(())
    }

    /// Uploads `data` as blob `digest`, continuing the session an interrupted push recorded when the
    /// registry still has it.
    pub async fn upload(&self, data: &[u8], digest: &str, progress: &dyn TransferProgress) -> Result<Resumption> {
        let recorded: Option<Session> =
            std::fs::read(self.session_path(digest)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let mut resumption = Resumption::Fresh;
        let mut session = None;
        if let Some(s) = recorded.filter(|s| s.digest == digest) {
            // A registry may drop a session whose last chunk was cut off (distribution does): then the
            // blob goes again from the start.
            resumption = Resumption::Dropped;
            if let Some(offset) = self.registry_offset(&s.location, s.offset).await {
                if offset <= data.len() as u64 {
                    resumption = Resumption::Resumed(offset);
                    session = Some(Session { offset, ..s });
                }
            }
        }
        let mut session = match session {
            Some(s) => s,
            None => self.start(digest).await?,
        };
        progress.start(digest, data.len() as u64, session.offset);
        while (session.offset as usize) < data.len() {
            self.send_chunk(&mut session, data, progress).await?;
        }
        let separator = if session.location.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}digest={digest}", session.location);
        let response = self
            .http
            .put(&url)
            .headers(self.headers())
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(http("completing the upload"))?;
        if response.status() != StatusCode::CREATED {
            // A session whose content the registry refuses is of no use to a re-run.
            let _ = std::fs::remove_file(self.session_path(digest));
            return Err(UploadError::Refused {
                step: "completing the upload".into(),
                answer: describe(response).await,
            });
        }
        let _ = std::fs::remove_file(self.session_path(digest));
        Ok(resumption)
    }
}

/// How an upload began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumption {
    /// No interrupted upload of this blob was recorded.
    Fresh,
    /// An interrupted upload went on from this many bytes the registry already held.
    Resumed(u64),
    /// An interrupted upload was recorded, but the registry no longer had its session.
    Dropped,
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

    /// An upload stopped between chunks (as a push killed after the registry acknowledged one) goes on
    /// from there on the real distribution registry, and the blob it completes has the right digest.
    #[tokio::test]
    async fn an_upload_stopped_between_chunks_resumes_on_a_real_registry() {
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
        let sessions = dir.path().join("sessions");
        std::fs::create_dir_all(&sessions).unwrap();
        let uploader = Uploader {
            http: &http,
            origin: format!("http://127.0.0.1:{port}"),
            repository: "team/blob".into(),
            authorization: None,
            sessions,
            chunk: 1000,
        };
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&data));

        let mut session = uploader.start(&digest).await.unwrap();
        uploader.send_chunk(&mut session, &data, &Quiet).await.unwrap();
        drop(session); // the push stops here; only the recorded session remains
        let resumed = uploader.upload(&data, &digest, &Quiet).await.unwrap();
        let blob = http.get(format!("http://127.0.0.1:{port}/v2/team/blob/blobs/{digest}")).send().await.unwrap();
        let status = blob.status();
        let body = blob.bytes().await.unwrap();
        let _ = registry.kill();
        let _ = registry.wait();
        assert_eq!(resumed, Resumption::Resumed(1000));
        assert_eq!((status, body.as_ref()), (StatusCode::OK, data.as_slice()));
        assert!(!uploader.session_path(&digest).exists(), "a finished upload leaves no session behind");
    }
}

//! `sealer login`'s check: the credentials are tried against the registry's `/v2/` endpoint before they
//! are stored, through the challenge it answers (HTTP basic, or a bearer token from its token service),
//! and a failure says which part failed: the network, TLS, or the registry refusing them.

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot reach {url}: {cause}{hint}")]
    Unreachable { url: String, cause: String, hint: String },
    #[error("{registry} refused the credentials of `{username}` (401 Unauthorized)")]
    Refused { registry: String, username: String },
    #[error("{url} answered {status}, not a registry's /v2/ answer")]
    Unexpected { url: String, status: StatusCode },
    #[error("{registry} asks for an authentication sealer does not speak: {challenge}")]
    Unsupported { registry: String, challenge: String },
}

/// Tries `username` and `password` on `registry` (`host[:port]`), over plain HTTP when `plain_http`.
/// The password only travels in the Authorization header of the requests to the registry and its token
/// service; no error repeats it.
pub async fn verify(registry: &str, username: &str, password: &str, plain_http: bool) -> Result<(), LoginError> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| unreachable(registry, &e))?;
    let url = format!("{}://{registry}/v2/", if plain_http { "http" } else { "https" });
    let anonymous = http.get(&url).send().await.map_err(|e| unreachable(&url, &e))?;
    let refused = || LoginError::Refused { registry: registry.to_string(), username: username.to_string() };
    match anonymous.status() {
        // Open to everyone: any credentials are as good as none, as with `docker login`.
        s if s.is_success() => return Ok(()),
        StatusCode::UNAUTHORIZED => {}
        status => return Err(LoginError::Unexpected { url, status }),
    }
    let challenge =
        anonymous.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge.as_str(), ""));
    let answer = if scheme.eq_ignore_ascii_case("basic") {
        http.get(&url).basic_auth(username, Some(password)).send().await.map_err(|e| unreachable(&url, &e))?
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let params = challenge_params(params);
        let realm =
            params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()).ok_or_else(|| {
                LoginError::Unsupported { registry: registry.to_string(), challenge: challenge.clone() }
            })?;
        let mut query: Vec<(&str, &str)> = vec![("account", username)];
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            query.push(("service", service));
        }
        http.get(&realm)
            .query(&query)
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(|e| unreachable(&realm, &e))?
    } else {
        return Err(LoginError::Unsupported { registry: registry.to_string(), challenge });
    };
    match answer.status() {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(refused()),
        status => Err(LoginError::Unexpected { url: answer.url().to_string(), status }),
    }
}

fn unreachable(url: &str, e: &reqwest::Error) -> LoginError {
    let (cause, hint) = match super::oci::network_cause(e) {
        Some((cause, todo)) => (cause.to_string(), format!(" ({todo})")),
        None => (e.to_string(), String::new()),
    };
    LoginError::Unreachable { url: url.to_string(), cause, hint }
}

/// `realm="https://auth.example/token",service="registry",scope="..."` as (name, value) pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((name, after)) = rest.split_once('=') {
        let name = name.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((name, value.to_string()));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_with_their_quotes() {
        let params = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            params,
            [
                ("realm".to_string(), "https://auth.docker.io/token".to_string()),
                ("service".to_string(), "registry.docker.io".to_string()),
                ("scope".to_string(), "repository:a/b:pull".to_string()),
            ]
        );
        assert_eq!(
            challenge_params("realm=x, service=y"),
            [("realm".into(), "x".into()), ("service".into(), "y".into())]
        );
    }
}

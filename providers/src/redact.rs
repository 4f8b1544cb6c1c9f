//! Join credentials masked out of what sealer logs and shows of a command's output: kubeadm prints them
//! (`kubeadm init`, `token create --print-join-command`, `init phase upload-certs`), and a failed kubeadm
//! command's error must still be readable. Masked: a bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) anywhere,
//! the word after `--token`, `--discovery-token-ca-cert-hash` and `--certificate-key` (or after `=`), the
//! values of `token:`, `certificateKey:` and `caCertHashes:` entries, the line after one ending in
//! `certificate key:` (as `upload-certs` prints the key), and a line of 64 hex digits alone.

pub const MASK: &str = "<redacted>";

const FLAGS: [&str; 3] = ["--token", "--discovery-token-ca-cert-hash", "--certificate-key"];
const KEYS: [&str; 3] = ["token:", "certificateKey:", "caCertHashes:"];

/// `text` with every join credential it holds replaced by [`MASK`].
pub fn credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_hashes, mut key_follows) = (false, false);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let trimmed = body.trim();
        // `[upload-certs] Using certificate key:` puts the key on the next line.
        if std::mem::replace(&mut key_follows, trimmed.to_ascii_lowercase().ends_with("certificate key:"))
            && !trimmed.is_empty()
        {
            out.push_str(MASK);
            out.push_str(end);
            continue;
        }
        // The items of a `caCertHashes:` list (`- sha256:...`) follow their key.
        if in_hashes && trimmed.starts_with("- ") {
            out.push_str(&body[..body.len() - body.trim_start().len()]);
            out.push_str("- ");
            out.push_str(MASK);
            out.push_str(end);
            continue;
        }
        in_hashes = trimmed == "caCertHashes:";
        out.push_str(&redact_line(body));
        out.push_str(end);
    }
    out
}

fn is_hex64(word: &str) -> bool {
    word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[a-z0-9]{6}.[a-z0-9]{16}` at `bytes[at..]`, not part of a longer word.
fn token_at(bytes: &[u8], at: usize) -> bool {
    let part = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    bytes.len() >= at + 23
        && bytes[at..at + 6].iter().all(part)
        && bytes[at + 6] == b'.'
        && bytes[at + 7..at + 23].iter().all(part)
        && !word(at.checked_sub(1).and_then(|i| bytes.get(i)))
        && !word(bytes.get(at + 23))
}

fn redact_line(line: &str) -> String {
    let trimmed = line.trim();
    let indent = &line[..line.len() - line.trim_start().len()];
    if is_hex64(trimmed) {
        return format!("{indent}{MASK}");
    }
    if let Some(key) = KEYS.iter().find(|k| trimmed.starts_with(**k)) {
        // A key alone (a list follows) has nothing to mask on its line.
        return if trimmed == *key { line.to_string() } else { format!("{indent}{key} {MASK}") };
    }
    // Word by word, keeping the separators: a flag masks the word after it (or its `=` value).
    let mut out = String::with_capacity(line.len());
    let mut mask_next = false;
    let mut rest = line;
    while !rest.is_empty() {
        let space = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..space]);
        rest = &rest[space..];
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..len];
        rest = &rest[len..];
        if word.is_empty() {
            continue;
        }
        if mask_next && word != "\\" {
            out.push_str(MASK);
            mask_next = false;
            continue;
        }
        if let Some(flag) = FLAGS.iter().find(|f| word == **f || word.starts_with(&format!("{f}="))) {
            if word == *flag {
                mask_next = true;
                out.push_str(word);
            } else {
                out.push_str(&format!("{flag}={MASK}"));
            }
            continue;
        }
        out.push_str(&mask_tokens(word));
    }
    out
}

/// `word` with every bootstrap token in it masked.
fn mask_tokens(word: &str) -> String {
    let bytes = word.as_bytes();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < bytes.len() {
        if token_at(bytes, i) {
            out.push_str(MASK);
            i += 23;
        } else {
            let len = word[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&word[i..i + len]);
            i += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const HASH: &str = "sha256:00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff";

    #[test]
    fn kubeadm_credentials_are_masked_and_the_rest_is_kept() {
        let init = format!(
            "Your Kubernetes control-plane has initialized successfully!\n\nkubeadm join apiserver.cluster.local:6443 \
             --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash {HASH} \\\n\t--control-plane \
             --certificate-key {KEY}\n"
        );
        let shown = credentials(&init);
        assert!(!shown.contains("abcdef.0123456789abcdef") && !shown.contains(KEY) && !shown.contains(HASH), "{shown}");
        assert!(shown.contains("kubeadm join apiserver.cluster.local:6443 --token <redacted> \\\n"), "{shown}");
        assert!(shown.contains("--discovery-token-ca-cert-hash <redacted>") && shown.contains("--control-plane"));
        assert!(shown.starts_with("Your Kubernetes control-plane has initialized successfully!\n\n"));

        let certs = format!("[upload-certs] Using certificate key:\n{KEY}\n");
        assert_eq!(credentials(&certs), "[upload-certs] Using certificate key:\n<redacted>\n");
        let short = "[upload-certs] Using certificate key:\nkey123\nnext line\n";
        assert_eq!(credentials(short), "[upload-certs] Using certificate key:\n<redacted>\nnext line\n");
        let flags = format!("kubeadm join x --token=abcdef.0123456789abcdef --certificate-key={KEY}");
        assert_eq!(credentials(&flags), "kubeadm join x --token=<redacted> --certificate-key=<redacted>");
        let error = "error: the bootstrap token \"abcdef.0123456789abcdef\" was not of the form";
        assert_eq!(credentials(error), "error: the bootstrap token \"<redacted>\" was not of the form");
        let yaml = format!(
            "  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    caCertHashes:\n    - {HASH}\n  \
                            certificateKey: {KEY}\n"
        );
        assert_eq!(
            credentials(&yaml),
            "  bootstrapToken:\n    token: <redacted>\n    caCertHashes:\n    - <redacted>\n  certificateKey: <redacted>\n"
        );
        // What is no credential stays as it is: image digests, preflight errors, longer dotted words.
        let kept = format!(
            "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: already exists\npulled {HASH}\n\
             host.example1234567890abcdef.org\n"
        );
        assert_eq!(credentials(&kept), kept);
    }
}

//! The naming rules Kubernetes and the shell apply, checked before anything reaches a host. Every value
//! that passes these is safe to place in a remote command line once quoted.

/// RFC 1123 label: what a hostname (and a Kubernetes node name part) may be.
pub fn is_rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_rfc1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_rfc1123_label)
}

/// The `name` part of a qualified name (label key, taint key): at most 63 characters, alphanumeric at both
/// ends, `-`, `_` and `.` inside.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label or taint key: `[prefix/]name` with a DNS subdomain prefix.
pub fn label_key_problem(key: &str) -> Option<&'static str> {
    match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_rfc1123_subdomain(prefix) {
                Some("the key prefix must be a lowercase DNS subdomain")
            } else if !is_qualified_name_part(name) {
                Some("the key name must be 1-63 characters, alphanumeric at both ends, with `-_.` inside")
            } else {
                None
            }
        }
        None if is_qualified_name_part(key) => None,
        None => Some("the key must be 1-63 characters, alphanumeric at both ends, with `-_.` inside"),
    }
}

/// A label or taint value: empty, or a qualified name part.
pub fn label_value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() || is_qualified_name_part(value) {
        None
    } else {
        Some("the value must be empty or 1-63 characters, alphanumeric at both ends, with `-_.` inside")
    }
}

/// An env name as sealer takes it (`docker-dir` too): it reaches hosts only quoted, as `NAME=VALUE` in
/// an `env` argument or a template key.
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['=', '\0', '\n', '\r'])
}

/// A Plugin's or Config's `metadata.name`.
pub fn is_object_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A variable name the shell accepts in `export NAME=...`.
pub fn is_shell_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An image reference as registries accept it (`repo/name:tag`, `name@sha256:...`), which also keeps
/// spaces and shell metacharacters out.
pub fn is_image_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':' | b'@'))
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
}

/// A path inside the image rootfs: relative, no `..`, no characters that need quoting tricks.
pub fn rootfs_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        Some("the path is empty")
    } else if path.starts_with('/') {
        Some("the path must be relative to the image rootfs")
    } else if path.split('/').any(|c| c == "..") {
        Some("the path must not leave the image rootfs (`..`)")
    } else if !path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
        Some("the path may only hold letters, digits and `._-/`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_rfc1123_labels() {
        assert!(is_rfc1123_label("master-0"));
        assert!(is_rfc1123_label(&"a".repeat(63)));
        assert!(!is_rfc1123_label(&"a".repeat(64)));
        assert!(!is_rfc1123_label("Master"));
        assert!(!is_rfc1123_label("-a"));
        assert!(!is_rfc1123_label("a-"));
        assert!(!is_rfc1123_label("a.b"));
        assert!(!is_rfc1123_label("a;rm -rf /"));
        assert!(!is_rfc1123_label("$(id)"));
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        assert_eq!(label_key_problem("node-role.kubernetes.io/worker"), None);
        assert_eq!(label_key_problem("app"), None);
        assert!(label_key_problem("Bad_Prefix/x").is_some());
        assert!(label_key_problem("-app").is_some());
        assert!(label_key_problem("a/b/c").is_some());
        assert!(label_key_problem(&"k".repeat(64)).is_some());
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("v1.2_x"), None);
        assert!(label_value_problem("has space").is_some());
        assert!(label_value_problem("x-").is_some());
    }

    #[test]
    fn env_names_images_and_paths() {
        assert!(is_env_name("_A1"));
        assert!(is_env_name("docker-dir"));
        assert!(is_env_name("1A"));
        assert!(!is_env_name("A=B"));
        assert!(!is_env_name("A\nB"));
        assert!(!is_env_name(""));
        assert!(is_shell_identifier("_A1"));
        assert!(!is_shell_identifier("1A"));
        assert!(!is_shell_identifier("docker-dir"));
        assert!(is_object_name("MyShell") && is_object_name("label_nodes.so"));
        assert!(!is_object_name("..") && !is_object_name("a b") && !is_object_name("a/b"));
        assert!(is_image_reference("docker.io/sealerio/kubernetes:v1.22.15"));
        assert!(!is_image_reference("img;reboot"));
        assert_eq!(rootfs_path_problem("etc/kubeadm.yml"), None);
        assert!(rootfs_path_problem("/etc/passwd").is_some());
        assert!(rootfs_path_problem("a/../../x").is_some());
    }
}

//! sealer's env rendering of the image's `*.tmpl` files: `{{ .NAME }}` and `{{ index . "NAME" }}` (for
//! names that are not identifiers, such as `docker-dir`) are replaced by the host's env value, an unset
//! name by nothing; any other `{{ ... }}` action is kept as written.

use std::collections::BTreeMap;

/// `template` with every env reference replaced.
pub fn render(template: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let action = &after[..close];
        match reference(action) {
            Some(name) => out.push_str(env.get(name).map_or("", String::as_str)),
            None => {
                out.push_str("{{");
                out.push_str(action);
                out.push_str("}}");
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// The name in ` .NAME ` or ` index . "NAME" ` (Go template trim markers `-` allowed).
fn reference(action: &str) -> Option<&str> {
    let a = action.trim().trim_start_matches('-').trim_end_matches('-').trim();
    if let Some(name) = a.strip_prefix('.') {
        return (!name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('.')).then_some(name);
    }
    let args = a.strip_prefix("index")?.trim_start();
    let quoted = args.strip_prefix('.')?.trim_start();
    let name = quoted.strip_prefix('"')?.strip_suffix('"')?;
    (!name.contains('"')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_rendered_and_other_actions_kept() {
        let env: BTreeMap<String, String> =
            [("docker-dir".to_string(), "/data/docker".to_string()), ("PORT".to_string(), "80".to_string())].into();
        let t = "dir={{ index . \"docker-dir\" }} port={{.PORT}} same={{ .docker-dir }} gone={{ .NOPE }} {{ if .X }}x{{ end }} {{";
        assert_eq!(render(t, &env), "dir=/data/docker port=80 same=/data/docker gone= {{ if .X }}x{{ end }} {{");
        assert_eq!(render("{{- .PORT -}}", &env), "80");
    }
}

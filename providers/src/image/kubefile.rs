//! Kubefile: the build recipe of a cluster image (`FROM`, `COPY`, `RUN`, `CMD`, `ENV`, `ARG`, `LABEL`).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    From(String),
    Copy { sources: Vec<String>, dest: String },
    Run(String),
    Cmd(String),
    Env(String, String),
    Label(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub instruction: Instruction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubefileError {
    pub line: usize,
    pub instruction: String,
    pub message: String,
}

impl std::fmt::Display for KubefileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: `{}`: {}", self.line, self.instruction, self.message)
    }
}

/// Logical lines: comments dropped, `\` continuations joined, each with the line it started on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        if trimmed.starts_with('#') {
            current = Some((start, acc));
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                acc.push(' ');
                current = Some((start, acc));
            }
            None => {
                acc.push_str(trimmed);
                out.push((start, acc));
            }
        }
    }
    if let Some((start, acc)) = current {
        out.push((start, acc.trim_end().to_string()));
    }
    out
}

/// The largest Kubefile read, and the largest value one instruction may become once `$NAME`s are
/// substituted (`ENV X=$X$X` repeated would otherwise double it each line).
pub const MAX_KUBEFILE_BYTES: usize = 1 << 20;
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// `$NAME` and `${NAME}` from the ARG/ENV values seen so far; unknown names stay as written. `None` when
/// the result would be over [`MAX_VALUE_BYTES`].
fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        match vars.get(&name) {
            Some(v) if !name.is_empty() => out.push_str(v),
            _ if braced => out.push_str(&format!("${{{name}}}")),
            _ => {
                out.push('$');
                out.push_str(&name);
            }
        }
        if out.len() > MAX_VALUE_BYTES {
            return None;
        }
    }
    (out.len() <= MAX_VALUE_BYTES).then_some(out)
}

fn key_value(rest: &str) -> Option<(String, String)> {
    let (k, v) = match rest.split_once('=') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => rest.split_once(char::is_whitespace).map(|(k, v)| (k.trim(), v.trim()))?,
    };
    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
    (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
}

/// Parses a Kubefile, with `--build-arg` values; reports every bad line.
pub fn parse(text: &str, build_args: &BTreeMap<String, String>) -> Result<Vec<Step>, Vec<KubefileError>> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    if text.len() > MAX_KUBEFILE_BYTES {
        let message = format!("the Kubefile is {} bytes, over the limit of {MAX_KUBEFILE_BYTES}", text.len());
        return Err(vec![KubefileError { line: 1, instruction: String::new(), message }]);
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (line, content) in logical_lines(text) {
        let (word, rest) = content.split_once(char::is_whitespace).unwrap_or((&content, ""));
        let keyword = word.to_ascii_uppercase();
        let rest = rest.trim();
        let error = |message: &str| KubefileError { line, instruction: keyword.clone(), message: message.to_string() };
        if rest.is_empty() {
            errors.push(error("needs an argument"));
            continue;
        }
        if steps.is_empty() && !matches!(keyword.as_str(), "FROM" | "ARG") {
            errors.push(error("the first instruction must be FROM"));
        }
        let Some(value) = substitute(rest, &vars) else {
            errors.push(error(&format!("the value grows over {MAX_VALUE_BYTES} bytes once variables are substituted")));
            continue;
        };
        let instruction = match keyword.as_str() {
            "FROM" => Instruction::From(value),
            "ARG" => {
                let (name, default) = match rest.split_once('=') {
                    Some((n, d)) => (n.trim(), Some(d.trim().to_string())),
                    None => (rest, None),
                };
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
                    errors.push(error("ARG needs a NAME or NAME=default"));
                    continue;
                }
                match build_args.get(name).cloned().or(default) {
                    Some(v) if v.len() > MAX_VALUE_BYTES => {
                        errors.push(error(&format!("ARG `{name}` is over {MAX_VALUE_BYTES} bytes")));
                    }
                    Some(v) => {
                        vars.insert(name.to_string(), v);
                    }
                    None => errors.push(error(&format!("ARG `{name}` has no default and no --build-arg"))),
                }
                continue;
            }
            "COPY" => {
                let mut parts: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                if parts.len() < 2 {
                    errors.push(error("COPY needs SRC... DEST"));
                    continue;
                }
                let dest = parts.pop().unwrap_or_default();
                Instruction::Copy { sources: parts, dest }
            }
            "RUN" => Instruction::Run(value),
            "CMD" => Instruction::Cmd(value),
            "ENV" | "LABEL" => match key_value(&value) {
                Some((k, v)) if keyword == "ENV" => {
                    vars.insert(k.clone(), v.clone());
                    Instruction::Env(k, v)
                }
                Some((k, v)) => Instruction::Label(k, v),
                None => {
                    errors.push(error("needs KEY=VALUE"));
                    continue;
                }
            },
            _ => {
                errors.push(KubefileError {
                    line,
                    instruction: word.to_string(),
                    message: "unknown instruction".into(),
                });
                continue;
            }
        };
        steps.push(Step { line, instruction });
    }
    if steps.is_empty() && errors.is_empty() {
        errors.push(KubefileError { line: 1, instruction: String::new(), message: "the Kubefile has no FROM".into() });
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instructions_continuations_comments_and_args() {
        let text = "# c\nARG V=1.22\nFROM scratch\nCOPY a b \\\n  dest/\nRUN echo $V && \\\n  true\nENV K=v\nLABEL x=\"y z\"\nCMD kubectl apply -f ${K}\n";
        let steps = parse(text, &BTreeMap::new()).unwrap();
        let i: Vec<&Instruction> = steps.iter().map(|s| &s.instruction).collect();
        assert_eq!(i[0], &Instruction::From("scratch".into()));
        assert_eq!(i[1], &Instruction::Copy { sources: vec!["a".into(), "b".into()], dest: "dest/".into() });
        assert_eq!(i[2], &Instruction::Run("echo 1.22 &&  true".into()));
        assert_eq!(steps[2].line, 6);
        assert_eq!(i[4], &Instruction::Label("x".into(), "y z".into()));
        assert_eq!(i[5], &Instruction::Cmd("kubectl apply -f v".into()));
        let with_arg = parse("ARG V\nFROM img:$V\n", &[("V".to_string(), "2".to_string())].into()).unwrap();
        assert_eq!(with_arg[0].instruction, Instruction::From("img:2".into()));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let errors = parse("FROM scratch\nFETCH x\nARG\nARG NOPE\nCOPY onlyone\n", &BTreeMap::new()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 2: `FETCH`: unknown instruction",
                "line 3: `ARG`: needs an argument",
                "line 4: `ARG`: ARG `NOPE` has no default and no --build-arg",
                "line 5: `COPY`: COPY needs SRC... DEST"
            ]
        );
    }

    #[test]
    fn values_cannot_grow_without_bound() {
        let text = format!("FROM scratch\nENV X=ab\n{}", "ENV X=$X$X\n".repeat(26));
        let errors = parse(&text, &BTreeMap::new()).unwrap_err();
        assert!(errors[0].message.contains("grows over 65536 bytes"), "{}", errors[0]);
        assert!(errors.len() < 26, "a value stops growing at the limit");
        let big = "x".repeat(MAX_KUBEFILE_BYTES + 1);
        assert!(parse(&big, &BTreeMap::new()).unwrap_err()[0].message.contains("over the limit"));
    }
}

//! Kubefile: the build recipe of a cluster image (`FROM`, `COPY`, `RUN`, `CMD`, `ENV`, `ARG`, `LABEL`).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    From(String),
    Copy {
        sources: Vec<String>,
        dest: String,
    },
    Run(String),
    Cmd(String),
    /// `ENV` and `LABEL` set several pairs at once (`ENV A=1 B=2`), in order.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub instruction: Instruction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubefileError {
    pub line: usize,
    /// The column (1-based, in the line where the instruction starts) of what is wrong, when it is one
    /// place of the line.
    pub column: Option<usize>,
    pub instruction: String,
    pub message: String,
}

impl std::fmt::Display for KubefileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(column) => write!(f, "line {}, column {column}: `{}`: {}", self.line, self.instruction, self.message),
            None => write!(f, "line {}: `{}`: {}", self.line, self.instruction, self.message),
        }
    }
}

/// Logical lines: comments dropped, `\` continuations joined as Docker joins them (the backslash and the
/// line break go, the next line's indentation stays), each with the line it started on and the column
/// its text starts at there.
fn logical_lines(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let (start, first_column, mut acc) = current.take().unwrap_or((i + 1, indent + 1, String::new()));
        if trimmed.starts_with('#') {
            current = Some((start, first_column, acc));
            continue;
        }
        let text = if acc.is_empty() { trimmed } else { raw.trim_end() };
        match text.strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                current = Some((start, first_column, acc));
            }
            None => {
                acc.push_str(text);
                out.push((start, first_column, acc));
            }
        }
    }
    if let Some((start, first_column, acc)) = current {
        out.push((start, first_column, acc.trim_end().to_string()));
    }
    out
}

/// The largest Kubefile read, and the largest value one instruction may become once `$NAME`s are
/// substituted (`ENV X=$X$X` repeated would otherwise double it each line).
pub const MAX_KUBEFILE_BYTES: usize = 1 << 20;
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// A shell line's `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}` (also without the colon) for
/// the ARG/ENV names seen so far; a reference to any other name stays as written, for the shell that runs
/// the line. `None` when the result would be over [`MAX_VALUE_BYTES`].
fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
        } else if chars.get(i + 1) == Some(&'{') {
            let close = chars[i..].iter().position(|&c| c == '}').map(|p| p + i);
            let name: String = chars[i + 2..].iter().take_while(|c| is_name(c)).collect();
            let after = i + 2 + name.chars().count();
            match (close, vars.get(&name)) {
                (Some(close), Some(value)) if !name.is_empty() => {
                    let (colon, op_at) =
                        if chars.get(after) == Some(&':') { (true, after + 1) } else { (false, after) };
                    let word: String = chars[(op_at + 1).min(close)..close].iter().collect();
                    let set = !colon || !value.is_empty();
                    match (op_at < close).then(|| chars[op_at]) {
                        None => out.push_str(value),
                        Some('-') => out.push_str(if set { value } else { &word }),
                        Some('+') => out.push_str(if set { &word } else { "" }),
                        // Any other form is the shell's.
                        Some(_) => out.extend(&chars[i..=close]),
                    }
                    i = close + 1;
                }
                (Some(close), _) => {
                    out.extend(&chars[i..=close]);
                    i = close + 1;
                }
                (None, _) => {
                    out.extend(&chars[i..]);
                    i = chars.len();
                }
            }
        } else {
            let name: String = chars[i + 1..].iter().take_while(|c| is_name(c)).collect();
            match vars.get(&name) {
                Some(value) if !name.is_empty() => out.push_str(value),
                _ => {
                    out.push('$');
                    out.push_str(&name);
                }
            }
            i += 1 + name.chars().count();
        }
        if out.len() > MAX_VALUE_BYTES {
            return None;
        }
    }
    Some(out)
}

/// The char offset of byte offset `byte` of `s` (errors name columns in characters).
fn char_offset(s: &str, byte: usize) -> usize {
    s.get(..byte).map_or(0, |prefix| prefix.chars().count())
}

/// A place in an instruction's argument (a char offset) and what is wrong there.
type LexError = (usize, String);

/// Docker's word processing for `ENV`, `LABEL`, `ARG` and `COPY`: words split at unquoted whitespace
/// (all of `s` is one word when `split` is false); `"..."` keeps whitespace and expands variables, with
/// `\"`, `\\` and `\$` escapes; `'...'` is literal; `\x` outside quotes is `x`; `$NAME`, `${NAME}`,
/// `${NAME:-word}` and `${NAME:+word}` (also without the colon) expand from `vars` outside single quotes,
/// an unknown name to nothing.
fn words(s: &str, vars: &BTreeMap<String, String>, split: bool) -> Result<Vec<String>, LexError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    // A word that had quotes is a word even when empty (`""`); one that only had variables that expanded
    // to nothing is no word at all, as in Docker (`COPY $UNSET dest` has one argument, not two).
    let mut quoted = false;
    let mut total = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() && split => {
                if !word.is_empty() || quoted {
                    total += word.len();
                    out.push(std::mem::take(&mut word));
                    quoted = false;
                }
                i += 1;
                continue;
            }
            '\'' => {
                quoted = true;
                let close = chars[i + 1..].iter().position(|&c| c == '\'').ok_or((i, "unterminated '".to_string()))?;
                word.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
            }
            '"' => {
                quoted = true;
                let open = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err((open, "unterminated \"".into())),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$')) => {
                            word.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => i = expand(&chars, i, vars, &mut word)?,
                        Some(&c) => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                quoted = true;
                match chars.get(i + 1) {
                    Some(&next) => word.push(next),
                    None => word.push('\\'),
                }
                i += 2;
            }
            '$' => i = expand(&chars, i, vars, &mut word)?,
            c => {
                word.push(c);
                i += 1;
            }
        }
        // The whole instruction is bounded, not each word: `ENV A=$X B=$X ...` cannot multiply it.
        if total + word.len() > MAX_VALUE_BYTES {
            return Err((
                i.min(chars.len()),
                format!("the instruction grows over {MAX_VALUE_BYTES} bytes once variables are substituted"),
            ));
        }
    }
    if !word.is_empty() || quoted {
        out.push(word);
    }
    Ok(out)
}

/// Expands the variable reference at `chars[at]` (a `$`) into `word`; the index after it.
fn expand(chars: &[char], at: usize, vars: &BTreeMap<String, String>, word: &mut String) -> Result<usize, LexError> {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let mut i = at + 1;
    if chars.get(i) != Some(&'{') {
        let name: String = chars[i..].iter().take_while(|c| is_name(c)).collect();
        if name.is_empty() {
            word.push('$');
            return Ok(i);
        }
        word.push_str(vars.get(&name).map_or("", String::as_str));
        return Ok(i + name.chars().count());
    }
    i += 1;
    let name: String = chars[i..].iter().take_while(|c| is_name(c)).collect();
    i += name.chars().count();
    if name.is_empty() {
        return Err((at, "a variable reference needs a name: ${NAME}".into()));
    }
    let value = vars.get(&name);
    match chars.get(i) {
        Some('}') => {
            word.push_str(value.map_or("", String::as_str));
            Ok(i + 1)
        }
        Some(':' | '-' | '+') => {
            let colon = chars[i] == ':';
            let op = if colon { chars.get(i + 1).copied() } else { Some(chars[i]) };
            let start = if colon { i + 2 } else { i + 1 };
            let close = chars[start.min(chars.len())..]
                .iter()
                .position(|&c| c == '}')
                .ok_or((at, format!("unterminated ${{{name}...")))?;
            let alternative: String = chars[start..start + close].iter().collect();
            // `:-`/`:+` treat an empty value as unset; `-`/`+` only an absent one.
            let set = value.is_some_and(|v| !colon || !v.is_empty());
            match op {
                Some('-') => word.push_str(if set { value.map_or("", String::as_str) } else { &alternative }),
                Some('+') => word.push_str(if set { &alternative } else { "" }),
                _ => {
                    return Err((
                        i,
                        format!(
                            "`${{{name}{}...}}` is not supported: use ${{{name}:-word}} or ${{{name}:+word}}",
                            &chars[i..start.min(chars.len())].iter().collect::<String>()
                        ),
                    ))
                }
            }
            Ok(start + close + 1)
        }
        _ => Err((at, format!("`${{{name}` is not closed by `}}`"))),
    }
}

/// `ENV`/`LABEL` pairs, as Docker reads them: `K=V K2=V2 ...` (every word a pair), or the older
/// `K value with spaces` (one pair, the rest of the line its value). Variables expand from what was set
/// before the instruction.
fn pairs(rest: &str, vars: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, LexError> {
    let first_word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let first = &rest[..first_word_len];
    if !first.contains('=') {
        let key = words(first, vars, true)?.into_iter().next().unwrap_or_default();
        if key.is_empty() {
            return Err((0, "a name is needed: NAME=VALUE or NAME VALUE".into()));
        }
        let value_text = rest[first_word_len..].trim_start();
        if value_text.is_empty() {
            return Err((0, format!("`{key}` needs a value: NAME=VALUE or NAME VALUE")));
        }
        let offset = char_offset(rest, rest.len() - value_text.len());
        let value = words(value_text, vars, false).map_err(|(at, why)| (offset + at, why))?.concat();
        return Ok(vec![(key, value)]);
    }
    let mut out = Vec::new();
    for word in words(rest, vars, true)? {
        match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                let at = rest.find(word.as_str()).map_or(0, |b| char_offset(rest, b));
                return Err((at, format!("`{word}` is not NAME=VALUE")));
            }
        }
    }
    Ok(out)
}

/// The exec (JSON array) form of an instruction (`CMD ["a", "b"]`, `COPY ["a b", "dest/"]`), when it is
/// one; anything else (`RUN [ -d /x ] && ...`) is the shell form, as Docker reads it.
fn json_form(rest: &str) -> Option<Vec<String>> {
    rest.starts_with('[').then(|| serde_json::from_str::<Vec<String>>(rest).ok()).flatten()
}

/// Parses a Kubefile, with `--build-arg` values; reports every bad line.
pub fn parse(text: &str, build_args: &BTreeMap<String, String>) -> Result<Vec<Step>, Vec<KubefileError>> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    if text.len() > MAX_KUBEFILE_BYTES {
        let message = format!("the Kubefile is {} bytes, over the limit of {MAX_KUBEFILE_BYTES}", text.len());
        return Err(vec![KubefileError { line: 1, column: None, instruction: String::new(), message }]);
    }
    let mut scopes = Scopes::default();
    for (line, first_column, content) in logical_lines(text) {
        let vars = scopes.vars();
        let (word, rest) = content.split_once(char::is_whitespace).unwrap_or((&content, ""));
        let keyword = word.to_ascii_uppercase();
        let at = At { line, keyword: &keyword, rest_column: first_column + content.len() - rest.trim_start().len() };
        let rest = rest.trim();
        if rest.is_empty() {
            errors.push(at.error("needs an argument"));
            continue;
        }
        if steps.is_empty() && !matches!(keyword.as_str(), "FROM" | "ARG") {
            errors.push(at.error("the first instruction must be FROM"));
        }
        let instruction = match keyword.as_str() {
            "FROM" => from_instruction(rest, &mut scopes, &at),
            "ARG" => {
                arg_instruction(rest, (&vars, build_args), &mut scopes, &at, &mut errors);
                continue;
            }
            "COPY" => copy_instruction(rest, &vars, &at),
            "RUN" | "CMD" => shell_instruction(rest, &vars, &at),
            "ENV" | "LABEL" => match pairs(rest, &vars) {
                Ok(set) if keyword == "ENV" => {
                    scopes.env.extend(set.iter().cloned());
                    Ok(Instruction::Env(set))
                }
                Ok(set) => Ok(Instruction::Label(set)),
                Err(e) => Err(at.at(e)),
            },
            _ => Err(KubefileError {
                line,
                column: Some(first_column),
                instruction: word.to_string(),
                message: "unknown instruction".into(),
            }),
        };
        match instruction {
            Ok(instruction) => steps.push(Step { line, instruction }),
            Err(e) => errors.push(e),
        }
    }
    if steps.is_empty() && errors.is_empty() {
        errors.push(KubefileError {
            line: 1,
            column: None,
            instruction: String::new(),
            message: "the Kubefile has no FROM".into(),
        });
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

/// Docker's scopes: ARGs before the first FROM are for FROM lines only (a stage gets one's value by
/// declaring it again without a default); in the stage, an ENV wins over an ARG of the same name.
#[derive(Default)]
struct Scopes {
    global_args: BTreeMap<String, String>,
    stage_args: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    in_stage: bool,
}

impl Scopes {
    /// What `$NAME` means on the current line.
    fn vars(&self) -> BTreeMap<String, String> {
        let mut vars = if self.in_stage { self.stage_args.clone() } else { self.global_args.clone() };
        vars.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars
    }
}

/// Where an instruction is, for its errors: its line, and the column its argument starts at.
struct At<'a> {
    line: usize,
    keyword: &'a str,
    rest_column: usize,
}

impl At<'_> {
    fn error(&self, message: &str) -> KubefileError {
        KubefileError { line: self.line, column: None, instruction: self.keyword.to_string(), message: message.into() }
    }

    /// An error at `offset` characters into the argument.
    fn at(&self, (offset, message): LexError) -> KubefileError {
        KubefileError {
            line: self.line,
            column: Some(self.rest_column + offset),
            instruction: self.keyword.to_string(),
            message,
        }
    }
}

fn from_instruction(rest: &str, scopes: &mut Scopes, at: &At<'_>) -> Result<Instruction, KubefileError> {
    match words(rest, &scopes.global_args, true) {
        Ok(w) if w.len() == 1 => {
            scopes.in_stage = true;
            Ok(Instruction::From(w[0].clone()))
        }
        Ok(w) if w.len() == 3 && w[1].eq_ignore_ascii_case("as") => Err(at.at((
            rest.len().saturating_sub(w[2].len() + 3),
            "multi-stage builds (`FROM image AS name`) are not supported".into(),
        ))),
        Ok(_) if rest.starts_with("--") => Err(at.at((0, "FROM flags (`--platform`) are not supported".into()))),
        Ok(_) => Err(at.error("FROM takes one image")),
        Err(e) => Err(at.at(e)),
    }
}

/// `ARG NAME[=default] ...`: without a default nor a --build-arg, the value is empty. Each bad
/// declaration is an error of its own.
fn arg_instruction(
    rest: &str,
    (vars, build_args): (&BTreeMap<String, String>, &BTreeMap<String, String>),
    scopes: &mut Scopes,
    at: &At<'_>,
    errors: &mut Vec<KubefileError>,
) {
    let declared = match words(rest, vars, true) {
        Ok(w) => w,
        Err(e) => return errors.push(at.at(e)),
    };
    for declaration in declared {
        let (name, default) = match declaration.split_once('=') {
            Some((n, d)) => (n.to_string(), Some(d.to_string())),
            None => (declaration.clone(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let offset = rest.find(declaration.as_str()).map_or(0, |b| char_offset(rest, b));
            let shown: String = declaration.chars().take(80).collect();
            errors.push(at.at((offset, format!("`{shown}`: ARG needs a NAME or NAME=default"))));
            continue;
        }
        // A --build-arg, else the default, else (in a stage) the one declared before FROM, else empty.
        let inherited = if scopes.in_stage { scopes.global_args.get(&name).cloned() } else { None };
        let value = build_args.get(&name).cloned().or(default).or(inherited).unwrap_or_default();
        if value.len() > MAX_VALUE_BYTES {
            errors.push(at.error(&format!("ARG `{name}` is over {MAX_VALUE_BYTES} bytes")));
            continue;
        }
        if scopes.in_stage {
            scopes.stage_args.insert(name, value);
        } else {
            scopes.global_args.insert(name, value);
        }
    }
}

fn copy_instruction(rest: &str, vars: &BTreeMap<String, String>, at: &At<'_>) -> Result<Instruction, KubefileError> {
    if rest.starts_with("--") {
        let flag = rest.split(|c: char| c == '=' || c.is_whitespace()).next().unwrap_or(rest);
        return Err(at.at((0, format!("COPY `{flag}` is not supported"))));
    }
    let mut parts = match json_form(rest) {
        Some(parts) => parts,
        None => words(rest, vars, true).map_err(|e| at.at(e))?,
    };
    if parts.len() < 2 {
        return Err(at.error("COPY needs SRC... DEST"));
    }
    let dest = parts.pop().unwrap_or_default();
    Ok(Instruction::Copy { sources: parts, dest })
}

/// RUN and CMD are shell lines: `$NAME`s of ARG and ENV are substituted (sealer's rule), the rest is the
/// shell's. The exec form is a line of its quoted words, taken as written, as Docker does (no
/// substitution: a value could not then break out of their quoting).
fn shell_instruction(rest: &str, vars: &BTreeMap<String, String>, at: &At<'_>) -> Result<Instruction, KubefileError> {
    let value = match json_form(rest) {
        Some(parts) => parts.iter().map(|p| crate::shell::quote(p)).collect::<Vec<_>>().join(" "),
        None => substitute(rest, vars).ok_or_else(|| {
            at.error(&format!("the value grows over {MAX_VALUE_BYTES} bytes once variables are substituted"))
        })?,
    };
    Ok(if at.keyword == "RUN" { Instruction::Run(value) } else { Instruction::Cmd(value) })
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
        // An ARG before FROM is for FROM lines only (Docker's scope): the shell gets `$V` as written.
        assert_eq!(i[2], &Instruction::Run("echo $V &&   true".into()));
        assert_eq!(steps[2].line, 6);
        assert_eq!(i[4], &Instruction::Label(vec![("x".into(), "y z".into())]));
        assert_eq!(i[5], &Instruction::Cmd("kubectl apply -f v".into()));
        let with_arg = parse("ARG V\nFROM img:$V\n", &[("V".to_string(), "2".to_string())].into()).unwrap();
        assert_eq!(with_arg[0].instruction, Instruction::From("img:2".into()));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "FROM scratch\nFETCH x\nARG\nARG 1-bad\nCOPY onlyone\n  ENV A=\"open\nCOPY --chown=1 a b\nFROM base AS build\nLABEL x=${y\n";
        let errors = parse(text, &BTreeMap::new()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 2, column 1: `FETCH`: unknown instruction",
                "line 3: `ARG`: needs an argument",
                "line 4, column 5: `ARG`: `1-bad`: ARG needs a NAME or NAME=default",
                "line 5: `COPY`: COPY needs SRC... DEST",
                "line 6, column 9: `ENV`: unterminated \"",
                "line 7, column 6: `COPY`: COPY `--chown` is not supported",
                "line 8, column 11: `FROM`: multi-stage builds (`FROM image AS name`) are not supported",
                "line 9, column 9: `LABEL`: `${y` is not closed by `}`",
            ]
        );
    }

    fn pairs_of(text: &str, args: &[(&str, &str)]) -> Vec<Instruction> {
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(&format!("FROM scratch\n{text}"), &args).unwrap().into_iter().skip(1).map(|s| s.instruction).collect()
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The forms of Docker's reference: several pairs, quotes and escapes, the older `K V` form,
    /// substitution from what was set before the instruction, `${X:-default}`.
    #[test]
    fn env_and_label_read_as_docker_reads_them() {
        let got = pairs_of(
            "ARG VER=v1\nENV NAME=app-${VER} MORE=yes\nENV A=1 B=2\nENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog\n\
             ENV LEGACY some value  here\nENV X=1\nENV X=2 Y=$X\nENV Q='$NAME' D=\"$NAME\" E=${UNSET:-dflt} F=${VER:+set}\n\
             LABEL \"com.example.vendor\"=\"ACME Incorporated\" version=\"1.0\" multi.label1=\"value1\" other=value3\n",
            &[],
        );
        assert_eq!(
            got,
            [
                Instruction::Env(set(&[("NAME", "app-v1"), ("MORE", "yes")])),
                Instruction::Env(set(&[("A", "1"), ("B", "2")])),
                Instruction::Env(set(&[("MY_NAME", "John Doe"), ("MY_DOG", "Rex The Dog")])),
                Instruction::Env(set(&[("LEGACY", "some value  here")])),
                Instruction::Env(set(&[("X", "1")])),
                Instruction::Env(set(&[("X", "2"), ("Y", "1")])),
                Instruction::Env(set(&[("Q", "$NAME"), ("D", "app-v1"), ("E", "dflt"), ("F", "set")])),
                Instruction::Label(set(&[
                    ("com.example.vendor", "ACME Incorporated"),
                    ("version", "1.0"),
                    ("multi.label1", "value1"),
                    ("other", "value3")
                ])),
            ]
        );
    }

    /// `ARG` without a default is empty (Docker's), several in one instruction, `--build-arg` first.
    #[test]
    fn args_without_a_default_are_empty() {
        let got = pairs_of("ARG A B=2 C=3\nENV V=[$A][$B][$C]\n", &[("C", "from-flag")]);
        assert_eq!(got, [Instruction::Env(set(&[("V", "[][2][from-flag]")]))]);
    }

    /// Docker's scopes and precedence: an ARG before FROM is the stage's only when declared again; an ENV
    /// wins over an ARG of its name; a word that expands to nothing is no word.
    #[test]
    fn args_and_env_follow_dockers_scopes() {
        let text = "ARG G=global\nARG H=h\nFROM scratch\nARG G\nENV X=env\nARG X=arg\nLABEL g=$G h=[$H] x=$X\n";
        let steps = parse(text, &BTreeMap::new()).unwrap();
        assert_eq!(steps[2].instruction, Instruction::Label(set(&[("g", "global"), ("h", "[]"), ("x", "env")])));
        let errors = parse("FROM scratch\nARG SRC\nCOPY $SRC etc/\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(errors[0].message, "COPY needs SRC... DEST", "no whole-context copy from an empty word");
        let got = pairs_of("ENV E=\"\" F=''\n", &[]);
        assert_eq!(got, [Instruction::Env(set(&[("E", ""), ("F", "")]))], "quoted empties are values");
    }

    /// The exec form takes its words as written: a value cannot break out of their quoting. What is not a
    /// JSON array is the shell form.
    #[test]
    fn exec_forms_are_never_substituted_and_other_brackets_are_shell() {
        let got = pairs_of(
            "ENV A=\"x'; touch /tmp/pwned; '\"\nRUN [\"echo\", \"$A\"]\nRUN [ -d /tmp ] && echo ${A:+set}\nCMD echo ${UNSET:-d} ${A:-w}\n",
            &[],
        );
        assert_eq!(got[1], Instruction::Run("echo '$A'".into()));
        assert_eq!(got[2], Instruction::Run("[ -d /tmp ] && echo set".into()));
        assert_eq!(got[3], Instruction::Cmd("echo ${UNSET:-d} x'; touch /tmp/pwned; '".into()));
    }

    /// Every instruction is bounded as a whole, so many pairs of a large value cannot multiply it.
    #[test]
    fn many_pairs_of_a_large_value_are_refused() {
        let text = format!("FROM scratch\nENV A={}\nENV {}\n", "x".repeat(60_000), "B=$A ".repeat(20));
        let errors = parse(&text, &BTreeMap::new()).unwrap_err();
        assert!(errors[0].message.contains("grows over 65536 bytes"), "{}", errors[0]);
    }

    #[test]
    fn exec_forms_are_their_words() {
        let got =
            pairs_of("COPY [\"with space.txt\", \"etc/\"]\nCMD [\"kubectl\", \"apply\", \"-f\", \"a b.yaml\"]\n", &[]);
        assert_eq!(
            got,
            [
                Instruction::Copy { sources: vec!["with space.txt".into()], dest: "etc/".into() },
                Instruction::Cmd("kubectl apply -f 'a b.yaml'".into()),
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

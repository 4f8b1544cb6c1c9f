//! The crate boundaries of ARCHITECTURE.md, checked from `cargo metadata`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(sealer_tests::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal dependencies; dev and build ones do not ship
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn engine_names_no_io_crate() {
    let deps = dependencies();
    let engine = &deps["sealer-engine"];
    for forbidden in [
        "russh",
        "rusqlite",
        "oci-client",
        "clap",
        "indicatif",
        "similar",
        "sealer-providers",
        "sealer-state",
        "sealer-cli",
        "anyhow",
    ] {
        assert!(!engine.contains(forbidden), "sealer-engine depends on {forbidden}");
    }
}

#[test]
fn providers_and_state_do_not_know_each_other() {
    let deps = dependencies();
    assert!(!deps["sealer-providers"].contains("sealer-state"));
    assert!(!deps["sealer-state"].contains("sealer-providers"));
    for lib in ["sealer-providers", "sealer-state"] {
        assert!(deps[lib].contains("sealer-engine"), "{lib} must build on the engine");
        for forbidden in ["clap", "indicatif", "anyhow", "sealer-cli"] {
            assert!(!deps[lib].contains(forbidden), "{lib} depends on {forbidden}");
        }
    }
}

#[test]
fn only_the_cli_wires_everything_and_nothing_depends_on_it() {
    let deps = dependencies();
    for wired in ["sealer-engine", "sealer-providers", "sealer-state"] {
        assert!(deps["sealer-cli"].contains(wired), "sealer-cli must depend on {wired}");
    }
    for (name, d) in &deps {
        assert!(!d.contains("sealer-cli"), "{name} depends on the CLI");
        assert!(!d.contains("sealer-tests"), "{name} depends on the tests");
    }
}

/// The error types of every `Result<…>` written in `text`: its last generic argument, at the top level.
fn result_errors(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("Result<") {
        let (mut depth, mut last_comma, mut end) = (0usize, None, None);
        let generics = &text[start + "Result".len()..];
        for (i, c) in generics.char_indices() {
            match c {
                // `->` in a function type is no closing bracket.
                '>' if generics[..i].ends_with('-') => {}
                '<' => depth += 1,
                '>' if depth == 1 => {
                    end = Some(i);
                    break;
                }
                '>' => depth -= 1,
                ',' if depth == 1 => last_comma = Some(i),
                _ => {}
            }
        }
        if let (Some(comma), Some(end)) = (last_comma, end) {
            let base = start + "Result".len();
            found.push(text[base + comma + 1..base + end].trim().to_string());
        }
    }
    found
}

/// The workspace's Rust sources outside tests (`tests/`, `benches/`, `tests.rs`, `*_tests.rs`), each with
/// the code before its test module (an inline `#[cfg(test)] mod NAME {`; a `#[cfg(test)]` on anything else,
/// such as `mod fake;`, does not end it).
fn non_test_sources() -> Vec<(String, String)> {
    let root = sealer_tests::repo_root();
    let mut files = Vec::new();
    for dir in ["engine", "providers", "cli", "state", "relay"] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() && name != "benches" && name != "tests" {
                    stack.push(path);
                } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                    files.push(path);
                }
            }
        }
    }
    assert!(files.len() > 50, "the walk found {} files", files.len());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let end = text
                .match_indices("#[cfg(test)]")
                .map(|(i, m)| i + m.len())
                .find(|&i| {
                    let next = text[i..].trim_start().lines().next().unwrap_or_default();
                    next.starts_with("mod ") && next.ends_with('{')
                })
                .unwrap_or(text.len());
            (path.strip_prefix(&root).unwrap().display().to_string(), text[..end].to_string())
        })
        .collect()
}

/// Issue 26: errors are typed. No library, binary or build script of the workspace returns `Result<_,
/// String>` outside its tests.
#[test]
fn no_result_has_a_string_for_its_error() {
    assert_eq!(result_errors("fn f() -> Result<Vec<(u8, String)>, String> {}"), ["String"]);
    assert_eq!(result_errors("Result<(), E> and std::result::Result<u8, Box<dyn Error>>"), ["E", "Box<dyn Error>"]);
    assert_eq!(result_errors("Result<Box<dyn Fn() -> u8>, String>"), ["String"]);
    let stringly = |code: &str| {
        let code = code_only(code);
        let compact: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
        result_errors(&code).iter().any(|e| e == "String" || e == "std::string::String")
            || ["type Err = String;", "type Error = String;", "E = String>"].iter().any(|t| compact.contains(t))
    };
    assert!(stringly("impl FromStr for X { type Err = String; }") && !stringly("// Result<(), String>"));
    let offenders: Vec<String> =
        non_test_sources().into_iter().filter(|(_, code)| stringly(code)).map(|(path, _)| path).collect();
    assert!(offenders.is_empty(), "Result<_, String> in {offenders:?}");
}

/// `code` with the text of comments, strings and character literals blanked (newlines kept), so that
/// braces count as code.
fn code_only(code: &str) -> String {
    lex(code).0
}

/// [`code_only`], and the string literals of `code` (where each starts in the blanked text, its text).
fn lex(code: &str) -> (String, Vec<(usize, String)>) {
    let chars: Vec<char> = code.chars().collect();
    let mut literals = Vec::new();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(blank(chars[i]));
                i += 1;
            }
            out.push_str("  ");
            i += 2;
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            // `r"`, `r#"`, and `br"` (a byte string's `b` is no identifier before it).
            && !chars[..i].iter().rev().nth(usize::from(i > 0 && chars[i - 1] == 'b')).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let body_start = i + 2 + hashes;
            let rest: String = chars[body_start..].iter().collect();
            let len = rest.find(&close).map_or(rest.chars().count(), |b| rest[..b].chars().count());
            for ch in &chars[i..(body_start + len + close.len()).min(chars.len())] {
                out.push(blank(*ch));
            }
            i = body_start + len + close.len();
        } else if c == '"' {
            let (at, start) = (out.len(), i + 1);
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            literals.push((at, chars[start..i.min(chars.len())].iter().collect()));
            out.push(' ');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('{', '\n', '\''); a lifetime ('a) has no closing quote there.
            let end = if next == Some('\\') {
                (i + 3..chars.len()).find(|&j| chars[j] == '\'').unwrap_or(chars.len() - 1)
            } else {
                i + 2
            };
            for _ in i..=end {
                out.push(' ');
            }
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    (out, literals)
}

/// Each function of `code` (its name, first line, and length in lines from `fn` to its closing brace).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(code);
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(pos) = line.find("fn ") else { continue };
        let before = &line[..pos];
        let item = before.split_whitespace().all(|w| {
            ["pub", "pub(crate)", "pub(super)", "async", "const", "unsafe", "extern"].contains(&w)
                || w.starts_with("pub(")
        });
        if !item || !line[pos + 3..].starts_with(|c: char| c.is_alphabetic() || c == '_') {
            continue;
        }
        let name: String = line[pos + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // Its body: from the first `{` after the signature (a `;` first is a declaration) to its match.
        let (mut depth, mut brackets, mut opened, mut end) = (0i64, 0i64, false, None);
        'scan: for (j, l) in lines.iter().enumerate().skip(at) {
            let from = if j == at { pos } else { 0 };
            for c in l[from..].chars() {
                match c {
                    '(' | '[' if !opened => brackets += 1,
                    ')' | ']' if !opened => brackets -= 1,
                    ';' if !opened && depth == 0 && brackets == 0 => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            end = Some(j);
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(end) = end {
            found.push((name, at + 1, end - at + 1));
        }
    }
    found
}

/// Issue 26: modules a newcomer can hold. No source file outside tests is over 700 lines, and no function
/// outside tests over 80.
#[test]
fn no_file_over_700_lines_and_no_function_over_80() {
    let sample =
        "fn a() {\n    let s = \"}\";\n    let c = '{';\n    // }\n}\nfn b<'a>(x: &'a str) -> &'a str {\n    x\n}\n";
    assert_eq!(functions(sample), [("a".to_string(), 1, 5), ("b".to_string(), 6, 3)]);
    let raw = "fn r() {\n    let t = r#\"{ \"} \"#;\n    let b = br#\"{\"#;\n    let q = '\\'';\n}\n";
    assert_eq!(functions(raw), [("r".to_string(), 1, 5)]);
    let array = "fn n<const N: usize>(x: [u8; N]) -> usize {\n    N\n}\n";
    assert_eq!(functions(array), [("n".to_string(), 1, 3)]);
    let mut long = Vec::new();
    for (path, code) in non_test_sources() {
        let lines = code.lines().count();
        if lines > 700 {
            long.push(format!("{path}: {lines} lines"));
        }
        for (name, at, length) in functions(&code) {
            if length > 80 {
                long.push(format!("{path}:{at}: fn {name} is {length} lines"));
            }
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}

/// The attribute names each resource kind declares in its schema module (`engine/src/schema/KIND.rs`,
/// the fields of its `schema!`), with the module.
fn schema_attributes() -> Vec<(String, String)> {
    let dir = sealer_tests::repo_root().join("engine/src/schema");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "mod.rs" || !name.ends_with(".rs") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(entry.path()).unwrap());
        let Some(start) = code.find("schema! {") else { continue };
        let body = &code[start..];
        let body = &body[body.find(" for ").unwrap()..];
        let (open, close) = (body.find('{').unwrap(), body.find("\n    }\n").unwrap());
        for line in body[open + 1..close].lines() {
            let line = line.trim();
            if let Some((field, _)) = line.split_once(':').filter(|_| !line.starts_with('#')) {
                found.push((field.trim_start_matches("r#").to_string(), format!("engine/src/schema/{name}")));
            }
        }
    }
    found
}

/// Where `code` names one of `attributes` by a string literal to reach a resource's attributes: the
/// literal is the key given to a map's `get`, `get_mut`, `insert`, `remove`, `contains_key` or `entry`,
/// or to a helper after a resource's attributes (`text(&after, "config")`), or a line that builds or reads
/// attributes (`Value::`, `Attributes`, `attributes`, `attrs`) holds it.
fn attribute_literals(code: &str, attributes: &BTreeSet<String>) -> Vec<(usize, String)> {
    let (blank, literals) = lex(code);
    let mut found = Vec::new();
    for (at, text) in literals.into_iter().filter(|(_, t)| attributes.contains(t)) {
        let line_start = blank[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = blank[at..].find('\n').map_or(blank.len(), |i| at + i);
        let before = blank[line_start..at].trim_end();
        let line = &blank[line_start..line_end];
        let keyed =
            ["get(", "get_mut(", "insert(", "remove(", "contains_key(", "entry("].iter().any(|m| before.ends_with(m));
        let built = ["Value::", "Attributes", "attributes", "attrs"].iter().any(|m| line.contains(m));
        // A helper given a resource's attributes and a key: `text(&after, "config")`.
        let helper = before.ends_with(',') && ["after", "before", "recorded"].iter().any(|m| line.contains(m));
        if keyed || built || helper {
            found.push((blank[..at].matches('\n').count() + 1, text));
        }
    }
    found
}

/// Issue 26: one kind, one typed place. A resource kind's attributes are the fields of its schema
/// (`engine/src/schema/KIND.rs`); nothing outside tests reaches one by a string literal: compile builds
/// the struct, providers take it.
#[test]
fn no_attribute_is_named_outside_its_kind() {
    let declared = schema_attributes();
    let names: BTreeSet<String> = declared.iter().map(|(n, _)| n.clone()).collect();
    // What the source reading found is what the engine declares, kind by kind: the reading cannot pass
    // by finding nothing.
    let files: BTreeSet<&String> = declared.iter().map(|(_, file)| file).collect();
    assert_eq!(files.len(), sealer_engine::Kind::ALL.len(), "one schema module per kind: {files:?}");
    let engine: BTreeSet<String> = sealer_engine::Kind::ALL
        .iter()
        .flat_map(|k| sealer_engine::schema::attributes(*k).iter().map(|a| a.to_string()))
        .collect();
    assert_eq!(names, engine, "the schema modules read as the engine declares them");
    let sample = "let a = attrs.get(\"role\");\nlet b = json[\"role\"];\nx.insert(\"cmds\".into(), v);\n\
                  let p = (\"type\", Value::text(t));\n// attributes: \"role\"\nlet s = \"role\";\n\
                  let c = text(&after, \"config\");\nlet d = f(x, \"config\");\n";
    assert_eq!(
        attribute_literals(sample, &names),
        [(1, "role".to_string()), (3, "cmds".to_string()), (4, "type".to_string()), (7, "config".to_string())]
    );
    let mut offenders = Vec::new();
    for (path, code) in non_test_sources() {
        // Only code that holds resources can reach their attributes; elsewhere the same words are
        // Clusterfile, Kubefile or API keys.
        let holds_resources = ["Attributes", ".attributes", ".before", ".after"].iter().any(|m| code.contains(m));
        if path.starts_with("engine/src/schema/") || !holds_resources {
            continue;
        }
        for (line, name) in attribute_literals(&code, &names) {
            offenders.push(format!("{path}:{line}: \"{name}\""));
        }
    }
    assert!(offenders.is_empty(), "attributes named outside their kind's schema: {offenders:#?}");
}

/// Issue 26: the `ops` library's errors are typed (`ops::Error`, thiserror); `anyhow` is the binary's only
/// (its commands render what an operation returns).
#[test]
fn the_ops_library_names_no_anyhow() {
    let library: Vec<(String, String)> = non_test_sources()
        .into_iter()
        .filter(|(path, _)| path.starts_with("cli/src/ops/") || path == "cli/src/lib.rs")
        .collect();
    assert!(library.len() > 10, "the walk found the ops library: {}", library.len());
    let offenders: Vec<String> =
        library.into_iter().filter(|(_, code)| code_only(code).contains("anyhow")).map(|(path, _)| path).collect();
    assert!(offenders.is_empty(), "anyhow in the ops library: {offenders:?}");
}

/// Issue 26: thin commands. A command parses its arguments, calls operations of `ops` and renders what they
/// return: it reaches no provider and no state backend itself (the renderers implement the providers'
/// progress traits, which is rendering).
#[test]
fn commands_call_operations_not_providers_or_state() {
    let commands: Vec<(String, String)> =
        non_test_sources().into_iter().filter(|(path, _)| path.starts_with("cli/src/commands/")).collect();
    assert!(commands.len() >= 8, "the walk found the commands: {}", commands.len());
    let offenders: Vec<String> = commands
        .into_iter()
        .filter(|(_, code)| ["sealer_providers", "sealer_state"].iter().any(|c| code_only(code).contains(c)))
        .map(|(path, _)| path)
        .collect();
    assert!(offenders.is_empty(), "commands reaching providers or state directly: {offenders:?}");
}

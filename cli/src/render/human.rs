//! Terraform-style plan text: one block per changing resource, attribute diffs, unified diffs for
//! multi-line values, secrets as `(sensitive)`, and a summary line.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sealer_engine::{Action, Kind, Plan, Reason, ResourceChange, Rollout, StoredResource, Value};
use similar::{ChangeTag, TextDiff};

use super::json::{SENSITIVE, UNKNOWN};

struct Style {
    color: bool,
    verbose: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn symbol(&self, action: Action) -> String {
        match action {
            Action::Create => self.paint("32", "+"),
            Action::Update => self.paint("33", "~"),
            Action::Delete => self.paint("31", "-"),
            Action::Replace => format!("{}/{}", self.paint("31", "-"), self.paint("32", "+")),
            Action::NoOp => " ".into(),
        }
    }
    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn is_multiline(v: &Value) -> bool {
    matches!(v, Value::Text(s) if s.contains('\n'))
}

/// A value on one line, as HCL would show it.
fn inline(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Text(s) => quote(s),
        Value::List(items) => format!("[{}]", items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", ")),
        Value::Map(m) => {
            format!(
                "{{ {} }}",
                m.iter().map(|(k, v)| format!("{} = {}", quote(k), quote(v))).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Sensitive | Value::Sealed(_) => SENSITIVE.into(),
        Value::Unknown => UNKNOWN.into(),
    }
}

const INDENT: &str = "      ";

/// `sha256 ` and the first 12 hex digits of `text`'s SHA-256: enough to tell two values apart.
fn short_digest(text: &str) -> String {
    use sha2::Digest as _;
    format!("sha256 {}", &format!("{:x}", sha2::Sha256::digest(text.as_bytes()))[..12])
}

/// A resource's attributes on one line: short values as they are, a multi-line text as its line count and
/// digest, long lists and maps as their size, and the attributes known only after apply named together.
fn brief(attributes: &sealer_engine::Attributes) -> String {
    let mut parts = Vec::new();
    let mut unknown = Vec::new();
    for (name, value) in attributes {
        let shown = match value {
            Value::Unknown => {
                unknown.push(name.as_str());
                continue;
            }
            Value::Text(text) if text.contains('\n') => {
                format!("({} lines, {})", text.lines().count(), short_digest(text))
            }
            // A digest is told apart by its first 12 hex digits; `--verbose` shows it whole.
            Value::Text(text)
                if text.len() > 19
                    && text.strip_prefix("sha256:").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) =>
            {
                format!("\"{}…\"", &text[..19])
            }
            // A long line (a base64 blob) by its length and digest.
            Value::Text(text) if text.chars().count() > 80 => {
                format!("({} characters, {})", text.chars().count(), short_digest(text))
            }
            Value::List(items) if items.len() > 3 => format!("[{} items]", items.len()),
            Value::Map(map) if map.len() > 2 || map.values().any(|v| v.contains('\n')) => {
                format!("{{{} entries}}", map.len())
            }
            other => inline(other),
        };
        parts.push(format!("{name} = {shown}"));
    }
    if !unknown.is_empty() {
        parts.push(format!("{} = {UNKNOWN}", unknown.join(", ")));
    }
    parts.join(", ")
}

/// `name = value` for a created or deleted attribute; `s` is the (painted) sign, or a space for a value
/// shown as it is.
fn whole(out: &mut String, s: &str, name: &str, width: usize, v: &Value) {
    whole_at(out, INDENT, s, name, width, v);
}

fn whole_at(out: &mut String, indent: &str, s: &str, name: &str, width: usize, v: &Value) {
    match v {
        Value::Text(text) if is_multiline(v) => {
            let _ = writeln!(out, "{indent}{s} {name:width$} = <<-EOT");
            for line in text.lines() {
                let _ = writeln!(out, "{indent}      {line}");
            }
            let _ = writeln!(out, "{indent}  EOT");
        }
        Value::Map(m) if !m.is_empty() => {
            let _ = writeln!(out, "{indent}{s} {name:width$} = {{");
            let kw = m.keys().map(|k| quote(k).len()).max().unwrap_or(0);
            for (k, val) in m {
                let _ = writeln!(out, "{indent}    {s} {:kw$} = {}", quote(k), quote(val));
            }
            let _ = writeln!(out, "{indent}  }}");
        }
        _ => {
            let _ = writeln!(out, "{indent}{s} {name:width$} = {}", inline(v));
        }
    }
}

/// A changed attribute: maps key by key, lists item by item, multi-line text as a unified diff.
fn changed(out: &mut String, st: &Style, name: &str, width: usize, before: &Value, after: &Value, forces: bool) {
    let tilde = st.paint("33", "~");
    let note = if forces { format!(" {}", st.paint("31", "# forces replacement")) } else { String::new() };
    match (before, after) {
        (Value::Text(a), Value::Text(b)) if a.contains('\n') || b.contains('\n') => {
            let _ = writeln!(out, "{INDENT}{tilde} {name:width$} = <<-EOT{note}");
            let diff = TextDiff::from_lines(a.as_str(), b.as_str());
            // Verbose: three lines of context, as `diff -u`; else only the lines that change.
            let context = if st.verbose { 3 } else { 0 };
            for (i, group) in diff.grouped_ops(context).iter().enumerate() {
                if i > 0 {
                    let _ = writeln!(out, "{INDENT}        ...");
                }
                for op in group {
                    for change in diff.iter_changes(op) {
                        let line = change.value().trim_end_matches('\n');
                        let sign = match change.tag() {
                            ChangeTag::Delete => st.paint("31", "-"),
                            ChangeTag::Insert => st.paint("32", "+"),
                            ChangeTag::Equal => " ".into(),
                        };
                        let _ = writeln!(out, "{INDENT}    {sign} {line}");
                    }
                }
            }
            let _ = writeln!(out, "{INDENT}  EOT");
        }
        (Value::Map(a), Value::Map(b)) => {
            let _ = writeln!(out, "{INDENT}{tilde} {name:width$} = {{{note}");
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let kw = keys.iter().map(|k| quote(k).len()).max().unwrap_or(0);
            let mut same = 0;
            for k in keys {
                let q = quote(k);
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) if x == y => same += 1,
                    (Some(x), Some(y)) => {
                        let _ = writeln!(out, "{INDENT}    {tilde} {q:kw$} = {} -> {}", quote(x), quote(y));
                    }
                    (None, Some(y)) => {
                        let _ = writeln!(out, "{INDENT}    {} {q:kw$} = {}", st.paint("32", "+"), quote(y));
                    }
                    (Some(x), None) => {
                        let _ = writeln!(out, "{INDENT}    {} {q:kw$} = {} -> null", st.paint("31", "-"), quote(x));
                    }
                    (None, None) => {}
                }
            }
            if same > 0 {
                let _ = writeln!(out, "{INDENT}      # ({same} unchanged elements hidden)");
            }
            let _ = writeln!(out, "{INDENT}  }}");
        }
        (Value::List(a), Value::List(b)) => {
            let _ = writeln!(out, "{INDENT}{tilde} {name:width$} = [{note}");
            for item in a.iter().filter(|i| !b.contains(i)) {
                let _ = writeln!(out, "{INDENT}    {} {},", st.paint("31", "-"), quote(item));
            }
            for item in b {
                let sign = if a.contains(item) { " ".to_string() } else { st.paint("32", "+") };
                let _ = writeln!(out, "{INDENT}    {sign} {},", quote(item));
            }
            let _ = writeln!(out, "{INDENT}  ]");
        }
        _ => {
            let _ = writeln!(out, "{INDENT}{tilde} {name:width$} = {} -> {}{note}", inline(before), inline(after));
        }
    }
}

fn headline(c: &ResourceChange) -> String {
    let what = match c.action {
        Action::Create => "will be created".to_string(),
        Action::Update => "will be updated in-place".to_string(),
        Action::Replace => "must be replaced".to_string(),
        Action::Delete => "will be destroyed".to_string(),
        Action::NoOp => "is up to date".to_string(),
    };
    let why = match (&c.previous_address, c.reason) {
        (Some(from), _) => format!("\n  # (moved from {from})"),
        (None, Reason::DeleteBecauseNoResourceConfig) => "\n  # (because it is no longer in the Clusterfile)".into(),
        (None, Reason::ReplaceBecauseTainted) => {
            "\n  # (because it is tainted: an earlier apply failed part-way)".into()
        }
        (None, _) => String::new(),
    };
    format!("  # {} {what}{why}", c.address)
}

/// The plan's symbol for `action` (`+`, `~`, `-`, `-/+`), without colours.
pub fn symbol(action: Action) -> String {
    Style { color: false, verbose: true }.symbol(action)
}

/// One change as the human plan shows it, without colours (the markdown plan puts it in a block).
pub fn change_text(c: &ResourceChange, note: Option<&String>) -> String {
    let mut out = String::new();
    change_block(&mut out, &Style { color: false, verbose: true }, c, note);
    out
}

fn change_block(out: &mut String, st: &Style, c: &ResourceChange, note: Option<&String>) {
    let _ = writeln!(out, "{}", st.bold(&headline(c)));
    if let Some(note) = note {
        let _ = writeln!(out, "  # ({note})");
    }
    let symbol = st.symbol(c.action);
    let pad = if c.action == Action::Replace { "" } else { "  " };
    let host = c.host.map(|h| format!(" # on {h}")).unwrap_or_default();
    if !st.verbose && matches!(c.action, Action::Create | Action::Delete) {
        let attributes = if c.action == Action::Create { c.after.as_ref() } else { c.before.as_ref() };
        let body = attributes.map(brief).unwrap_or_default();
        let host = c.host.filter(|h| h.to_string() != c.address.key).map(|h| format!(" # on {h}")).unwrap_or_default();
        let _ = writeln!(out, "{pad}{symbol} {} {} {{ {body} }}{host}", c.kind.as_str(), quote(&c.address.key));
        return;
    }
    let _ = writeln!(out, "{pad}{symbol} {} {} {{{host}", c.kind.as_str(), quote(&c.address.key));
    let empty = Default::default();
    let before = c.before.as_ref().unwrap_or(&empty);
    let after = c.after.as_ref().unwrap_or(&empty);
    match c.action {
        Action::Create => {
            let width = after.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in after {
                whole(out, &st.paint("32", "+"), k, width, v);
            }
        }
        Action::Delete => {
            let width = before.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in before {
                whole(out, &st.paint("31", "-"), k, width, v);
            }
        }
        Action::Update | Action::Replace | Action::NoOp => {
            let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            let differing: Vec<&String> = keys.iter().copied().filter(|k| before.get(*k) != after.get(*k)).collect();
            let width = differing.iter().map(|k| k.len()).max().unwrap_or(0);
            for k in &differing {
                let forces = c.replace_paths.contains(k);
                match (before.get(*k), after.get(*k)) {
                    (Some(b), Some(a)) => changed(out, st, k, width, b, a, forces),
                    (None, Some(a)) => whole(out, &st.paint("32", "+"), k, width, a),
                    (Some(b), None) => whole(out, &st.paint("31", "-"), k, width, b),
                    (None, None) => {}
                }
            }
            let hidden = keys.len() - differing.len();
            if hidden > 0 {
                let _ = writeln!(out, "{INDENT}  # ({hidden} unchanged attributes hidden)");
            }
        }
    }
    let _ = writeln!(out, "    }}\n");
}

/// The upgrade's steps in the order they run, each with its version change and what it does.
fn rollout_block(out: &mut String, st: &Style, rollout: &Rollout) {
    let nodes = match rollout.max_unavailable {
        1 => "one host at a time".to_string(),
        n => format!("masters one at a time, then at most {n} nodes at once"),
    };
    let _ = writeln!(out, "{}", st.bold(&format!("Kubernetes upgrade, in this order ({nodes}):")));
    for (i, step) in rollout.steps.iter().enumerate() {
        let what = if step.address.kind == Kind::KubeadmInit { "upgrade apply" } else { "upgrade node" };
        let _ = writeln!(
            out,
            "  {}. {}: {} -> {} (drain, kubeadm {what}, uncordon)",
            i + 1,
            step.address,
            step.from,
            step.to
        );
    }
    let _ = writeln!(out);
}

/// The plan as a person reads it. By default a created or destroyed resource is one line and a multi-line
/// value its line count and digest, and an update shows only what changes (a multi-line value: only its
/// changed lines); `verbose` shows every attribute in full, as `terraform plan` does.
pub fn plan(plan: &Plan, color: bool, verbose: bool) -> String {
    let st = Style { color, verbose };
    let mut out = String::new();
    if !plan.has_changes() {
        let _ =
            writeln!(out, "{}", st.bold(&format!("No changes. Cluster `{}` matches the Clusterfile.", plan.cluster)));
        return out;
    }
    let _ = writeln!(
        out,
        "Cluster `{}`{} will be changed as follows. Symbols:\n  {} create\n  {} update in-place\n  {} destroy\n{} destroy and then create replacement\n",
        plan.cluster,
        plan.lineage.as_deref().map(|l| format!(" (lineage {l}, serial {})", plan.prior_serial)).unwrap_or_default(),
        st.symbol(Action::Create),
        st.symbol(Action::Update),
        st.symbol(Action::Delete),
        st.symbol(Action::Replace),
    );
    let mut compact = false;
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let one_line = !st.verbose && matches!(c.action, Action::Create | Action::Delete);
        // One-line changes follow each other; a block (an update) stands apart from its neighbours.
        if compact && !one_line {
            out.push('\n');
        }
        change_block(&mut out, &st, c, plan.notes.get(&c.address));
        compact = one_line;
    }
    if compact {
        out.push('\n');
    }
    if let Some(rollout) = &plan.rollout {
        rollout_block(&mut out, &st, rollout);
    }
    let s = plan.summary();
    let _ = writeln!(
        out,
        "{}",
        st.bold(&format!(
            "Plan: {} to add, {} to change, {} to replace, {} to destroy.",
            s.create, s.update, s.replace, s.delete
        ))
    );
    out
}

pub fn stored_resource(r: &StoredResource) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "# {} ({})", r.address, serde_json::to_string(&r.status).unwrap_or_default().trim_matches('"'));
    if let Some(host) = r.host {
        let _ = writeln!(out, "# on {host}");
    }
    if !r.depends_on.is_empty() {
        let _ = writeln!(
            out,
            "# depends on {}",
            r.depends_on.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(out, "resource {} {} {{", quote(r.address.kind.as_str()), quote(&r.address.key));
    let width = r.attributes.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in &r.attributes {
        whole_at(&mut out, "", " ", k, width, v);
    }
    let _ = writeln!(out, "}}");
    out
}

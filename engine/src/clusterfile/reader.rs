//! Reading one YAML document field by field, recording a diagnostic (with its position) for every problem
//! instead of stopping at the first.

use serde_yaml::Value;

use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::source_map::DocumentPositions;

pub(crate) struct DocReader<'a> {
    pub file: &'a str,
    /// Addresses the file may still expand to (`ip::MAX_ADDRESSES_PER_FILE` in all).
    pub addresses: &'a std::cell::Cell<usize>,
    /// 1-based document number.
    pub document: usize,
    pub positions: Option<&'a DocumentPositions>,
    pub diagnostics: &'a mut Vec<Diagnostic>,
}

/// A scalar as the user wrote it, for messages; `None` for mappings and sequences.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl DocReader<'_> {
    /// Expands an IP list within the file's address budget.
    pub fn expand(&self, list: &str) -> Result<Vec<std::net::IpAddr>, super::IpListError> {
        let mut budget = self.addresses.get();
        let expanded = super::expand_list(list, &mut budget);
        self.addresses.set(budget);
        expanded
    }

    /// Where the field at `path` is.
    pub fn location(&self, path: &str) -> Location {
        let pos = self.positions.and_then(|p| p.get(path));
        Location {
            file: self.file.to_string(),
            document: Some(self.document),
            field: (!path.is_empty()).then(|| path.to_string()),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
        }
    }

    fn push(&mut self, severity: Severity, path: &str, value: Option<String>, message: String) {
        if self.diagnostics.len() >= crate::diagnostic::MAX_COLLECTED {
            return;
        }
        let pos = self.positions.and_then(|p| p.get(path));
        self.diagnostics.push(Diagnostic {
            severity,
            location: Location {
                file: self.file.to_string(),
                document: Some(self.document),
                field: (!path.is_empty()).then(|| path.to_string()),
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
            },
            message,
            value: value.as_deref().map(crate::diagnostic::quoted_value),
        });
    }

    pub fn error(&mut self, path: &str, value: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, path, value.map(str::to_string), message.into());
    }

    /// A warning about line `line_no` (1-based) of the multi-line text at `path` (a plugin's data): its
    /// position is that line of the file.
    pub fn warning_at_line(&mut self, path: &str, line_no: usize, value: Option<String>, message: impl Into<String>) {
        let before = self.diagnostics.len();
        self.push(Severity::Warning, path, value, message.into());
        if self.diagnostics.len() > before {
            if let Some(d) = self.diagnostics.last_mut() {
                d.location.line = d.location.line.map(|l| l + line_no.saturating_sub(1));
            }
        }
    }

    pub fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, path, None, message.into());
    }

    /// Warns about keys of `map` the reader does not know, so typos do not pass silently.
    pub fn warn_unknown_keys(&mut self, map: &Value, path: &str, known: &[&str]) {
        let Value::Mapping(m) = map else { return };
        for key in m.keys() {
            let name = scalar_text(key).unwrap_or_default();
            if !known.contains(&name.as_str()) {
                self.warning(&child_path(path, &name), format!("unknown field `{name}` is ignored"));
            }
        }
    }

    /// The mapping at `path`, or `None` (with an error when something else is there).
    pub fn mapping<'v>(&mut self, value: Option<&'v Value>, path: &str) -> Option<&'v Value> {
        match value {
            None | Some(Value::Null) => None,
            Some(v @ Value::Mapping(_)) => Some(v),
            Some(other) => {
                let text = scalar_text(other);
                self.error(path, text.as_deref(), "expected a mapping");
                None
            }
        }
    }

    /// A string field; numbers and booleans are accepted as their text, as YAML users expect.
    pub fn string(&mut self, value: Option<&Value>, path: &str) -> Option<String> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(_) => {
                self.error(path, None, "expected a string");
                None
            }
        }
    }

    /// A list of strings; a single string is read as a one-item list.
    pub fn string_list(&mut self, value: Option<&Value>, path: &str) -> Vec<(String, String)> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item_path = format!("{path}[{i}]");
                    self.string(Some(item), &item_path).map(|s| (item_path, s))
                })
                .collect(),
            Some(Value::String(s)) => vec![(path.to_string(), s.clone())],
            Some(other) => {
                let text = scalar_text(other);
                self.error(path, text.as_deref(), "expected a list of strings");
                Vec::new()
            }
        }
    }

    pub fn sequence<'v>(&mut self, value: Option<&'v Value>, path: &str) -> &'v [Value] {
        match value {
            None | Some(Value::Null) => &[],
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                let text = scalar_text(other);
                self.error(path, text.as_deref(), "expected a list");
                &[]
            }
        }
    }
}

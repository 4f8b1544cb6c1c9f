//! Problems found in user input, collected so that every one of them is reported at once.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// Where a problem is: the file, the document (1-based, in file order), the field path inside it and, when
/// the YAML parser gave one, the line and column (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub document: Option<usize>,
    pub field: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
    /// The offending value as written by the user; never set for secrets.
    pub value: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let loc = &self.location;
        write!(f, "{label}: {}", loc.file)?;
        if let Some(line) = loc.line {
            write!(f, ":{line}")?;
            if let Some(column) = loc.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(document) = loc.document {
            write!(f, ": document {document}")?;
        }
        if let Some(field) = &loc.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(value) = &self.value {
            write!(f, " (value `{value}`)")?;
        }
        Ok(())
    }
}

/// The most characters of a value a diagnostic quotes.
pub const MAX_VALUE_CHARS: usize = 80;

/// `value` as a diagnostic quotes it: its first line, at most [`MAX_VALUE_CHARS`] characters of it, and `…`
/// where anything was cut. The value is there to point at the mistake; a whole file read as one scalar
/// (`sealer plan -f /etc/passwd`) would otherwise be echoed in full, on the terminal and in JSON.
pub fn quoted_value(value: &str) -> String {
    // A block scalar's final line break is part of no line: cutting it cuts nothing the user would miss.
    let whole = value.trim_end_matches(['\r', '\n']);
    let first = whole.lines().next().unwrap_or_default();
    let mut shown: String = first.chars().take(MAX_VALUE_CHARS).collect();
    if shown.len() < whole.len() {
        shown.push('…');
    }
    shown
}

/// The most problems of one input shown; past it they are counted, not listed.
pub const MAX_SHOWN: usize = 1000;
/// The most problems of one input kept at all (memory stays bounded however broken the input).
pub const MAX_COLLECTED: usize = 10_000;

/// Every problem found in one input, errors first, then in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Sorts, errors first then in source order, and keeps at most [`MAX_SHOWN`]: a broken file of a
    /// few megabytes could otherwise print hundreds of thousands of lines. The rest are counted in a last
    /// diagnostic of their own.
    pub(crate) fn sort_and_cap(&mut self) {
        self.sort();
        if self.0.len() > MAX_SHOWN {
            let rest = self.0.split_off(MAX_SHOWN);
            let errors = rest.iter().filter(|d| d.severity == Severity::Error).count();
            let file = rest[0].location.file.clone();
            self.0.push(Diagnostic {
                severity: if errors > 0 { Severity::Error } else { Severity::Warning },
                location: Location { file, document: None, field: None, line: None, column: None },
                message: if rest.len() + MAX_SHOWN >= MAX_COLLECTED {
                    format!("{}+ more problem(s) not shown", rest.len())
                } else {
                    format!("{} more problem(s) ({errors} error(s)) not shown", rest.len())
                },
                value: None,
            });
        }
    }

    pub(crate) fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (a.severity, a.location.document, a.location.line, a.location.column).cmp(&(
                b.severity,
                b.location.document,
                b.location.line,
                b.location.column,
            ))
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let errors = self.errors().count();
        if errors > 0 {
            write!(f, "{errors} error(s) found")?;
        }
        Ok(())
    }
}

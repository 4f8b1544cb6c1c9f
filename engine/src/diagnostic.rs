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

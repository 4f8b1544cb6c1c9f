//! The documented JSON formats, serialised straight from the plan (no intermediate JSON tree), so that
//! a plan of 10,000 hosts streams out in little memory.

use std::io::Write;

use sealer_engine::{Address, Attributes, Diagnostic, Plan, StoredResource, Summary, Value};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// How the human output shows a secret; JSON has `null` there and marks it in `*_sensitive`, as
/// Terraform's JSON plan does.
pub const SENSITIVE: &str = "(sensitive)";
pub const UNKNOWN: &str = "(known after apply)";

/// A value as plain JSON; secrets and values only apply learns are shown as marker strings.
struct ValueView<'a>(&'a Value);

impl Serialize for ValueView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Text(t) => s.serialize_str(t),
            Value::List(items) => items.serialize(s),
            Value::Map(m) => m.serialize(s),
            Value::Sensitive | Value::Sealed(_) => s.serialize_none(),
            Value::Unknown => s.serialize_str(UNKNOWN),
        }
    }
}

struct AttributesView<'a>(Option<&'a Attributes>);

impl Serialize for AttributesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(attributes) = self.0 else { return s.serialize_none() };
        let mut map = s.serialize_map(Some(attributes.len()))?;
        for (k, v) in attributes {
            map.serialize_entry(k, &ValueView(v))?;
        }
        map.end()
    }
}

/// Terraform's `before_sensitive` / `after_sensitive`: `true` for each attribute whose value is a secret
/// (shown as `null`), so that a consumer can tell a secret from a value that is null.
struct SensitiveView<'a>(Option<&'a Attributes>);

impl Serialize for SensitiveView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(attributes) = self.0 else { return s.serialize_bool(false) };
        let secret = |v: &Value| matches!(v, Value::Sensitive | Value::Sealed(_));
        let mut map = s.serialize_map(None)?;
        for (k, _) in attributes.iter().filter(|(_, v)| secret(v)) {
            map.serialize_entry(k, &true)?;
        }
        map.end()
    }
}

struct Addresses<'a>(&'a [Address]);

impl Serialize for Addresses<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for a in self.0 {
            seq.serialize_element(&a.to_string())?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct ChangeView<'a> {
    address: String,
    /// Terraform's `previous_address`: where the state records it until the change is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_address: Option<String>,
    kind: &'static str,
    host: Option<String>,
    action: &'static str,
    reason: &'static str,
    before: AttributesView<'a>,
    after: AttributesView<'a>,
    before_sensitive: SensitiveView<'a>,
    after_sensitive: SensitiveView<'a>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    replace_paths: &'a [String],
    depends_on: Addresses<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

struct Changes<'a>(&'a Plan);

impl Serialize for Changes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.changes.len()))?;
        for c in &self.0.changes {
            seq.serialize_element(&ChangeView {
                address: c.address.to_string(),
                previous_address: c.previous_address.as_ref().map(ToString::to_string),
                kind: c.kind.as_str(),
                host: c.host.map(|h| h.to_string()),
                action: c.action.as_str(),
                reason: c.reason.as_str(),
                before: AttributesView(c.before.as_ref()),
                after: AttributesView(c.after.as_ref()),
                before_sensitive: SensitiveView(c.before.as_ref()),
                after_sensitive: SensitiveView(c.after.as_ref()),
                replace_paths: &c.replace_paths,
                depends_on: Addresses(&c.depends_on),
                note: self.0.notes.get(&c.address).map(String::as_str),
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct PlanView<'a> {
    format_version: &'a str,
    cluster: &'a str,
    lineage: Option<&'a str>,
    prior_serial: u64,
    destroy: bool,
    targets: Addresses<'a>,
    changes: Changes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<&'a sealer_engine::Rollout>,
    summary: Summary,
    warnings: Vec<WarningView<'a>>,
}

/// A warning with where it is: file, document, field, line and column.
#[derive(Serialize)]
struct WarningView<'a> {
    file: &'a str,
    document: Option<usize>,
    field: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
    value: Option<&'a str>,
}

impl<'a> From<&'a Diagnostic> for WarningView<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        let l = &d.location;
        WarningView {
            file: &l.file,
            document: l.document,
            field: l.field.as_deref(),
            line: l.line,
            column: l.column,
            message: &d.message,
            value: d.value.as_deref(),
        }
    }
}

/// Writes the plan in the documented JSON format (`format_version` "1").
pub fn write_plan(out: &mut impl Write, plan: &Plan, warnings: &[Diagnostic]) -> anyhow::Result<()> {
    let view = PlanView {
        format_version: &plan.format_version,
        cluster: &plan.cluster,
        lineage: plan.lineage.as_deref(),
        prior_serial: plan.prior_serial,
        destroy: plan.destroy,
        targets: Addresses(&plan.targets),
        changes: Changes(plan),
        rollout: plan.rollout.as_ref(),
        warnings: warnings.iter().map(WarningView::from).collect(),
        summary: plan.summary(),
    };
    serde_json::to_writer_pretty(&mut *out, &view)?;
    writeln!(out)?;
    Ok(())
}

#[derive(Serialize)]
struct StoredView<'a> {
    address: String,
    kind: &'static str,
    host: Option<String>,
    status: sealer_engine::ResourceStatus,
    attributes: AttributesView<'a>,
    sensitive_attributes: SensitiveView<'a>,
    depends_on: Addresses<'a>,
}

pub fn stored_resource(r: &StoredResource) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&StoredView {
        address: r.address.to_string(),
        kind: r.address.kind.as_str(),
        host: r.host.map(|h| h.to_string()),
        status: r.status,
        attributes: AttributesView(Some(&r.attributes)),
        sensitive_attributes: SensitiveView(Some(&r.attributes)),
        depends_on: Addresses(&r.depends_on),
    })?)
}

#[derive(Serialize)]
struct DiagnosticView<'a> {
    severity: &'static str,
    #[serde(flatten)]
    at: WarningView<'a>,
}

#[derive(Serialize)]
struct ValidationView<'a> {
    format_version: &'static str,
    valid: bool,
    error_count: usize,
    warning_count: usize,
    diagnostics: Vec<DiagnosticView<'a>>,
}

/// `sealer validate --json`: every diagnostic with its file, document, field, line and column.
pub fn write_validation(out: &mut impl Write, diagnostics: &[Diagnostic]) -> anyhow::Result<()> {
    let errors = diagnostics.iter().filter(|d| d.severity == sealer_engine::Severity::Error).count();
    let view = ValidationView {
        format_version: "1",
        valid: errors == 0,
        error_count: errors,
        warning_count: diagnostics.len() - errors,
        diagnostics: diagnostics
            .iter()
            .map(|d| DiagnosticView {
                severity: match d.severity {
                    sealer_engine::Severity::Error => "error",
                    sealer_engine::Severity::Warning => "warning",
                },
                at: WarningView::from(d),
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &view)?;
    writeln!(out)?;
    Ok(())
}

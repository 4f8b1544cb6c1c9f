use sealer_engine::{Attributes, Plan, StoredResource, Value};
use serde_json::{json, Map, Value as Json};

pub const SENSITIVE: &str = "(sensitive)";
pub const UNKNOWN: &str = "(known after apply)";

pub fn value(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Text(s) => Json::String(s.clone()),
        Value::List(items) => json!(items),
        Value::Map(m) => json!(m),
        Value::Sensitive => Json::String(SENSITIVE.into()),
        Value::Unknown => Json::String(UNKNOWN.into()),
    }
}

fn attributes(a: Option<&Attributes>) -> Json {
    match a {
        None => Json::Null,
        Some(a) => Json::Object(
            a.iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// The plan in the documented JSON format (`format_version` "1").
pub fn plan(plan: &Plan) -> anyhow::Result<String> {
    let changes: Vec<Json> = plan
        .changes
        .iter()
        .map(|c| {
            let mut change = json!({
                "address": c.address.to_string(),
                "kind": c.kind.as_str(),
                "host": c.host.map(|h| h.to_string()),
                "action": c.action.as_str(),
                "reason": c.reason.as_str(),
                "before": attributes(c.before.as_ref()),
                "after": attributes(c.after.as_ref()),
                "depends_on": c.depends_on.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            if !c.replace_paths.is_empty() {
                change["replace_paths"] = json!(c.replace_paths);
            }
            change
        })
        .collect();
    let doc = json!({
        "format_version": plan.format_version,
        "cluster": plan.cluster,
        "lineage": plan.lineage,
        "prior_serial": plan.prior_serial,
        "destroy": plan.destroy,
        "targets": plan.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "changes": changes,
        "summary": plan.summary(),
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

pub fn stored_resource(r: &StoredResource) -> anyhow::Result<String> {
    let doc = json!({
        "address": r.address.to_string(),
        "kind": r.address.kind.as_str(),
        "host": r.host.map(|h| h.to_string()),
        "status": r.status,
        "attributes": attributes(Some(&r.attributes)),
        "depends_on": r.depends_on.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    Ok(serde_json::to_string_pretty(&doc)?)
}

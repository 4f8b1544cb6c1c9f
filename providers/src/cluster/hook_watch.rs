//! shell-operator's `kubernetes` bindings: a hook that names objects of the cluster (`apiVersion`, `kind`,
//! `namespace.nameSelector.matchNames`, `nameSelector.matchNames`, `labelSelector`) runs once with a
//! `Synchronization` context holding them all, then once per `Added`, `Modified` or `Deleted` event
//! (`executeHookOnEvent`). The objects come from the cluster's API on the first master, through kubectl's
//! `get --raw`: a list, then watches resumed from the last resourceVersion seen, so no change is missed
//! between two looks (`sealer reconcile` looks once per tick).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::remote::Result;
use super::{ClusterProvider, Cx};
use crate::error::ProviderError;
use crate::shell::quote;

/// One `kubernetes` binding of a hook, as `hooks.*` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedHook {
    /// The executable, relative to the rootfs (`hooks/installer`).
    pub path: String,
    pub name: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    /// The namespaces watched; none: every namespace (or a cluster-scoped kind).
    pub namespaces: Vec<String>,
    /// The object names the hook wants; none: every object.
    pub names: Vec<String>,
    /// In the API's text form (`a=b,c in (d,e)`); empty: every object.
    #[serde(rename = "labelSelector")]
    pub label_selector: String,
    /// Of `Added`, `Modified`, `Deleted`.
    pub events: Vec<String>,
    pub synchronization: bool,
    #[serde(rename = "allowFailure")]
    pub allow_failure: bool,
}

/// A `kubernetes` entry of a hook's `--config`, as shell-operator reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BindingConfig {
    name: Option<String>,
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    namespace: Option<NameSelector>,
    #[serde(rename = "nameSelector")]
    name_selector: Option<Names>,
    #[serde(rename = "labelSelector")]
    label_selector: Option<LabelSelector>,
    #[serde(rename = "executeHookOnEvent")]
    events: Option<Vec<String>>,
    #[serde(rename = "executeHookOnSynchronization")]
    synchronization: Option<bool>,
    #[serde(rename = "allowFailure", default)]
    allow_failure: bool,
    /// Accepted and not applied: the hook gets the whole object.
    #[serde(rename = "jqFilter")]
    _jq_filter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameSelector {
    #[serde(rename = "nameSelector")]
    name_selector: Names,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Names {
    #[serde(rename = "matchNames")]
    match_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelSelector {
    #[serde(rename = "matchLabels", default)]
    match_labels: BTreeMap<String, String>,
    #[serde(rename = "matchExpressions", default)]
    match_expressions: Vec<Expression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

const EVENTS: [&str; 3] = ["Added", "Modified", "Deleted"];

fn word(text: &str, extra: &[u8]) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
        && text.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

impl BindingConfig {
    /// The binding of the hook at `path` (the `i`-th), or why shell-operator would not run it. Every value
    /// is checked to be of the API's own grammar: they become a URL on a remote command line.
    pub(super) fn recorded(self, path: &str, i: usize) -> std::result::Result<WatchedHook, String> {
        let name = self.name.unwrap_or_else(|| format!("kubernetes-{i}"));
        let (group_ok, version) = match self.api_version.split_once('/') {
            Some((group, version)) => (word(group, b".-"), version),
            None => (true, self.api_version.as_str()),
        };
        if !group_ok || !word(version, b"") {
            return Err(format!("binding `{name}`: apiVersion `{}` is not GROUP/VERSION", self.api_version));
        }
        if !word(&self.kind, b"") {
            return Err(format!("binding `{name}`: kind `{}` is not a Kubernetes kind", self.kind));
        }
        let namespaces = self.namespace.map(|n| n.name_selector.match_names).unwrap_or_default();
        let names = self.name_selector.map(|n| n.match_names).unwrap_or_default();
        if let Some(bad) = namespaces.iter().chain(&names).find(|n| !word(n, b".-")) {
            return Err(format!("binding `{name}`: `{bad}` is not an object or namespace name"));
        }
        let events = self.events.unwrap_or_else(|| EVENTS.iter().map(|e| e.to_string()).collect());
        if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(format!("binding `{name}`: executeHookOnEvent `{bad}` is not one of {}", EVENTS.join(", ")));
        }
        let label_selector = match self.label_selector {
            Some(s) => render_selector(&s).map_err(|e| format!("binding `{name}`: labelSelector: {e}"))?,
            None => String::new(),
        };
        Ok(WatchedHook {
            path: path.into(),
            name,
            api_version: self.api_version,
            kind: self.kind,
            namespaces,
            names,
            label_selector,
            events,
            synchronization: self.synchronization.unwrap_or(true),
            allow_failure: self.allow_failure,
        })
    }
}

/// A LabelSelector in the API's text form.
fn render_selector(s: &LabelSelector) -> std::result::Result<String, String> {
    let label = |t: &str| word(t, b"-_./") && t.len() <= 317;
    let mut parts = Vec::new();
    for (k, v) in &s.match_labels {
        if !label(k) || !(v.is_empty() || word(v, b"-_.")) {
            return Err(format!("`{k}={v}` is not a label"));
        }
        parts.push(format!("{k}={v}"));
    }
    for e in &s.match_expressions {
        if !label(&e.key) || e.values.iter().any(|v| !(v.is_empty() || word(v, b"-_."))) {
            return Err(format!("`{}` is not a label key with label values", e.key));
        }
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, e.values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, e.values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => return Err(format!("operator `{other}` is not In, NotIn, Exists or DoesNotExist")),
        });
    }
    Ok(parts.join(","))
}

/// A binding's view of the cluster: the objects it sees, by namespace, and where its watch resumes.
#[derive(Clone, Debug, Default)]
pub struct Watching {
    /// Per watched namespace ("" for all): the resourceVersion the next watch starts after.
    resume: BTreeMap<String, String>,
}

/// What a binding has to tell its hook: the binding contexts, one run each.
pub type Contexts = Vec<serde_json::Value>;

fn api_error(ip: std::net::IpAddr, what: String, message: String) -> ProviderError {
    ProviderError::Plugin { plugin: what, host: ip, message }
}

impl Cx {
    async fn raw(&self, path: &str) -> Result<String> {
        self.output(self.ctx.first_master, &self.with_image_path(&format!("kubectl get --raw {}", quote(path)))).await
    }

    /// The REST path of the binding's objects in `namespace` ("" for all), from the API's discovery.
    async fn collection(&self, hook: &WatchedHook, namespace: &str) -> Result<String> {
        let base = if hook.api_version.contains('/') {
            format!("/apis/{}", hook.api_version)
        } else {
            format!("/api/{}", hook.api_version)
        };
        let listed: serde_json::Value = serde_json::from_str(&self.raw(&base).await?).unwrap_or_default();
        let resources = listed["resources"].as_array().cloned().unwrap_or_default();
        let found = resources
            .iter()
            .find(|r| r["kind"] == hook.kind.as_str() && !r["name"].as_str().unwrap_or("/").contains('/'));
        let Some(found) = found else {
            let message = format!("the cluster serves no kind {} in {}", hook.kind, hook.api_version);
            return Err(api_error(self.ctx.first_master, format!("{} ({})", hook.path, hook.name), message));
        };
        let plural = found["name"].as_str().unwrap_or_default();
        Ok(match (found["namespaced"].as_bool().unwrap_or(false), namespace) {
            (true, ns) if !ns.is_empty() => format!("{base}/namespaces/{ns}/{plural}"),
            _ => format!("{base}/{plural}"),
        })
    }

    fn query(hook: &WatchedHook, extra: &str) -> String {
        let mut query = extra.to_string();
        if !hook.label_selector.is_empty() {
            let encoded: String = hook
                .label_selector
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            query = format!("{query}&labelSelector={encoded}");
        }
        query.trim_start_matches('&').to_string()
    }

    fn wanted(hook: &WatchedHook, object: &serde_json::Value) -> bool {
        hook.names.is_empty() || hook.names.iter().any(|n| object["metadata"]["name"] == n.as_str())
    }
}

impl ClusterProvider {
    /// What the binding has to tell its hook since it last looked (`watching`, updated): a
    /// `Synchronization` context the first time, then one `Event` context per change, in order.
    pub async fn look(
        &self,
        hook: &WatchedHook,
        watching: &mut Option<Watching>,
    ) -> std::result::Result<Contexts, ProviderError> {
        let cx = &self.0;
        let namespaces: Vec<String> =
            if hook.namespaces.is_empty() { vec![String::new()] } else { hook.namespaces.clone() };
        let Some(state) = watching else {
            let mut objects = Vec::new();
            let mut resume = BTreeMap::new();
            for ns in &namespaces {
                let path = cx.collection(hook, ns).await?;
                let list: serde_json::Value =
                    serde_json::from_str(&cx.raw(&format!("{path}?{}", Cx::query(hook, ""))).await?).map_err(|e| {
                        api_error(cx.ctx.first_master, hook.path.clone(), format!("the API's list: {e}"))
                    })?;
                objects.extend(
                    list["items"].as_array().cloned().unwrap_or_default().into_iter().filter(|o| Cx::wanted(hook, o)),
                );
                resume.insert(ns.clone(), list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string());
            }
            *watching = Some(Watching { resume });
            if !hook.synchronization {
                return Ok(Vec::new());
            }
            let objects: Vec<serde_json::Value> =
                objects.into_iter().map(|o| serde_json::json!({"object": o})).collect();
            return Ok(vec![
                serde_json::json!([{"binding": hook.name, "type": "Synchronization", "objects": objects}]),
            ]);
        };
        let mut contexts = Vec::new();
        let mut relist = false;
        'namespaces: for ns in &namespaces {
            let from = state.resume.get(ns).cloned().unwrap_or_else(|| "0".into());
            let path = cx.collection(hook, ns).await?;
            // The watch ends after a second: the events since `from` are what it returns.
            let query = Cx::query(hook, &format!("watch=1&timeoutSeconds=1&resourceVersion={from}"));
            let stream = cx.raw(&format!("{path}?{query}")).await?;
            for event in serde_json::Deserializer::from_str(&stream).into_iter::<serde_json::Value>() {
                let event = event
                    .map_err(|e| api_error(cx.ctx.first_master, hook.path.clone(), format!("the API's watch: {e}")))?;
                let object = &event["object"];
                let watch_event = match event["type"].as_str() {
                    Some("ADDED") => "Added",
                    Some("MODIFIED") => "Modified",
                    Some("DELETED") => "Deleted",
                    // The resourceVersion is too old (410 Gone) or the watch failed: list again next time.
                    _ => {
                        relist = true;
                        break 'namespaces;
                    }
                };
                if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                    state.resume.insert(ns.clone(), rv.to_string());
                }
                if Cx::wanted(hook, object) && hook.events.iter().any(|e| e == watch_event) {
                    contexts.push(serde_json::json!([{"binding": hook.name, "type": "Event", "watchEvent": watch_event, "object": object}]));
                }
            }
        }
        if relist {
            *watching = None;
        }
        Ok(contexts)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::testing::*;

    fn binding(json: serde_json::Value) -> std::result::Result<WatchedHook, String> {
        serde_json::from_value::<BindingConfig>(json).map_err(|e| e.to_string()).and_then(|b| b.recorded("hooks/h", 0))
    }

    #[test]
    fn a_binding_reads_as_shell_operator_reads_it_and_refuses_what_it_would() {
        let got = binding(serde_json::json!({
            "name": "cc", "apiVersion": "v1", "kind": "ConfigMap",
            "namespace": {"nameSelector": {"matchNames": ["kubesphere-system"]}},
            "nameSelector": {"matchNames": ["ks-installer"]},
            "labelSelector": {"matchLabels": {"app": "ks"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            "executeHookOnEvent": ["Modified"]
        }))
        .unwrap();
        assert_eq!(
            (got.namespaces.as_slice(), got.names.as_slice()),
            (&["kubesphere-system".to_string()][..], &["ks-installer".to_string()][..])
        );
        assert_eq!(got.label_selector, "app=ks,tier in (a,b)");
        assert_eq!((got.events.clone(), got.synchronization), (vec!["Modified".to_string()], true));
        let defaults = binding(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment"})).unwrap();
        assert_eq!((defaults.name.as_str(), defaults.events.len()), ("kubernetes-0", 3));
        for (bad, why) in [
            (serde_json::json!({"apiVersion": "v1", "kind": "Pod;rm"}), "not a Kubernetes kind"),
            (serde_json::json!({"apiVersion": "a b/v1", "kind": "Pod"}), "not GROUP/VERSION"),
            (
                serde_json::json!({"apiVersion": "v1", "kind": "Pod", "nameSelector": {"matchNames": ["x'y"]}}),
                "not an object",
            ),
            (serde_json::json!({"apiVersion": "v1", "kind": "Pod", "executeHookOnEvent": ["Created"]}), "not one of"),
            (
                serde_json::json!({"apiVersion": "v1", "kind": "Pod", "labelSelector": {"matchLabels": {"a": "$(x)"}}}),
                "not a label",
            ),
            (serde_json::json!({"apiVersion": "v1", "kind": "Pod", "unknown": 1}), "unknown field"),
        ] {
            let err = binding(bad.clone()).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn watched() -> WatchedHook {
        binding(serde_json::json!({
            "name": "cc", "apiVersion": "v1", "kind": "ConfigMap",
            "namespace": {"nameSelector": {"matchNames": ["ks"]}}, "nameSelector": {"matchNames": ["a"]}
        }))
        .unwrap()
    }

    const DISCOVERY: &str = r#"{"resources":[{"name":"configmaps","namespaced":true,"kind":"ConfigMap"},{"name":"pods/log","namespaced":true,"kind":"Pod"}]}"#;

    #[tokio::test]
    async fn a_binding_is_synchronised_then_told_each_event_from_where_it_left_off() {
        let list = r#"{"metadata":{"resourceVersion":"7"},"items":[{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"5"}},{"kind":"ConfigMap","metadata":{"name":"b","resourceVersion":"6"}}]}"#;
        let events = "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"8\"}}}\n\
                      {\"type\":\"MODIFIED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"9\"}}}\n";
        let remote = Arc::new(
            Scripted::default()
                .on("get --raw /api/v1", DISCOVERY)
                .on("watch=1&timeoutSeconds=1&resourceVersion=7", events)
                .on("configmaps?'", list),
        );
        let (p, _logs) = provider(remote.clone());
        let hook = watched();
        let mut watching = None;
        let sync = p.look(&hook, &mut watching).await.unwrap();
        assert_eq!(sync.len(), 1);
        assert_eq!(sync[0][0]["type"], "Synchronization");
        assert_eq!(sync[0][0]["objects"].as_array().unwrap().len(), 1, "only the names bound: {}", sync[0]);
        let told = p.look(&hook, &mut watching).await.unwrap();
        assert_eq!(told.len(), 1, "b is not bound: {told:?}");
        assert_eq!(
            (told[0][0]["watchEvent"].as_str(), told[0][0]["object"]["metadata"]["name"].as_str()),
            (Some("Modified"), Some("a"))
        );
        let commands = remote.commands(M1);
        assert!(
            commands.iter().any(|c| c.contains("kubectl get --raw '/api/v1/namespaces/ks/configmaps?'")),
            "{commands:?}"
        );
        let resumed = Arc::new(Scripted::default().on("get --raw /api/v1", DISCOVERY).on("resourceVersion=9", ""));
        let (p, _logs) = provider(resumed.clone());
        assert!(p.look(&hook, &mut watching).await.unwrap().is_empty(), "resumes after the last event seen");
        assert!(resumed.commands(M1).iter().any(|c| c.contains("resourceVersion=9")));
    }
}

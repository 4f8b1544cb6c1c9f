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

/// Why shell-operator would not run a `kubernetes` binding.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("binding `{binding}`: {problem}")]
pub struct BindingError {
    pub binding: String,
    pub problem: String,
}

impl BindingConfig {
    /// The binding of the hook at `path` (the `i`-th), or why shell-operator would not run it. Every value
    /// is checked to be of the API's own grammar: they become a URL on a remote command line.
    pub(super) fn recorded(self, path: &str, i: usize) -> std::result::Result<WatchedHook, BindingError> {
        let name = self.name.unwrap_or_else(|| format!("kubernetes-{i}"));
        let refuse = |problem: String| BindingError { binding: name.clone(), problem };
        if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
            return Err(refuse("a binding name is one line of at most 253 characters".into()));
        }
        let (group_ok, version) = match self.api_version.split_once('/') {
            Some((group, version)) => (word(group, b".-"), version),
            None => (true, self.api_version.as_str()),
        };
        if !group_ok || !word(version, b"") {
            return Err(refuse(format!("apiVersion `{}` is not GROUP/VERSION", self.api_version)));
        }
        if !word(&self.kind, b"") {
            return Err(refuse(format!("kind `{}` is not a Kubernetes kind", self.kind)));
        }
        let namespaces = self.namespace.map(|n| n.name_selector.match_names).unwrap_or_default();
        let names = self.name_selector.map(|n| n.match_names).unwrap_or_default();
        if let Some(bad) = namespaces.iter().chain(&names).find(|n| !word(n, b".-")) {
            return Err(refuse(format!("`{bad}` is not an object or namespace name")));
        }
        let events = self.events.unwrap_or_else(|| EVENTS.iter().map(|e| e.to_string()).collect());
        if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(refuse(format!("executeHookOnEvent `{bad}` is not one of {}", EVENTS.join(", "))));
        }
        let label_selector = match self.label_selector {
            Some(s) => render_selector(&s).map_err(|e| refuse(format!("labelSelector: {e}")))?,
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

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    (prefix.is_empty() || word(prefix, b".-")) && name.len() <= 63 && word(name, b"-_.")
}

/// What is wrong with a binding's LabelSelector.
#[derive(Debug, thiserror::Error)]
enum SelectorError {
    #[error("`{0}={1}` is not a label")]
    Label(String, String),
    #[error("`{0}` is not a label key with label values")]
    Expression(String),
    #[error("`{key}` {operator}: {}", if *.needs { "needs values" } else { "takes no values" })]
    Values { key: String, operator: String, needs: bool },
    #[error("operator `{0}` is not In, NotIn, Exists or DoesNotExist")]
    Operator(String),
}

/// A LabelSelector in the API's text form, or what is wrong with it.
fn render_selector(s: &LabelSelector) -> std::result::Result<String, SelectorError> {
    let label = label_key;
    let mut parts = Vec::new();
    for (k, v) in &s.match_labels {
        if !label(k) || !(v.is_empty() || word(v, b"-_.")) {
            return Err(SelectorError::Label(k.clone(), v.clone()));
        }
        parts.push(format!("{k}={v}"));
    }
    for e in &s.match_expressions {
        if !label(&e.key) || e.values.iter().any(|v| !(v.is_empty() || word(v, b"-_."))) {
            return Err(SelectorError::Expression(e.key.clone()));
        }
        let needs_values = matches!(e.operator.as_str(), "In" | "NotIn");
        if needs_values == e.values.is_empty() {
            return Err(SelectorError::Values {
                key: e.key.clone(),
                operator: e.operator.clone(),
                needs: needs_values,
            });
        }
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, e.values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, e.values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => return Err(SelectorError::Operator(other.to_string())),
        });
    }
    Ok(parts.join(","))
}

/// Where a binding's watch resumes: per watched namespace ("" for all), the resourceVersion the next watch
/// starts after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watching {
    resume: BTreeMap<String, String>,
}

/// One binding context for the hook, and where the watch resumes once the hook has taken it.
#[derive(Clone, Debug)]
pub struct Context {
    pub value: serde_json::Value,
    pub then: Option<Watching>,
}

/// What a binding has to tell its hook since it last looked, in order, and where the watch resumes once
/// every context is taken (events the binding does not want move it too).
#[derive(Clone, Debug)]
pub struct Look {
    pub contexts: Vec<Context>,
    pub then: Option<Watching>,
}

fn api_error(ip: std::net::IpAddr, what: String, message: String) -> ProviderError {
    ProviderError::Plugin { plugin: what, host: ip, message }
}

/// The REST paths of a binding's objects: one per watched namespace ("" for every namespace, or a
/// cluster-scoped kind, whose objects are in no namespace).
struct Collections(Vec<(String, String)>);

impl Cx {
    async fn raw(&self, path: &str) -> Result<String> {
        self.output(self.ctx.first_master, &self.with_image_path(&format!("kubectl get --raw {}", quote(path)))).await
    }

    /// The binding's collections, from the API's discovery.
    async fn collections(&self, hook: &WatchedHook) -> Result<Collections> {
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
        let mut namespaces: Vec<&str> = hook.namespaces.iter().map(String::as_str).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        if namespaces.is_empty() || !found["namespaced"].as_bool().unwrap_or(false) {
            return Ok(Collections(vec![(String::new(), format!("{base}/{plural}"))]));
        }
        Ok(Collections(
            namespaces.into_iter().map(|ns| (ns.to_string(), format!("{base}/namespaces/{ns}/{plural}"))).collect(),
        ))
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

    fn unreadable(&self, hook: &WatchedHook, what: &str, e: serde_json::Error) -> ProviderError {
        api_error(self.ctx.first_master, hook.path.clone(), format!("the API's {what}: {e}"))
    }

    /// A first look: every object, as one `Synchronization` context.
    async fn synchronise(&self, hook: &WatchedHook) -> Result<Look> {
        let mut objects = Vec::new();
        let mut resume = BTreeMap::new();
        for (ns, path) in self.collections(hook).await?.0 {
            let list: serde_json::Value =
                serde_json::from_str(&self.raw(&format!("{path}?{}", Cx::query(hook, ""))).await?)
                    .map_err(|e| self.unreadable(hook, "list", e))?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            objects.extend(items.into_iter().filter(|o| Cx::wanted(hook, o)).map(|o| serde_json::json!({"object": o})));
            resume.insert(ns, list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string());
        }
        let then = Some(Watching { resume });
        let contexts = if hook.synchronization {
            let value = serde_json::json!([{"binding": hook.name, "type": "Synchronization", "objects": objects}]);
            vec![Context { value, then: then.clone() }]
        } else {
            Vec::new()
        };
        Ok(Look { contexts, then })
    }
}

impl ClusterProvider {
    /// What the binding has to tell its hook since `watching` (None: it never looked, or must list again):
    /// a `Synchronization` context the first time, then one `Event` context per change, in order. Nothing
    /// moves until the caller takes the contexts: a hook that fails gets them again next time.
    pub async fn look(
        &self,
        hook: &WatchedHook,
        watching: Option<&Watching>,
    ) -> std::result::Result<Look, ProviderError> {
        let cx = &self.0;
        let Some(watching) = watching else { return cx.synchronise(hook).await };
        let mut state = watching.clone();
        let mut contexts = Vec::new();
        for (ns, path) in cx.collections(hook).await?.0 {
            let from = state.resume.get(&ns).cloned().unwrap_or_else(|| "0".into());
            // The watch ends after a second: the events since `from` are what it returns.
            let query = Cx::query(hook, &format!("watch=1&timeoutSeconds=1&resourceVersion={from}"));
            let stream = cx.raw(&format!("{path}?{query}")).await?;
            for event in serde_json::Deserializer::from_str(&stream).into_iter::<serde_json::Value>() {
                let event = event.map_err(|e| cx.unreadable(hook, "watch", e))?;
                let object = &event["object"];
                let watch_event = match event["type"].as_str() {
                    Some("ADDED") => Some("Added"),
                    Some("MODIFIED") => Some("Modified"),
                    Some("DELETED") => Some("Deleted"),
                    // A bookmark only moves the resume point.
                    Some("BOOKMARK") => None,
                    // The resourceVersion is too old (410 Gone), or the watch failed: what was taken stays
                    // taken, and the binding lists again (a new Synchronization) once the hook has the rest.
                    _ => return Ok(Look { contexts, then: None }),
                };
                if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                    state.resume.insert(ns.clone(), rv.to_string());
                }
                if let Some(e) = watch_event.filter(|e| Cx::wanted(hook, object) && hook.events.iter().any(|w| w == e))
                {
                    let value =
                        serde_json::json!([{"binding": hook.name, "type": "Event", "watchEvent": e, "object": object}]);
                    contexts.push(Context { value, then: Some(state.clone()) });
                }
            }
        }
        Ok(Look { contexts, then: Some(state) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::testing::*;

    fn binding(json: serde_json::Value) -> std::result::Result<WatchedHook, String> {
        let config = serde_json::from_value::<BindingConfig>(json).map_err(|e| e.to_string())?;
        config.recorded("hooks/h", 0).map_err(|e| e.to_string())
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
            (
                serde_json::json!({"apiVersion": "v1", "kind": "Pod", "labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
                "needs values",
            ),
            (serde_json::json!({"name": "a\nb", "apiVersion": "v1", "kind": "Pod"}), "one line"),
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
        let events = "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"8\"}}}\n\
                      {\"type\":\"MODIFIED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"9\"}}}\n";
        let remote = Arc::new(
            Scripted::default()
                .on("get --raw /api/v1", DISCOVERY)
                .on("watch=1&timeoutSeconds=1&resourceVersion=7", events)
                .on("configmaps?'", list),
        );
        let (p, _logs) = provider(remote.clone());
        let hook = watched();
        let sync = p.look(&hook, None).await.unwrap();
        assert_eq!(sync.contexts.len(), 1);
        let context = &sync.contexts[0].value[0];
        assert_eq!(context["type"], "Synchronization");
        assert_eq!(context["objects"].as_array().unwrap().len(), 1, "only the names bound: {context}");
        let synced = sync.then.unwrap();
        let told = p.look(&hook, Some(&synced)).await.unwrap();
        assert_eq!(told.contexts.len(), 1, "b is not bound: {told:?}");
        let event = &told.contexts[0].value[0];
        assert_eq!(
            (event["watchEvent"].as_str(), event["object"]["metadata"]["name"].as_str()),
            (Some("Modified"), Some("a"))
        );
        let commands = remote.commands(M1);
        assert!(
            commands.iter().any(|c| c.contains("kubectl get --raw '/api/v1/namespaces/ks/configmaps?'")),
            "{commands:?}"
        );
        // Nothing moved by looking: the same events again until the caller takes them.
        assert_eq!(p.look(&hook, Some(&synced)).await.unwrap().contexts.len(), 1);
        // Taking a's event resumes after it; taking all resumes after b's (unwanted) event too.
        let after_a = told.contexts[0].then.clone().unwrap();
        let after_all = told.then.clone().unwrap();
        assert_ne!(after_a, after_all);
        let resumed = Arc::new(Scripted::default().on("get --raw /api/v1", DISCOVERY).on("resourceVersion=9", ""));
        let (p, _logs) = provider(resumed.clone());
        assert!(
            p.look(&hook, Some(&after_all)).await.unwrap().contexts.is_empty(),
            "resumes after the last event seen"
        );
        assert!(resumed.commands(M1).iter().any(|c| c.contains("resourceVersion=9")));
    }

    #[tokio::test]
    async fn a_too_old_resource_version_lists_again_and_a_cluster_scoped_kind_is_watched_once() {
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}"#;
        let nodes = r#"{"resources":[{"name":"nodes","namespaced":false,"kind":"Node"}]}"#;
        let remote = Arc::new(Scripted::default().on("get --raw /api/v1", nodes).on("watch=1", gone));
        let (p, _logs) = provider(remote.clone());
        let hook = binding(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "namespace": {"nameSelector": {"matchNames": ["a", "b", "a"]}}
        }))
        .unwrap();
        let look = p.look(&hook, Some(&Watching::default())).await.unwrap();
        assert!(look.contexts.is_empty() && look.then.is_none(), "{look:?}");
        let watches: Vec<String> = remote.commands(M1).into_iter().filter(|c| c.contains("watch=1")).collect();
        assert_eq!(watches.len(), 1, "one cluster-wide watch: {watches:?}");
        assert!(watches[0].contains("'/api/v1/nodes?watch=1"), "{watches:?}");
    }
}

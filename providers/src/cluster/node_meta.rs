//! `label.IP` and `taint.IP`: a node's declared labels and taints, set through the API. What the
//! resource declared before and no longer does is removed; what others set is left alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sealer_engine::{Attributes, Value};

use super::remote::Result;
use super::{Cx, KindProvider, Observation};
use crate::shell::quote;

pub struct Labels;
pub struct Taints;

fn map(attrs: Option<&Attributes>, key: &str) -> BTreeMap<String, String> {
    match attrs.and_then(|a| a.get(key)) {
        Some(Value::Map(m)) => m.clone(),
        _ => BTreeMap::new(),
    }
}

fn list(attrs: Option<&Attributes>, key: &str) -> Vec<String> {
    match attrs.and_then(|a| a.get(key)) {
        Some(Value::List(l)) => l.clone(),
        _ => Vec::new(),
    }
}

/// `key:Effect`: what identifies a taint on a node.
fn key_effect(t: &str) -> String {
    let (kv, effect) = t.rsplit_once(':').unwrap_or((t, ""));
    format!("{}:{effect}", kv.split('=').next().unwrap_or(kv))
}

impl Cx {
    async fn node(&self, ip: IpAddr) -> Result<super::kube::Node> {
        let name = self.node_name(ip).await?;
        self.get(&format!("nodes {}", quote(&name))).await
    }

    async fn set_labels(&self, ip: IpAddr, before: Option<&Attributes>, after: Attributes) -> Result<Attributes> {
        let node = self.node(ip).await?;
        let current = &node.metadata.labels;
        let desired = map(Some(&after), "labels");
        let mut args: Vec<String> = desired
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| quote(&format!("{k}={v}")))
            .collect();
        let dropped = map(before, "labels").into_keys().filter(|k| !desired.contains_key(k) && current.contains_key(k));
        args.extend(dropped.map(|k| quote(&format!("{k}-"))));
        if !args.is_empty() {
            self.kubectl(&format!("label node {} {} --overwrite", quote(&node.metadata.name), args.join(" "))).await?;
        }
        Ok(after)
    }

    async fn set_taints(&self, ip: IpAddr, before: Option<&Attributes>, after: Attributes) -> Result<Attributes> {
        let node = self.node(ip).await?;
        let current = node.taint_texts();
        let (desired, absent) = (list(Some(&after), "taints"), list(Some(&after), "absent"));
        let mut args: Vec<String> = desired.iter().filter(|t| !current.contains(t)).map(|t| quote(t)).collect();
        let present: Vec<String> = current.iter().map(|t| key_effect(t)).collect();
        let before = list(before, "taints");
        for t in absent.iter().chain(before.iter().filter(|t| !desired.contains(t))) {
            let ke = key_effect(t);
            if present.contains(&ke) && !desired.iter().any(|d| key_effect(d) == ke) {
                args.push(quote(&format!("{ke}-")));
            }
        }
        if !args.is_empty() {
            self.kubectl(&format!("taint node {} {} --overwrite", quote(&node.metadata.name), args.join(" "))).await?;
        }
        Ok(after)
    }
}

impl KindProvider for Labels {
    /// The recorded labels as the node holds them now (a label removed by hand is missing).
    async fn read(&self, obs: &Observation<'_>, ip: IpAddr, recorded: &Attributes) -> Result<Option<Attributes>> {
        let Some(Value::Map(labels)) = recorded.get("labels").filter(|_| obs.cluster_up) else { return Ok(None) };
        let live = obs.node(ip).await?.map(|n| &n.metadata.labels);
        let observed =
            labels.keys().filter_map(|k| live.and_then(|l| l.get(k)).map(|v| (k.clone(), v.clone()))).collect();
        let mut attrs = recorded.clone();
        attrs.insert("labels".into(), Value::Map(observed));
        Ok(Some(attrs))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        cx.set_labels(ip, None, after).await
    }

    async fn update(&self, cx: &Cx, ip: IpAddr, before: &Attributes, after: Attributes) -> Result<Attributes> {
        cx.set_labels(ip, Some(before), after).await
    }
}

impl KindProvider for Taints {
    /// The recorded taints the node still has.
    async fn read(&self, obs: &Observation<'_>, ip: IpAddr, recorded: &Attributes) -> Result<Option<Attributes>> {
        let Some(Value::List(taints)) = recorded.get("taints").filter(|_| obs.cluster_up) else { return Ok(None) };
        let live = obs.node(ip).await?.map(|n| n.taint_texts()).unwrap_or_default();
        let mut attrs = recorded.clone();
        attrs.insert("taints".into(), Value::List(taints.iter().filter(|t| live.contains(t)).cloned().collect()));
        Ok(Some(attrs))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        cx.set_taints(ip, None, after).await
    }

    async fn update(&self, cx: &Cx, ip: IpAddr, before: &Attributes, after: Attributes) -> Result<Attributes> {
        cx.set_taints(ip, Some(before), after).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;

    const NODE: &str = r#"{"metadata":{"name":"node-1","labels":{"keep":"1","old":"x","other":"y"}},
        "spec":{"taints":[{"key":"a","value":"1","effect":"NoSchedule"},{"key":"gone","effect":"NoExecute"}]}}"#;

    fn labels(pairs: &[(&str, &str)]) -> Value {
        Value::Map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    fn kubectl(remote: &Scripted) -> Vec<String> {
        remote
            .commands(M1)
            .into_iter()
            .map(|c| c.replace("export PATH=/var/lib/sealer/c/rootfs/bin:$PATH; ", ""))
            .collect()
    }

    #[tokio::test]
    async fn labels_set_what_differs_and_remove_what_was_dropped() {
        let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes node-1", NODE));
        let (p, _logs) = provider(remote.clone());
        let before = attrs([("labels", labels(&[("keep", "1"), ("old", "x")]))]);
        let after = attrs([("labels", labels(&[("keep", "1"), ("new", "2")]))]);
        apply(&p, change(Kind::Label, "10.0.0.5", N1, Action::Update, Some(before), Some(after))).await.unwrap();
        assert_eq!(
            kubectl(&remote),
            ["kubectl get nodes node-1 -o json", "kubectl label node node-1 new=2 old- --overwrite"]
        );
    }

    #[tokio::test]
    async fn labels_already_there_change_nothing() {
        let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes node-1", NODE));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("labels", labels(&[("keep", "1")]))]);
        apply(&p, change(Kind::Label, "10.0.0.5", N1, Action::Create, None, Some(after))).await.unwrap();
        assert_eq!(kubectl(&remote), ["kubectl get nodes node-1 -o json"]);
    }

    #[tokio::test]
    async fn taints_add_the_missing_and_remove_the_absent() {
        let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes node-1", NODE));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([
            ("taints", Value::List(vec!["a=1:NoSchedule".into(), "b:NoSchedule".into()])),
            ("absent", Value::List(vec!["gone:NoExecute".into()])),
        ]);
        apply(&p, change(Kind::Taint, "10.0.0.5", N1, Action::Create, None, Some(after))).await.unwrap();
        assert_eq!(
            kubectl(&remote),
            ["kubectl get nodes node-1 -o json", "kubectl taint node node-1 b:NoSchedule gone:NoExecute- --overwrite"]
        );
    }
}

//! `label.IP` and `taint.IP`: a node's declared labels and taints, set through the API. What the
//! resource declared before and no longer does is removed (all of it when the resource is deleted); what
//! others set is left alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sealer_engine::schema;

use super::kube::Node;
use super::remote::Result;
use super::{Cx, KindProvider, Observation};
use crate::shell::quote;

pub struct Labels;
pub struct Taints;

/// `key:Effect`: what identifies a taint on a node.
fn key_effect(t: &str) -> String {
    let (kv, effect) = t.rsplit_once(':').unwrap_or((t, ""));
    format!("{}:{effect}", kv.split('=').next().unwrap_or(kv))
}

impl Cx {
    async fn node(&self, ip: IpAddr) -> Result<Node> {
        let name = self.node_name(ip).await?;
        self.get(&format!("nodes {}", quote(&name))).await
    }

    /// The node of `ip` when the cluster still has it, asked of the first master only: a host being
    /// removed may be unreachable, or reset already. Found by its InternalIP, else by the name sealer
    /// recorded for the host.
    pub(super) async fn registered_node(&self, ip: IpAddr) -> Result<Option<Node>> {
        let nodes = self.nodes().await?.items;
        let address = ip.to_string();
        if let Some(node) = nodes.iter().find(|n| n.internal_ip() == Some(address.as_str())) {
            return Ok(Some(node.clone()));
        }
        let recorded = self.known_node_name(ip);
        Ok(recorded.and_then(|name| nodes.into_iter().find(|n| n.metadata.name == name)))
    }

    /// Labels `node` with `desired` where it differs, and removes the labels `before` declared that
    /// `desired` no longer does and the node still has.
    async fn relabel(
        &self,
        node: &Node,
        before: Option<&schema::Label>,
        desired: &BTreeMap<String, String>,
    ) -> Result<()> {
        let current = &node.metadata.labels;
        let mut args: Vec<String> = desired
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| quote(&format!("{k}={v}")))
            .collect();
        let dropped = before
            .into_iter()
            .flat_map(|b| b.labels.keys())
            .filter(|k| !desired.contains_key(*k) && current.contains_key(*k));
        args.extend(dropped.map(|k| quote(&format!("{k}-"))));
        if !args.is_empty() {
            self.kubectl(&format!("label node {} {} --overwrite", quote(&node.metadata.name), args.join(" "))).await?;
        }
        Ok(())
    }

    /// Taints `node` with the `desired` taints it lacks and removes, each once, the `absent` ones (any
    /// value: `key:Effect-` is how the Clusterfile says it) and those `before` declared that `desired` no
    /// longer does (exactly as recorded: a value set by someone else stays). A removal is sent only for a
    /// taint the node has: kubectl fails on one it has not, and an apply must be repeatable.
    async fn retaint(
        &self,
        node: &Node,
        before: Option<&schema::Taint>,
        desired: &[String],
        absent: &[String],
    ) -> Result<()> {
        let current = node.taint_texts();
        let mut args: Vec<String> = desired.iter().filter(|t| !current.contains(t)).map(|t| quote(t)).collect();
        let present: Vec<String> = current.iter().map(|t| key_effect(t)).collect();
        let undeclared =
            before.into_iter().flat_map(|b| b.taints.iter()).filter(|t| !desired.contains(t) && current.contains(t));
        let mut removals: Vec<String> = Vec::new();
        for ke in absent
            .iter()
            .map(|t| key_effect(t))
            .filter(|ke| present.contains(ke))
            .chain(undeclared.map(|t| key_effect(t)))
        {
            // `--overwrite` replaces a taint of the same key and effect: one still declared is not removed.
            if !removals.contains(&ke) && !desired.iter().any(|d| key_effect(d) == ke) {
                removals.push(ke);
            }
        }
        args.extend(removals.iter().map(|ke| quote(&format!("{ke}-"))));
        if !args.is_empty() {
            self.kubectl(&format!("taint node {} {} --overwrite", quote(&node.metadata.name), args.join(" "))).await?;
        }
        Ok(())
    }

    async fn set_labels(
        &self,
        ip: IpAddr,
        before: Option<&schema::Label>,
        after: schema::Label,
    ) -> Result<schema::Label> {
        let node = self.node(ip).await?;
        self.relabel(&node, before, &after.labels).await?;
        Ok(after)
    }

    async fn set_taints(
        &self,
        ip: IpAddr,
        before: Option<&schema::Taint>,
        after: schema::Taint,
    ) -> Result<schema::Taint> {
        let node = self.node(ip).await?;
        self.retaint(&node, before, &after.taints, after.absent.as_deref().unwrap_or_default()).await?;
        Ok(after)
    }
}

impl KindProvider for Labels {
    type Schema = schema::Label;

    /// The recorded labels as the node holds them now (a label removed by hand is missing).
    async fn read(&self, obs: &Observation<'_>, ip: IpAddr, recorded: &schema::Label) -> Result<Option<schema::Label>> {
        if !obs.cluster_up {
            return Ok(None);
        }
        let live = obs.node(ip).await?.map(|n| &n.metadata.labels);
        let labels = recorded
            .labels
            .keys()
            .filter_map(|k| live.and_then(|l| l.get(k)).map(|v| (k.clone(), v.clone())))
            .collect();
        Ok(Some(schema::Label { labels }))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Label) -> Result<schema::Label> {
        cx.set_labels(ip, None, after).await
    }

    async fn update(&self, cx: &Cx, ip: IpAddr, before: &schema::Label, after: schema::Label) -> Result<schema::Label> {
        cx.set_labels(ip, Some(before), after).await
    }

    /// The labels this resource set come off the node; a node the cluster no longer has has none.
    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::Label) -> Result<()> {
        match cx.registered_node(ip).await? {
            Some(node) => cx.relabel(&node, Some(before), &BTreeMap::new()).await,
            None => Ok(()),
        }
    }
}

impl KindProvider for Taints {
    type Schema = schema::Taint;

    /// The recorded taints the node still has.
    async fn read(&self, obs: &Observation<'_>, ip: IpAddr, recorded: &schema::Taint) -> Result<Option<schema::Taint>> {
        if !obs.cluster_up {
            return Ok(None);
        }
        let live = obs.node(ip).await?.map(|n| n.taint_texts()).unwrap_or_default();
        let taints = recorded.taints.iter().filter(|t| live.contains(t)).cloned().collect();
        Ok(Some(schema::Taint { taints, ..recorded.clone() }))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Taint) -> Result<schema::Taint> {
        cx.set_taints(ip, None, after).await
    }

    async fn update(&self, cx: &Cx, ip: IpAddr, before: &schema::Taint, after: schema::Taint) -> Result<schema::Taint> {
        cx.set_taints(ip, Some(before), after).await
    }

    /// The taints this resource set come off the node (those it removed stay removed); a node the
    /// cluster no longer has has none.
    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::Taint) -> Result<()> {
        match cx.registered_node(ip).await? {
            Some(node) => cx.retaint(&node, Some(before), &[], &[]).await,
            None => Ok(()),
        }
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
            .map(|c| c.replace("export PATH=/var/lib/sealer/c/rootfs/bin:$PATH KUBECONFIG=\"${KUBECONFIG:-/etc/kubernetes/admin.conf}\"; ", ""))
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

    /// The cluster's nodes as `kubectl get nodes` lists them: `node-1` is 10.0.0.5 (N1).
    const NODES: &str = r#"{"items":[{"metadata":{"name":"master-1"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}]}},
        {"metadata":{"name":"node-1","labels":{"keep":"1","old":"x","other":"y"}},
        "spec":{"taints":[{"key":"a","value":"1","effect":"NoSchedule"},{"key":"gone","effect":"NoExecute"}]},
        "status":{"addresses":[{"type":"InternalIP","address":"10.0.0.5"}]}}]}"#;

    #[tokio::test]
    async fn deleting_labels_removes_what_the_resource_set_and_the_node_still_has() {
        let remote = Arc::new(Scripted::default().on("get nodes -o json", NODES).fail("hostname", 255, "unreachable"));
        let (p, _logs) = provider(remote.clone());
        let before = attrs([("labels", labels(&[("keep", "1"), ("old", "x"), ("never-set", "z")]))]);
        apply(&p, change(Kind::Label, "10.0.0.5", N1, Action::Delete, Some(before), None)).await.unwrap();
        assert_eq!(
            kubectl(&remote),
            ["kubectl get nodes -o json", "kubectl label node node-1 keep- old- --overwrite"],
            "`other` was set by someone else and stays"
        );
        assert!(remote.commands(N1).is_empty(), "{:?}", remote.commands(N1));
    }

    #[tokio::test]
    async fn deleting_taints_removes_exactly_the_recorded_ones() {
        let remote = Arc::new(Scripted::default().on("get nodes -o json", NODES).fail("hostname", 255, "unreachable"));
        let (p, _logs) = provider(remote.clone());
        let before = attrs([
            // `b` is not on the node (removed by hand): nothing to send for it.
            ("taints", Value::List(vec!["a=1:NoSchedule".into(), "b:NoSchedule".into()])),
            // What the resource removed stays removed.
            ("absent", Value::List(vec!["gone:NoExecute".into()])),
        ]);
        apply(&p, change(Kind::Taint, "10.0.0.5", N1, Action::Delete, Some(before), None)).await.unwrap();
        assert_eq!(
            kubectl(&remote),
            ["kubectl get nodes -o json", "kubectl taint node node-1 a:NoSchedule- --overwrite"]
        );
        assert!(remote.commands(N1).is_empty(), "{:?}", remote.commands(N1));
    }

    #[tokio::test]
    async fn deleting_from_a_node_the_cluster_no_longer_has_succeeds() {
        let gone = r#"{"items":[{"metadata":{"name":"master-1"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}]}}]}"#;
        let remote = Arc::new(Scripted::default().on("get nodes -o json", gone).fail("hostname", 255, "unreachable"));
        let (p, _logs) = provider(remote.clone());
        let taints = attrs([("taints", Value::List(vec!["a=1:NoSchedule".into()]))]);
        apply(&p, change(Kind::Taint, "10.0.0.5", N1, Action::Delete, Some(taints), None)).await.unwrap();
        let labels = attrs([("labels", labels(&[("keep", "1")]))]);
        apply(&p, change(Kind::Label, "10.0.0.5", N1, Action::Delete, Some(labels), None)).await.unwrap();
        assert_eq!(kubectl(&remote), ["kubectl get nodes -o json", "kubectl get nodes -o json"]);
    }

    #[tokio::test]
    async fn a_node_registered_under_its_recorded_name_is_found_without_its_address() {
        let other_ip = NODES.replace("10.0.0.5", "192.168.9.9");
        let remote = Arc::new(Scripted::default().on("get nodes -o json", &other_ip));
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = crate::cluster::testing::context(None, logs.path());
        ctx.prior
            .insert(sealer_engine::Address::new(Kind::Hostname, "10.0.0.5"), attrs([("name", Value::text("node-1"))]));
        let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
        let before = attrs([("labels", labels(&[("old", "x")]))]);
        apply(&p, change(Kind::Label, "10.0.0.5", N1, Action::Delete, Some(before), None)).await.unwrap();
        assert_eq!(kubectl(&remote), ["kubectl get nodes -o json", "kubectl label node node-1 old- --overwrite"]);
    }

    /// The node carries `gpu=nvidia:NoSchedule`, which sealer added.
    const GPU_NODE: &str =
        r#"{"metadata":{"name":"node-1"},"spec":{"taints":[{"key":"gpu","value":"nvidia","effect":"NoSchedule"}]}}"#;

    #[tokio::test]
    async fn a_taint_removed_the_documented_way_is_removed_once_and_then_left_alone() {
        for removal in ["gpu:NoSchedule", "gpu=nvidia:NoSchedule"] {
            let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes node-1", GPU_NODE));
            let (p, _logs) = provider(remote.clone());
            let before = attrs([("taints", Value::List(vec!["gpu=nvidia:NoSchedule".into()]))]);
            let after = attrs([("taints", Value::List(vec![])), ("absent", Value::List(vec![removal.into()]))]);
            apply(&p, change(Kind::Taint, "10.0.0.5", N1, Action::Update, Some(before), Some(after.clone())))
                .await
                .unwrap();
            assert_eq!(
                kubectl(&remote),
                ["kubectl get nodes node-1 -o json", "kubectl taint node node-1 gpu:NoSchedule- --overwrite"],
                "{removal}"
            );

            // The next apply finds the taint gone and sends nothing (kubectl fails on a taint not there).
            let remote = Arc::new(
                Scripted::default()
                    .on("hostname", "node-1")
                    .on("get nodes node-1", r#"{"metadata":{"name":"node-1"}}"#)
                    .fail("taint node", 1, "error: taint \"gpu:NoSchedule\" not found"),
            );
            let (p, _logs) = provider(remote.clone());
            let recorded = after.clone();
            apply(&p, change(Kind::Taint, "10.0.0.5", N1, Action::Update, Some(recorded), Some(after))).await.unwrap();
            assert_eq!(kubectl(&remote), ["kubectl get nodes node-1 -o json"], "{removal}");
        }
    }

    #[tokio::test]
    async fn a_taint_no_longer_declared_is_removed_only_as_recorded() {
        // Someone else set another value of the key: theirs stays.
        let theirs = GPU_NODE.replace("nvidia", "amd");
        let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes node-1", &theirs));
        let (p, _logs) = provider(remote.clone());
        let before = attrs([("taints", Value::List(vec!["gpu=nvidia:NoSchedule".into()]))]);
        let after = attrs([("taints", Value::List(vec![]))]);
        apply(&p, change(Kind::Taint, "10.0.0.5", N1, Action::Update, Some(before), Some(after))).await.unwrap();
        assert_eq!(kubectl(&remote), ["kubectl get nodes node-1 -o json"]);
    }
}

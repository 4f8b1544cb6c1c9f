//! The Kubernetes objects sealer reads through kubectl, parsed once with serde for every kind.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeSpec {
    #[serde(default)]
    pub taints: Vec<Taint>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

impl Taint {
    /// `key=value:Effect` (or `key:Effect`), as the Clusterfile writes taints.
    pub fn text(&self) -> String {
        match &self.value {
            Some(v) if !v.is_empty() => format!("{}={v}:{}", self.key, self.effect),
            _ => format!("{}:{}", self.key, self.effect),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeStatus {
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, rename = "nodeInfo")]
    pub node_info: NodeInfo,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeInfo {
    #[serde(default, rename = "kubeletVersion")]
    pub kubelet_version: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub message: String,
}

impl Node {
    pub fn internal_ip(&self) -> Option<&str> {
        self.status.addresses.iter().find(|a| a.kind == "InternalIP").map(|a| a.address.as_str())
    }

    pub fn ready(&self) -> bool {
        self.status.conditions.iter().any(|c| c.kind == "Ready" && c.status == "True")
    }

    /// Why the node is (not) Ready, as its Ready condition says.
    pub fn ready_message(&self) -> &str {
        self.status.conditions.iter().find(|c| c.kind == "Ready").map_or("no Ready condition", |c| c.message.as_str())
    }

    pub fn taint_texts(&self) -> Vec<String> {
        self.spec.taints.iter().map(Taint::text).collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConfigMap {
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_parse_with_what_kubectl_prints() {
        let json = r#"{"items":[{"metadata":{"name":"m1","labels":{"a":"b"}},
            "spec":{"taints":[{"key":"k","value":"v","effect":"NoSchedule"},{"key":"x","effect":"NoExecute"}]},
            "status":{"addresses":[{"type":"Hostname","address":"m1"},{"type":"InternalIP","address":"10.0.0.2"}],
            "conditions":[{"type":"Ready","status":"True"}]}},{"metadata":{"name":"bare"}}]}"#;
        let nodes: List<Node> = serde_json::from_str(json).unwrap();
        assert_eq!(nodes.items[0].internal_ip(), Some("10.0.0.2"));
        assert!(nodes.items[0].ready());
        assert_eq!(nodes.items[0].taint_texts(), ["k=v:NoSchedule", "x:NoExecute"]);
        assert_eq!(nodes.items[0].metadata.labels["a"], "b");
        assert!(!nodes.items[1].ready());
        assert_eq!(nodes.items[1].internal_ip(), None);
    }
}

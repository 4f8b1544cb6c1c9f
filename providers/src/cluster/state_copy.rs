//! The copy of the cluster's state kept in the cluster (ConfigMap `kube-system/sealer-state`), so that a
//! lost workstation can recover it with `sealer state pull --from-cluster`.

use super::kube::ConfigMap;
use super::ClusterProvider;
use crate::error::ProviderError;

pub const STATE_CONFIGMAP: &str = "sealer-state";
const STATE_KEY: &str = "state.json";

impl ClusterProvider {
    /// Writes `state_json` (without sealed secrets: they never leave the workstation) into the ConfigMap,
    /// through kubectl on the first master.
    pub async fn publish_state(&self, state_json: &str) -> Result<(), ProviderError> {
        let cx = &self.0;
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": STATE_CONFIGMAP,
                "namespace": "kube-system",
                "labels": {"app.kubernetes.io/managed-by": "sealer"},
            },
            "data": {STATE_KEY: state_json},
        });
        let body = manifest.to_string();
        let command = "f=$(mktemp) && cat > \"$f\" && kubectl apply -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc";
        cx.run(cx.ctx.first_master, &cx.with_image_path(command), body.as_bytes()).await.map(|_| ())
    }

    /// The state copy kept in the cluster, read through kubectl on the first master.
    pub async fn published_state(&self) -> Result<String, ProviderError> {
        let cx = &self.0;
        let configmap: ConfigMap = cx.get(&format!("configmap {STATE_CONFIGMAP} -n kube-system")).await?;
        configmap.data.get(STATE_KEY).cloned().ok_or_else(|| ProviderError::Unexpected {
            host: cx.ctx.first_master,
            what: format!("ConfigMap kube-system/{STATE_CONFIGMAP}"),
            message: format!("it has no `{STATE_KEY}`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::cluster::testing::*;

    #[tokio::test]
    async fn the_state_goes_in_through_stdin_and_comes_back() {
        let remote = Arc::new(
            Scripted::default().on("get configmap sealer-state", r#"{"data":{"state.json":"{\"serial\":3}"}}"#),
        );
        let (p, _logs) = provider(remote.clone());
        p.publish_state("{\"serial\":3}").await.unwrap();
        assert_eq!(p.published_state().await.unwrap(), "{\"serial\":3}");
        let commands = remote.commands(M1);
        assert!(commands[0].ends_with("kubectl apply -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc"), "{commands:?}");
        assert!(!commands[0].contains("serial"), "the state travels on stdin, not the command line");

        let remote = Arc::new(Scripted::default().on("get configmap", r#"{"data":{}}"#));
        let (p, _logs) = provider(remote);
        let err = p.published_state().await.unwrap_err().to_string();
        assert_eq!(err, "ConfigMap kube-system/sealer-state on `10.0.0.2`: it has no `state.json`");
    }
}

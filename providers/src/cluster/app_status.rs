//! Where installed components record their status in the cluster, ks-installer's rule: ConfigMap
//! `kube-system/sealer-apps`, one entry per component (`guest` for the cluster image's CMDs, `app.NAME` for
//! each application) holding `{"status": "installed"|"failed", "digest", "time"}`. Refresh reads it: a
//! component whose entry is missing, failed, or for another digest is drift, and the next apply runs it
//! again (deleting an entry by hand re-triggers that component's install, and only it).

use std::collections::BTreeMap;

use sealer_engine::schema::Known;
use serde::{Deserialize, Serialize};

use super::kube::ConfigMap;
use super::remote::Result;
use super::{Cx, Observation};

pub const APPS_CONFIGMAP: &str = "sealer-apps";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub status: String,
    pub digest: String,
    /// Unix time of the record.
    pub time: u64,
}

/// The entries of `kube-system/sealer-apps`; none when it does not exist yet.
pub(super) async fn read_all(cx: &Cx) -> Result<BTreeMap<String, AppStatus>> {
    // Not found is an empty record; any other failure (the API is down) is an error, not drift.
    let json = cx
        .output(
            cx.ctx.first_master,
            &cx.with_image_path(&format!(
                "out=$(kubectl get configmap {APPS_CONFIGMAP} -n kube-system -o json 2>&1) && printf '%s' \"$out\" || \
                 {{ case \"$out\" in *NotFound*|*'not found'*) echo '{{}}';; *) printf '%s\\n' \"$out\" >&2; exit 1;; esac; }}"
            )),
        )
        .await?;
    let configmap: ConfigMap = serde_json::from_str(&json).unwrap_or(ConfigMap { data: BTreeMap::new() });
    // An entry edited by hand into something else is no record at all: that component is drift.
    Ok(configmap.data.iter().filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v).ok()?))).collect())
}

/// Records `key` as `status` for `digest` (`None`: removes its entry), through kubectl on the first master.
pub(super) async fn record(cx: &Cx, key: &str, status: Option<(&str, &str)>) -> Result<()> {
    let mut entries: BTreeMap<String, String> =
        read_all(cx).await?.into_iter().filter_map(|(k, v)| Some((k, serde_json::to_string(&v).ok()?))).collect();
    match status {
        Some((status, digest)) => {
            let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let entry = AppStatus { status: status.into(), digest: digest.into(), time };
            entries.insert(key.into(), serde_json::to_string(&entry).unwrap_or_default());
        }
        None => {
            entries.remove(key);
        }
    }
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": APPS_CONFIGMAP, "namespace": "kube-system", "labels": {"app.kubernetes.io/managed-by": "sealer"}},
        "data": entries,
    });
    let command = "f=$(mktemp) && cat > \"$f\" && kubectl apply -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc";
    cx.run(cx.ctx.first_master, &cx.with_image_path(command), manifest.to_string().as_bytes()).await.map(|_| ())
}

/// The digest refresh reports for a component recorded at `digest`: the same when the cluster's entry says
/// it is installed at that digest, else why it is not, so that the plan shows the component as a change.
/// `None`: nothing to tell (no cluster yet, or no digest recorded).
pub(super) async fn observe(obs: &Observation<'_>, key: &str, digest: &Known<String>) -> Result<Option<Known<String>>> {
    if !obs.cluster_up {
        return Ok(None);
    }
    let Some(digest) = digest.known() else { return Ok(None) };
    let entries = obs.app_statuses().await?;
    let why = match entries.get(key) {
        Some(s) if s.status == "installed" && s.digest == *digest => return Ok(Some(Known::Is(digest.clone()))),
        Some(s) if s.status != "installed" => format!("{} in kube-system/{APPS_CONFIGMAP}", s.status),
        Some(_) => format!("another digest in kube-system/{APPS_CONFIGMAP}"),
        None => format!("no status in kube-system/{APPS_CONFIGMAP}"),
    };
    Ok(Some(Known::Is(format!("({why})"))))
}

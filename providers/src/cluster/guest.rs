//! `guest.IP`: the cluster image's CMDs, run once on the first master with the cluster's env.

use std::net::IpAddr;

use sealer_engine::schema::{self, Known};

use super::app_status;
use super::plugin::{prelude, SHELL};
use super::remote::Result;
use super::{Cx, KindProvider, Observation};
use crate::shell::quote;

pub struct Guest;

/// Its entry in `kube-system/sealer-apps`.
const STATUS_KEY: &str = "guest";

impl KindProvider for Guest {
    type Schema = schema::Guest;

    async fn read(
        &self,
        obs: &Observation<'_>,
        _ip: IpAddr,
        recorded: &schema::Guest,
    ) -> Result<Option<schema::Guest>> {
        let observed = app_status::observe(obs, STATUS_KEY, &recorded.image_digest).await?;
        Ok(observed.map(|image_digest| schema::Guest { image_digest, ..recorded.clone() }))
    }

    async fn create(&self, cx: &Cx, ip: IpAddr, mut after: schema::Guest) -> Result<schema::Guest> {
        let image = cx.image()?;
        let (prelude, env) = prelude(&cx.rootfs(), after.env.as_ref(), false);
        for cmd in &image.config.cmds {
            // A CMD is a shell line: with env names that are not identifiers, it runs in a shell that has them.
            let line = if env.is_empty() { cmd.clone() } else { format!("{env}{SHELL} -c {}", quote(cmd)) };
            if let Err(e) = cx.run(ip, &cx.with_image_path(&format!("{prelude}{line}")), b"").await {
                // The cluster says so too; a record that cannot be written changes nothing of the error.
                let _ = app_status::record(cx, STATUS_KEY, Some(("failed", &image.config.digest))).await;
                return Err(e);
            }
        }
        app_status::record(cx, STATUS_KEY, Some(("installed", &image.config.digest))).await?;
        after.cmds = Known::Is(image.config.cmds.clone());
        Ok(after)
    }

    /// A new image, CMD arguments or env run the CMDs again; a record that only moved to a new first master
    /// (the old one is gone) asks for nothing: they ran on the cluster already.
    async fn update(&self, cx: &Cx, ip: IpAddr, before: &schema::Guest, after: schema::Guest) -> Result<schema::Guest> {
        let same = (&before.image, &before.cmd_args, &before.image_digest, &before.env)
            == (&after.image, &after.cmd_args, &after.image_digest, &after.env);
        if same {
            return Ok(schema::Guest { cmds: before.cmds.clone(), ..after });
        }
        self.create(cx, ip, after).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use crate::cluster::testing::*;
    use crate::cluster::ClusterProvider;
    use crate::image::store::{ImageConfig, StoredImage};

    #[tokio::test]
    async fn every_cmd_runs_in_order_in_the_rootfs() {
        let image = || StoredImage {
            config: ImageConfig {
                format_version: "1".into(),
                name: "app:1".into(),
                digest: "sha256:1".into(),
                base: None,
                cmds: vec!["kubectl apply -f manifests/a.yaml".into(), "echo done".into()],
                env: BTreeMap::new(),
                labels: BTreeMap::new(),
                images: vec![],
            },
            rootfs: std::path::PathBuf::from("/nonexistent"),
            manifest: String::new(),
        };
        let remote = Arc::new(Scripted::default());
        let logs = tempfile::tempdir().unwrap();
        let p = ClusterProvider::new(context(Some(image()), logs.path()), remote.clone());
        let after = attrs([("env", Value::Map(BTreeMap::from([("A".to_string(), "1".to_string())])))]);
        let got =
            apply(&p, change(Kind::Guest, "10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap().unwrap();
        assert_eq!(got["cmds"], Value::List(vec!["kubectl apply -f manifests/a.yaml".into(), "echo done".into()]));
        // The directory guards every command after it; the identifier's value is exported, on no argv.
        let prefix =
            "export PATH=/var/lib/sealer/c/rootfs/bin:$PATH KUBECONFIG=\"${KUBECONFIG:-/etc/kubernetes/admin.conf}\"; cd /var/lib/sealer/c/rootfs || exit; export A=1; ";
        let commands = remote.commands(M1);
        assert_eq!(commands[..2], [format!("{prefix}kubectl apply -f manifests/a.yaml"), format!("{prefix}echo done")]);
        assert!(commands[2].contains("get configmap sealer-apps"), "{commands:?}");
        assert!(
            commands[3].ends_with("kubectl apply -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc"),
            "the status is recorded"
        );

        // Moved to a new first master with nothing else changed: nothing runs; a new digest runs them again.
        let remote = Arc::new(Scripted::default());
        let p = ClusterProvider::new(context(Some(image()), logs.path()), remote.clone());
        let (mut before, mut after) = (got.clone(), got.clone());
        after.remove("cmds");
        apply(&p, change(Kind::Guest, "10.0.0.3", M2, Action::Update, Some(before.clone()), Some(after.clone())))
            .await
            .unwrap();
        assert!(remote.calls().is_empty(), "{:?}", remote.calls());
        before.insert("image_digest".into(), Value::text("sha256:0"));
        after.insert("image_digest".into(), Value::text("sha256:1"));
        apply(&p, change(Kind::Guest, "10.0.0.3", M2, Action::Update, Some(before), Some(after))).await.unwrap();
        assert!(remote.commands(M2)[0].ends_with("kubectl apply -f manifests/a.yaml"), "{:?}", remote.calls());
    }
}

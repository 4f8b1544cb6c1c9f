//! `config.NAME.IP`: a Config document's file in the rootfs, overwritten or merged into the image's, then
//! processed (`toJson`, `toBase64`, `toSecret`) in order.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use sealer_engine::schema::{self, ConfigData};

use super::remote::Result;
use super::{Cx, KindProvider};
use crate::error::ProviderError;
use crate::shell::quote;

pub struct Config;

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The file's content after the document's `process` steps.
fn process(path: &str, mut content: String, steps: &[String]) -> Result<String> {
    let bad = |message: String| ProviderError::Config { path: path.to_string(), message };
    for step in steps {
        content = match step.as_str() {
            "toJson" => {
                let v: serde_yaml::Value = serde_yaml::from_str(&content).map_err(|e| bad(e.to_string()))?;
                serde_json::to_string_pretty(&v).map_err(|e| bad(e.to_string()))?
            }
            "toBase64" => base64(content.as_bytes()),
            "toSecret" => {
                let v: BTreeMap<String, String> =
                    serde_yaml::from_str(&content).map_err(|e| bad(format!("toSecret needs a map of strings: {e}")))?;
                let data: BTreeMap<String, String> = v.into_iter().map(|(k, v)| (k, base64(v.as_bytes()))).collect();
                let file = path.rsplit('/').next().unwrap_or("secret");
                let name = file.split('.').next().filter(|n| !n.is_empty()).unwrap_or("secret");
                let secret = serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data
                });
                serde_yaml::to_string(&secret).map_err(|e| bad(e.to_string()))?
            }
            other => return Err(bad(format!("unknown process step `{other}`"))),
        };
    }
    Ok(content)
}

impl KindProvider for Config {
    type Schema = schema::Config;

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Config) -> Result<schema::Config> {
        let path = after.path.clone();
        // A toSecret document: its data comes from the Clusterfile, never from the plan or the state; its
        // file is 0600 and never read through the log.
        let secret = after.data == ConfigData::Secret;
        let data = match &after.data {
            ConfigData::Secret => {
                let name = &after.name;
                cx.ctx.secret_configs.get(name).cloned().ok_or_else(|| ProviderError::Config {
                    path: path.clone(),
                    message: format!("the data of secret Config `{name}` is not in the Clusterfile"),
                })?
            }
            ConfigData::Text(data) => data.clone(),
        };
        let target = format!("{}/{path}", cx.rootfs());
        let mut content = data.clone();
        if after.strategy == "merge" {
            let read = format!("cat {} 2>/dev/null; true", quote(&target));
            let existing = if secret { cx.secret_output(ip, &read).await? } else { cx.output(ip, &read).await? };
            let mut base: serde_yaml::Value = serde_yaml::from_str(&existing).unwrap_or(serde_yaml::Value::Null);
            let over: serde_yaml::Value = serde_yaml::from_str(&data)
                .map_err(|e| ProviderError::Config { path: path.clone(), message: format!("data: {e}") })?;
            if base.is_null() {
                base = over;
            } else {
                sealer_engine::kubeadm::merge(&mut base, &over);
            }
            content = serde_yaml::to_string(&base)
                .map_err(|e| ProviderError::Config { path: path.clone(), message: e.to_string() })?;
        }
        let content = process(&path, content, &after.process)?;
        cx.upload(ip, &target, content.as_bytes(), if secret { 0o600 } else { 0o644 }).await?;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};

    use super::process;
    use crate::cluster::testing::*;

    #[test]
    fn process_steps_apply_in_order() {
        assert_eq!(process("p", "a: 1\n".into(), &["toJson".into()]).unwrap(), "{\n  \"a\": 1\n}");
        assert_eq!(process("p", "foo".into(), &["toBase64".into()]).unwrap(), "Zm9v");
        let secret = process("etc/db.yaml", "user: admin\n".into(), &["toSecret".into()]).unwrap();
        assert!(secret.contains("name: db") && secret.contains("user: YWRtaW4="), "{secret}");
        let err = process("p", "x".into(), &["toXml".into()]).unwrap_err().to_string();
        assert_eq!(err, "Config `p`: unknown process step `toXml`");
    }

    #[tokio::test]
    async fn merge_reads_the_image_file_and_writes_the_merged_one() {
        let remote = Arc::new(Scripted::default().on("cat /var/lib/sealer/c/rootfs/etc/app.yaml", "a: 1\nb: {c: 2}\n"));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([
            ("path", Value::text("etc/app.yaml")),
            ("data", Value::text("b: {d: 3}\n")),
            ("strategy", Value::text("merge")),
        ]);
        apply(&p, change(Kind::Config, "app.10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap();
        assert_eq!(
            remote.commands(M1),
            [
                "cat /var/lib/sealer/c/rootfs/etc/app.yaml 2>/dev/null; true",
                "upload /var/lib/sealer/c/rootfs/etc/app.yaml 644"
            ]
        );
        let written: serde_yaml::Value =
            serde_yaml::from_str(&remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/app.yaml").unwrap()).unwrap();
        let expected: serde_yaml::Value = serde_yaml::from_str("a: 1\nb: {c: 2, d: 3}").unwrap();
        assert_eq!(written, expected);
    }

    #[tokio::test]
    async fn overwrite_writes_the_data_without_reading() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("path", Value::text("etc/x")), ("data", Value::text("hello"))]);
        apply(&p, change(Kind::Config, "x.10.0.0.2", M1, Action::Update, Some(attrs([])), Some(after))).await.unwrap();
        assert_eq!(remote.commands(M1), ["upload /var/lib/sealer/c/rootfs/etc/x 644"]);
        assert_eq!(remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/x").as_deref(), Some("hello"));
    }

    /// A provider whose Clusterfile has the secret Config `db` (`password: hunter2`), and its logs.
    fn with_secret_db(remote: Arc<Scripted>) -> (crate::cluster::ClusterProvider, tempfile::TempDir) {
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = crate::cluster::testing::context(None, logs.path());
        ctx.secret_configs.insert("db".into(), "password: hunter2\n".into());
        (crate::cluster::ClusterProvider::new(ctx, remote), logs)
    }

    #[tokio::test]
    async fn a_secret_documents_data_comes_from_the_clusterfile_not_the_plan() {
        let remote = Arc::new(Scripted::default());
        let (p, logs) = with_secret_db(remote.clone());
        let after = attrs([
            ("name", Value::text("db")),
            ("path", Value::text("etc/db.yaml")),
            ("data", Value::Sensitive),
            ("process", Value::List(vec!["toSecret".into()])),
        ]);
        apply(&p, change(Kind::Config, "db.10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap();
        let written = remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/db.yaml").unwrap();
        assert!(written.contains("password: aHVudGVyMg=="), "{written}");
        assert_eq!(remote.commands(M1), ["upload /var/lib/sealer/c/rootfs/etc/db.yaml 600"], "written 0600");
        let log = std::fs::read_to_string(logs.path().join("10.0.0.2.log")).unwrap();
        assert!(!log.contains("hunter2") && !log.contains("aHVudGVyMg"), "{log}");
    }

    #[tokio::test]
    async fn a_secret_merged_into_an_existing_file_is_read_without_logging_it() {
        let existing = "user: admin\npassword: old-hunter3\n";
        let remote = Arc::new(Scripted::default().on("cat /var/lib/sealer/c/rootfs/etc/db.yaml", existing));
        let (p, logs) = with_secret_db(remote.clone());
        let after = attrs([
            ("name", Value::text("db")),
            ("path", Value::text("etc/db.yaml")),
            ("data", Value::Sensitive),
            ("strategy", Value::text("merge")),
        ]);
        apply(&p, change(Kind::Config, "db.10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap();
        let written = remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/db.yaml").unwrap();
        assert!(written.contains("user: admin") && written.contains("password: hunter2"), "{written}");
        let log = std::fs::read_to_string(logs.path().join("10.0.0.2.log")).unwrap();
        assert!(log.contains("cat /var/lib/sealer/c/rootfs/etc/db.yaml") && log.contains("upload"), "{log}");
        assert!(!log.contains("hunter") && !log.contains("admin"), "{log}");
    }
}

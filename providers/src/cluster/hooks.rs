//! `hooks.IP`: shell-operator hooks the cluster image carries. Every executable under the image's
//! `hooks/`, `plugins/` or `plugin/` that answers `--config` with shell-operator's JSON (`configVersion:
//! v1`, `onStartup: ORDER`, `schedule: [{name, crontab, allowFailure}]`) is one; the others (out-of-tree
//! plugins answering `phases` only) are not. Created once the cluster is installed, it runs the `onStartup`
//! hooks once, by ORDER, and records every `schedule` for `sealer reconcile`, which runs them on the first
//! master on their crontab ([`ClusterProvider::run_hook`]). A hook gets its binding context (shell-operator's
//! `[{"binding": ..., "type": ...}]`) on stdin and in the file `$BINDING_CONTEXT_PATH`.

use std::net::IpAddr;

use sealer_engine::{Attributes, Value};
use serde::{Deserialize, Serialize};

use super::remote::Result;
use super::{ClusterProvider, Cx, KindProvider};
use crate::error::ProviderError;
use crate::shell::quote;

pub struct Hooks;

/// One `schedule` entry of a hook, as `hooks.*` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledHook {
    /// The executable, relative to the rootfs (`hooks/backup`).
    pub path: String,
    pub name: String,
    pub crontab: String,
    #[serde(rename = "allowFailure")]
    pub allow_failure: bool,
}

#[derive(Deserialize)]
struct ShellOperatorConfig {
    #[serde(rename = "configVersion")]
    config_version: Option<String>,
    #[serde(rename = "onStartup")]
    on_startup: Option<i64>,
    #[serde(default)]
    schedule: Vec<ScheduleEntry>,
}

#[derive(Deserialize)]
struct ScheduleEntry {
    name: Option<String>,
    crontab: String,
    #[serde(rename = "allowFailure", default)]
    allow_failure: bool,
}

/// A hook path sealer runs: under one of the image's hook directories, no `..`, a plain name.
fn valid_path(path: &str) -> bool {
    let Some((dir, name)) = path.split_once('/') else { return false };
    ["hooks", "plugins", "plugin"].contains(&dir)
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

impl Cx {
    /// Every hook of the image on the first master: (path, onStartup order, schedules).
    async fn scan_hooks(&self, ip: IpAddr) -> Result<Vec<(String, Option<i64>, Vec<ScheduledHook>)>> {
        let script = format!(
            "cd {} && for f in hooks/* plugins/* plugin/*; do [ -f \"$f\" ] && [ -x \"$f\" ] || continue; \
             c=$(\"$f\" --config 2>/dev/null | tr -d '\\n') || continue; printf '%s\\t%s\\n' \"$f\" \"$c\"; done",
            quote(&self.rootfs())
        );
        let listed = self.output(ip, &self.with_image_path(&script)).await?;
        let mut hooks = Vec::new();
        for line in listed.lines() {
            let Some((path, json)) = line.split_once('\t') else { continue };
            let Ok(config) = serde_json::from_str::<ShellOperatorConfig>(json) else { continue };
            if config.config_version.as_deref() != Some("v1") || !valid_path(path) {
                continue;
            }
            let mut schedules = Vec::new();
            for (i, s) in config.schedule.into_iter().enumerate() {
                let name = s.name.unwrap_or_else(|| format!("schedule-{i}"));
                schedules.push(ScheduledHook {
                    path: path.into(),
                    name,
                    crontab: s.crontab,
                    allow_failure: s.allow_failure,
                });
            }
            hooks.push((path.to_string(), config.on_startup, schedules));
        }
        Ok(hooks)
    }

    /// Runs the hook at `path` on `ip` with `context` on stdin and in `$BINDING_CONTEXT_PATH`.
    async fn run_hook_at(&self, ip: IpAddr, path: &str, context: &serde_json::Value) -> Result<String> {
        if !valid_path(path) {
            return Err(ProviderError::Plugin {
                plugin: path.into(),
                host: ip,
                message: "not a hook of the image".into(),
            });
        }
        let command = format!(
            "cd {} && f=$(mktemp) && cat > \"$f\" && BINDING_CONTEXT_PATH=\"$f\" {} < \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",
            quote(&self.rootfs()),
            quote(&format!("./{path}"))
        );
        Ok(self.run(ip, &self.with_image_path(&command), context.to_string().as_bytes()).await?.stdout_text())
    }
}

fn record(after: &mut Attributes, startup: Vec<String>, schedules: &[ScheduledHook]) {
    after.insert("startup".into(), Value::List(startup));
    let schedules = schedules.iter().filter_map(|s| serde_json::to_string(s).ok()).collect();
    after.insert("schedules".into(), Value::List(schedules));
}

impl KindProvider for Hooks {
    async fn create(&self, cx: &Cx, ip: IpAddr, mut after: Attributes) -> Result<Attributes> {
        let mut hooks = cx.scan_hooks(ip).await?;
        hooks.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let mut startup = Vec::new();
        for (path, order, _) in hooks.iter().filter(|h| h.1.is_some()) {
            let context = serde_json::json!([{"binding": "onStartup", "type": "onStartup", "cluster": cx.ctx.cluster}]);
            cx.run_hook_at(ip, path, &context).await?;
            startup.push(format!("{path} (onStartup {})", order.unwrap_or_default()));
        }
        let schedules: Vec<ScheduledHook> = hooks.into_iter().flat_map(|h| h.2).collect();
        record(&mut after, startup, &schedules);
        Ok(after)
    }

    /// A new image: its schedules are read again; `onStartup` hooks ran when the cluster was installed.
    async fn update(&self, cx: &Cx, ip: IpAddr, before: &Attributes, mut after: Attributes) -> Result<Attributes> {
        let schedules: Vec<ScheduledHook> = cx.scan_hooks(ip).await?.into_iter().flat_map(|h| h.2).collect();
        let startup = match before.get("startup") {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        };
        record(&mut after, startup, &schedules);
        Ok(after)
    }
}

/// The schedules a `hooks.*` resource recorded.
pub fn recorded_schedules(attributes: &Attributes) -> Vec<ScheduledHook> {
    match attributes.get("schedules") {
        Some(Value::List(items)) => items.iter().filter_map(|s| serde_json::from_str(s).ok()).collect(),
        _ => Vec::new(),
    }
}

impl ClusterProvider {
    /// Runs a scheduled hook on the first master (`sealer reconcile`); returns what it printed.
    pub async fn run_hook(&self, hook: &ScheduledHook) -> std::result::Result<String, ProviderError> {
        let cx = &self.0;
        let context = serde_json::json!([{"binding": hook.name, "type": "Schedule", "cluster": cx.ctx.cluster}]);
        cx.run_hook_at(cx.ctx.first_master, &hook.path, &context).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Kind};

    use super::*;
    use crate::cluster::testing::*;

    #[tokio::test]
    async fn startup_hooks_run_in_order_and_schedules_are_recorded() {
        let listed = "hooks/b\t{\"configVersion\":\"v1\",\"onStartup\":10}\n\
                      hooks/a\t{\"configVersion\":\"v1\",\"onStartup\":20,\"schedule\":[{\"name\":\"every-min\",\"crontab\":\"* * * * *\"}]}\n\
                      plugins/record-context\t{\"phases\":[\"PostJoin\"]}\n\
                      hooks/bad name\t{\"configVersion\":\"v1\",\"onStartup\":1}\n";
        let remote = Arc::new(Scripted::default().on("--config", listed));
        let (p, _logs) = provider(remote.clone());
        let got = apply(&p, change(Kind::Hooks, "10.0.0.2", M1, Action::Create, None, Some(attrs([]))))
            .await
            .unwrap()
            .unwrap();
        let commands = remote.commands(M1);
        assert_eq!(commands.len(), 3, "{commands:?}");
        assert!(
            commands[1].contains("./hooks/b <") && commands[2].contains("./hooks/a <"),
            "by onStartup order: {commands:?}"
        );
        assert_eq!(got["startup"], Value::List(vec!["hooks/b (onStartup 10)".into(), "hooks/a (onStartup 20)".into()]));
        let schedules = recorded_schedules(&got);
        assert_eq!(
            schedules,
            [ScheduledHook {
                path: "hooks/a".into(),
                name: "every-min".into(),
                crontab: "* * * * *".into(),
                allow_failure: false
            }]
        );
        p.run_hook(&schedules[0]).await.unwrap();
        assert!(remote.commands(M1)[3].contains("BINDING_CONTEXT_PATH"));
    }
}

//! `hooks.IP`: shell-operator hooks the cluster image carries. Every executable under the image's
//! `hooks/`, `plugins/` or `plugin/` that answers `--config` with shell-operator's JSON (`configVersion:
//! v1`, `onStartup: ORDER`, `schedule: [{name, crontab, allowFailure}]`, `kubernetes: [...]`) is one; the
//! others (out-of-tree plugins answering `phases` only) are not. Created once the cluster is installed, it
//! runs the `onStartup` hooks once, by ORDER, and records every `schedule` and `kubernetes` binding for
//! `sealer reconcile`, which runs them on the first master: schedules on their crontab
//! ([`ClusterProvider::run_hook`]), kubernetes bindings on what the cluster's API shows (`hook_watch`). A
//! hook gets its binding context (shell-operator's `[{"binding": ..., "type": ...}]`) on stdin and in the
//! file `$BINDING_CONTEXT_PATH`, and may write metrics to `$METRICS_PATH` (shell-operator's JSON lines).

use std::net::IpAddr;

use sealer_engine::schema::{self, Known};
use serde::{Deserialize, Serialize};

use super::hook_watch::{BindingConfig, WatchedHook};
use super::remote::Result;
use super::{ClusterProvider, Cx, KindProvider};
use crate::error::ProviderError;
use crate::shell::quote;

pub struct Hooks;

/// The metric lines of one hook run kept at most (a hook cannot flood the workstation's memory).
const MAX_METRIC_LINES: usize = 1000;

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
    #[serde(default)]
    kubernetes: Vec<serde_json::Value>,
}

/// What a hook's `--config` binds it to.
struct Found {
    path: String,
    on_startup: Option<i64>,
    schedules: Vec<ScheduledHook>,
    watches: Vec<WatchedHook>,
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
    /// Every hook of the image on the first master, with its bindings. A `kubernetes` binding that
    /// shell-operator would refuse fails the scan, naming the hook.
    async fn scan_hooks(&self, ip: IpAddr) -> Result<Vec<Found>> {
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
            let mut watches = Vec::new();
            for (i, entry) in config.kubernetes.into_iter().enumerate() {
                let binding = serde_json::from_value::<BindingConfig>(entry)
                    .map_err(|e| format!("binding {i}: {e}"))
                    .and_then(|b| b.recorded(path, i).map_err(|e| e.to_string()));
                watches.push(binding.map_err(|message| ProviderError::Plugin {
                    plugin: path.into(),
                    host: ip,
                    message,
                })?);
            }
            hooks.push(Found { path: path.to_string(), on_startup: config.on_startup, schedules, watches });
        }
        Ok(hooks)
    }

    /// Runs the hook at `path` on `ip` with `context` on stdin and in `$BINDING_CONTEXT_PATH`; returns the
    /// metrics it wrote to `$METRICS_PATH` (shell-operator's JSON lines).
    async fn run_hook_at(&self, ip: IpAddr, path: &str, context: &serde_json::Value) -> Result<Vec<String>> {
        if !valid_path(path) {
            return Err(ProviderError::Plugin {
                plugin: path.into(),
                host: ip,
                message: "not a hook of the image".into(),
            });
        }
        // The command's stdout carries the metrics file only: what the hook prints there is dropped (a
        // hook bound to Secrets may print its binding context), its stderr says why it failed.
        let command = format!(
            "cd {} && f=$(mktemp) && m=$(mktemp) && cat > \"$f\" && BINDING_CONTEXT_PATH=\"$f\" METRICS_PATH=\"$m\" {} < \"$f\" \
             >/dev/null; rc=$?; head -n {MAX_METRIC_LINES} \"$m\"; rm -f \"$f\" \"$m\"; exit $rc",
            quote(&self.rootfs()),
            quote(&format!("./{path}"))
        );
        let out = self.run(ip, &self.with_image_path(&command), context.to_string().as_bytes()).await?;
        Ok(out.stdout_text().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
    }
}

fn record(after: &mut schema::Hooks, startup: Vec<String>, hooks: Vec<Found>) {
    after.startup = Known::Is(startup);
    let schedules = hooks.iter().flat_map(|h| &h.schedules).filter_map(|s| serde_json::to_string(s).ok()).collect();
    after.schedules = Known::Is(schedules);
    let watches = hooks.iter().flat_map(|h| &h.watches).filter_map(|w| serde_json::to_string(w).ok()).collect();
    after.watches = Known::Is(watches);
}

impl KindProvider for Hooks {
    type Schema = schema::Hooks;

    async fn create(&self, cx: &Cx, ip: IpAddr, mut after: schema::Hooks) -> Result<schema::Hooks> {
        let mut hooks = cx.scan_hooks(ip).await?;
        hooks.sort_by(|a, b| (a.on_startup, &a.path).cmp(&(b.on_startup, &b.path)));
        let mut startup = Vec::new();
        for hook in hooks.iter().filter(|h| h.on_startup.is_some()) {
            let context = serde_json::json!([{"binding": "onStartup", "type": "onStartup", "cluster": cx.ctx.cluster}]);
            cx.run_hook_at(ip, &hook.path, &context).await?;
            startup.push(format!("{} (onStartup {})", hook.path, hook.on_startup.unwrap_or_default()));
        }
        record(&mut after, startup, hooks);
        Ok(after)
    }

    /// A new image: its bindings are read again; `onStartup` hooks ran when the cluster was installed.
    async fn update(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::Hooks,
        mut after: schema::Hooks,
    ) -> Result<schema::Hooks> {
        let hooks = cx.scan_hooks(ip).await?;
        let startup = before.startup.known().cloned().unwrap_or_default();
        record(&mut after, startup, hooks);
        Ok(after)
    }
}

/// The schedules a `hooks.*` resource recorded.
pub fn recorded_schedules(hooks: &schema::Hooks) -> Vec<ScheduledHook> {
    recorded(&hooks.schedules)
}

/// The `kubernetes` bindings a `hooks.*` resource recorded.
pub fn recorded_watches(hooks: &schema::Hooks) -> Vec<WatchedHook> {
    recorded(&hooks.watches)
}

fn recorded<T: serde::de::DeserializeOwned>(items: &Known<Vec<String>>) -> Vec<T> {
    items.known().into_iter().flatten().filter_map(|s| serde_json::from_str(s).ok()).collect()
}

impl ClusterProvider {
    /// Runs a scheduled hook on the first master (`sealer reconcile`); returns the metrics it wrote.
    pub async fn run_hook(&self, hook: &ScheduledHook) -> std::result::Result<Vec<String>, ProviderError> {
        let cx = &self.0;
        let context = serde_json::json!([{"binding": hook.name, "type": "Schedule", "cluster": cx.ctx.cluster}]);
        cx.run_hook_at(cx.ctx.first_master, &hook.path, &context).await
    }

    /// Runs the hook at `path` on the first master with a binding `context` of
    /// [`ClusterProvider::look`]; returns the metrics it wrote.
    pub async fn run_bound_hook(
        &self,
        path: &str,
        context: &serde_json::Value,
    ) -> std::result::Result<Vec<String>, ProviderError> {
        let cx = &self.0;
        cx.run_hook_at(cx.ctx.first_master, path, context).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::schema::Schema;
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
        let schedules = recorded_schedules(&schema::Hooks::from_attributes(&got).unwrap());
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

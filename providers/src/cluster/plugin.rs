//! `plugin.NAME.PHASE.IP`: SHELL scripts, CLUSTERCHECK, ETCD snapshots and out-of-tree plugins (an
//! executable under the image's `plugins/` that describes itself with `--config`). Plugins of the clean
//! phases run when their resource is deleted.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sealer_engine::schema::{self, Schema};
use sealer_engine::{Action, Attributes, ChainProgress, Kind, ResourceChange};

use super::remote::{self, Result};
use super::{Cx, KindProvider, KUBECONFIG_DEFAULT};
use crate::error::ProviderError;
use crate::transport::{Step, StepEvent};
use sealer_engine::clusterfile::rules::is_shell_identifier;

use crate::shell::{leaves_shell_as_is, quote};

pub struct Plugin;

/// How long CLUSTERCHECK waits for every node to be Ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// What runs before a resource's script, CMD line or plugin: `cd DIR || exit` (so nothing runs in the
/// wrong directory: `cd DIR && a; b` would guard only `a`), then `export NAME=VALUE` for every env name
/// that is a shell identifier (a builtin: the value is on no command line). Names that are not
/// identifiers (`docker-dir`) cannot be exported by a shell; they go through the returned `env -- …`
/// prefix, whose arguments a host's `ps` shows while `env` starts the program. With `create`, the
/// directory is made first (an Originally plugin runs before the image is on the host).
pub(super) fn prelude(dir: &str, env: Option<&BTreeMap<String, String>>, create: bool) -> (String, String) {
    let dir = quote(dir);
    let mut prelude =
        if create { format!("mkdir -p {dir} && cd {dir} || exit; ") } else { format!("cd {dir} || exit; ") };
    let Some(env) = env else { return (prelude, String::new()) };
    let mut others = Vec::new();
    for (k, v) in env {
        if is_shell_identifier(k) {
            prelude += &format!("export {k}={}; ", quote(v));
        } else {
            others.push(quote(&format!("{k}={v}")));
        }
    }
    let env = if others.is_empty() { String::new() } else { format!("env -- {} ", others.join(" ")) };
    (prelude, env)
}

/// The shell scripts and CMD lines run in: bash where the host has it (dash drops env names that are not
/// identifiers, such as `docker-dir`, from what its children see), else sh.
pub(super) const SHELL: &str = "\"$(command -v bash || echo sh)\"";

/// Whether `change` may run in a chain with its host's other short changes: the creation of a SHELL
/// plugin that runs when created (a script, and nothing from the workstation between it and the next).
pub(super) fn chains(change: &ResourceChange) -> bool {
    change.kind == Kind::Plugin
        && change.action == Action::Create
        && change
            .after
            .as_ref()
            .and_then(|a| schema::Plugin::from_attributes(a).ok())
            .is_some_and(|p| shell_on_create(&p))
}

fn shell_on_create(plugin: &schema::Plugin) -> bool {
    plugin.r#type == "SHELL" && !plugin.runs_on_delete()
}

/// Originally runs first on a fresh host: its directory is the cluster's, made if needed (the rootfs comes
/// with the image, later).
fn originally(plugin: &schema::Plugin) -> bool {
    plugin.phase == "Originally"
}

impl Cx {
    async fn run_plugin(&self, ip: IpAddr, after: &schema::Plugin) -> Result<()> {
        let data = after.data.clone().unwrap_or_default();
        let originally = originally(after);
        let dir = if originally { super::cluster_dir(&self.ctx.cluster) } else { self.rootfs() };
        let (prelude, env_cmd) = prelude(&dir, after.env.as_ref(), originally);
        match after.r#type.as_str() {
            "SHELL" => {
                let step = self.shell_step(after);
                self.run(ip, &step.command, &step.stdin).await?;
            }
            "CLUSTERCHECK" => self.wait_ready().await?,
            // At a clean phase (a backup before the cluster goes), only the snapshot itself matters.
            "ETCD" => {
                self.etcd_backup(ip, after.clone()).await?;
            }
            other => {
                // An out-of-tree plugin describes itself; one that does not run at this phase is refused.
                // It is in the image's `plugins/` or, as sealer's guides COPY it, `plugin/`.
                let in_plugin_dir = self.image().is_ok_and(|i| {
                    !i.rootfs.join("plugins").join(other).exists() && i.rootfs.join("plugin").join(other).exists()
                });
                let dir = if in_plugin_dir { "plugin" } else { "plugins" };
                let exe = quote(&format!("{}/{dir}/{other}", self.rootfs()));
                let phase = &after.phase;
                let described = self.output(ip, &format!("{exe} --config")).await?;
                let bad = |message: String| ProviderError::Plugin { plugin: other.to_string(), host: ip, message };
                let config: serde_json::Value = serde_json::from_str(&described)
                    .map_err(|e| bad(format!("it printed no JSON for --config: {e}")))?;
                let phases: Vec<&str> = config["phases"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                if !phases.contains(&phase.as_str()) {
                    return Err(bad(format!("it runs at {}, not at {phase}", phases.join(", "))));
                }
                let env = serde_json::json!(after.env.clone().unwrap_or_default());
                let context = serde_json::json!({
                    "cluster": self.ctx.cluster, "host": ip.to_string(), "phase": phase, "data": data, "env": env
                });
                let command = format!("{prelude}exec {env_cmd}{exe}");
                self.run(ip, &self.with_image_path(&command), context.to_string().as_bytes()).await?;
            }
        }
        Ok(())
    }

    /// A SHELL plugin's command and script. A script read with `-s` means the same with a last newline,
    /// and goes to the host as a here-document with one where its bash keeps those in pipes (see
    /// `SshSession::exec`), not through two more processes. In the host's bash, the script is sourced from stdin in the command's own subshell: no
    /// process to start. Names that are not identifiers need `env`, and so a new shell.
    fn shell_step(&self, after: &schema::Plugin) -> Step {
        let data = after.data.clone().unwrap_or_default();
        let originally = originally(after);
        let dir = if originally { super::cluster_dir(&self.ctx.cluster) } else { self.rootfs() };
        let (prelude, env_cmd) = prelude(&dir, after.env.as_ref(), originally);
        let script = if data.ends_with('\n') { data } else { format!("{data}\n") };
        let command = if env_cmd.is_empty() {
            format!("{prelude}if [ -n \"$BASH_VERSION\" ]; then . /dev/stdin; else exec {SHELL} -s; fi")
        } else {
            format!("{prelude}exec {env_cmd}{SHELL} -s")
        };
        // A script that leaves the shell as is may run in a chain's own bash: its directory set as each
        // step sets it, the image's PATH and KUBECONFIG given to `.` alone (bash restores them after). Not
        // with an env: a name special to bash (`POSIXLY_CORRECT`, `BASH_XTRACEFD`) would outlive the step.
        let in_shell = (after.env.as_ref().is_none_or(BTreeMap::is_empty) && leaves_shell_as_is(&script)).then(|| {
            let dir = quote(&dir);
            let cd = if originally { format!("mkdir -p {dir} && cd {dir}") } else { format!("cd {dir}") };
            format!("{cd} && PATH={}/bin:\"$PATH\" {KUBECONFIG_DEFAULT} . /dev/stdin", quote(&self.rootfs()))
        });
        Step { command: self.with_image_path(&command), stdin: script.into_bytes(), in_shell }
    }

    /// Runs the SHELL plugins of `changes` (creates on one host: see [`chains`]) in one round trip, each
    /// logged, recorded in `results` and reported as it ends.
    pub(super) async fn shell_chain(&self, changes: &[Arc<ResourceChange>], progress: &ChainProgress) {
        let Some(ip) = changes.first().and_then(|c| c.host) else { return };
        let afters: Vec<Attributes> = changes.iter().map(|c| c.after.clone().unwrap_or_default()).collect();
        // Every change of a chain read as a plugin already ([`chains`]).
        let steps: Vec<Step> =
            afters.iter().map(|a| self.shell_step(&schema::Plugin::from_attributes(a).unwrap_or_default())).collect();
        // The step the host began and has not ended (and since when), the first step not ended, and whether
        // one failed (which ended the chain).
        let state = Mutex::new((None, Instant::now(), 0, false));
        let on = |event: StepEvent| match event {
            StepEvent::Began(k) => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                (state.0, state.1) = (Some(k), Instant::now());
                progress.started(k);
            }
            StepEvent::Ended(k, out) => {
                let started = state.lock().unwrap_or_else(PoisonError::into_inner).1;
                self.log(ip, &format!("$ {}", steps[k].command));
                self.log_output(ip, &out, started);
                let result = remote::succeeded(ip, &steps[k].command, out).map(|_| afters[k].clone());
                if let Ok(after) = &result {
                    let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
                    results.insert(changes[k].address.clone(), after.clone());
                }
                *state.lock().unwrap_or_else(PoisonError::into_inner) = (None, Instant::now(), k + 1, result.is_err());
                progress.done(k, result.map(Some).map_err(Into::into));
            }
        };
        let stop = || progress.cancelled();
        if let Err(e) = self.remote.exec_steps(ip, &steps, &stop, &on).await {
            // The step under way when the connection failed ends with it; so does the next one when the
            // failure came between steps (connecting, sending), so that the error is told, unless the
            // chain was told to stop (the host began nothing more); a step that failed on its own already
            // ended the chain.
            let (under_way, started, next, failed) = *state.lock().unwrap_or_else(PoisonError::into_inner);
            let between = !failed && !progress.cancelled() && next < steps.len();
            let blamed = under_way.or(between.then_some(next));
            if let Some(k) = blamed {
                if under_way.is_none() {
                    progress.started(k);
                }
                self.log(ip, &format!("$ {}", steps[k].command));
                self.log_failure(ip, started, &e);
                progress.done(k, Err(e.into()));
            }
        }
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            let nodes = self.nodes().await?;
            let not_ready: Vec<&str> =
                nodes.items.iter().filter(|n| !n.ready()).map(|n| n.metadata.name.as_str()).collect();
            if not_ready.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ProviderError::NotReady { seconds: READY_WITHIN.as_secs(), nodes: not_ready.join(", ") });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl KindProvider for Plugin {
    type Schema = schema::Plugin;

    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::Plugin) -> Result<schema::Plugin> {
        if after.runs_on_delete() {
            return Ok(after);
        }
        if after.r#type == "ETCD" {
            return cx.etcd_backup(ip, after).await;
        }
        cx.run_plugin(ip, &after).await?;
        Ok(after)
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::Plugin) -> Result<()> {
        if before.runs_on_delete() {
            cx.run_plugin(ip, before).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, NodeOutcome, Value};

    use crate::cluster::testing::*;

    fn shell(runs_on: &str) -> sealer_engine::Attributes {
        attrs([
            ("type", Value::text("SHELL")),
            ("data", Value::text("echo hi")),
            ("phase", Value::text("PostInstall")),
            ("runs_on", Value::text(runs_on)),
            (
                "env",
                Value::Map(BTreeMap::from([
                    ("DIR".to_string(), "a b".to_string()),
                    ("docker-dir".to_string(), "/var/lib/docker".to_string()),
                ])),
            ),
        ])
    }

    #[tokio::test]
    async fn shell_scripts_run_in_the_rootfs_with_their_env() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::Plugin, "s.PostInstall.10.0.0.2", M1, Action::Create, None, Some(shell("create"))))
            .await
            .unwrap();
        assert_eq!(
            remote.commands(M1),
            ["export PATH=/var/lib/sealer/c/rootfs/bin:$PATH KUBECONFIG=\"${KUBECONFIG:-/etc/kubernetes/admin.conf}\"; cd /var/lib/sealer/c/rootfs || exit; export DIR='a b'; \
                 exec env -- docker-dir=/var/lib/docker \"$(command -v bash || echo sh)\" -s"]
        );
        // Only identifiers: in the host's bash the script is sourced, with no process to start.
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        let mut only_identifiers = shell("create");
        only_identifiers.insert("env".into(), Value::Map(BTreeMap::from([("DIR".to_string(), "a b".to_string())])));
        apply(&p, change(Kind::Plugin, "s.PostInstall.10.0.0.2", M1, Action::Create, None, Some(only_identifiers)))
            .await
            .unwrap();
        assert_eq!(
            remote.commands(M1),
            ["export PATH=/var/lib/sealer/c/rootfs/bin:$PATH KUBECONFIG=\"${KUBECONFIG:-/etc/kubernetes/admin.conf}\"; cd /var/lib/sealer/c/rootfs || exit; export DIR='a b'; \
                 if [ -n \"$BASH_VERSION\" ]; then . /dev/stdin; else exec \"$(command -v bash || echo sh)\" -s; fi"]
        );
    }

    #[tokio::test]
    async fn originally_plugins_run_in_the_cluster_directory_made_first() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        let mut originally = shell("create");
        originally.insert("phase".into(), Value::text("Originally"));
        originally.insert(
            "env".into(),
            Value::Map(BTreeMap::from([("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())])),
        );
        apply(&p, change(Kind::Plugin, "s.Originally.10.0.0.2", M1, Action::Create, None, Some(originally)))
            .await
            .unwrap();
        let commands = remote.commands(M1);
        assert!(
            commands[0]
                .contains("mkdir -p /var/lib/sealer/c && cd /var/lib/sealer/c || exit; export A=1; export B=2; "),
            "{commands:?}"
        );
    }

    /// The prelude on a real shell: a directory that cannot be entered runs nothing of what follows.
    #[test]
    fn a_directory_that_cannot_be_entered_runs_nothing() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())]);
        for shell in ["bash", "sh"] {
            let (prelude, _) = super::prelude("/nonexistent/dir", Some(&env), false);
            let out = std::process::Command::new(shell)
                .args(["-c", &format!("( {prelude}echo ran A=$A B=$B ); echo status $?")])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let failed = stdout.contains("status 1") || stdout.contains("status 2");
            assert!(!stdout.contains("ran") && failed, "{shell}: {stdout}");
        }
    }

    #[tokio::test]
    async fn clean_phase_plugins_run_only_when_deleted() {
        let remote = Arc::new(Scripted::default());
        let (p, _logs) = provider(remote.clone());
        let key = "s.PreClean.10.0.0.2";
        apply(&p, change(Kind::Plugin, key, M1, Action::Create, None, Some(shell("delete")))).await.unwrap();
        assert!(remote.calls().is_empty());
        apply(&p, change(Kind::Plugin, key, M1, Action::Delete, Some(shell("delete")), None)).await.unwrap();
        assert_eq!(remote.calls().len(), 1);
    }

    #[tokio::test]
    async fn out_of_tree_plugins_describe_themselves_and_get_their_context() {
        let remote = Arc::new(Scripted::default().on("plugins/mine --config", r#"{"phases":["PreInit"]}"#));
        let (p, _logs) = provider(remote.clone());
        let after = |phase: &str| {
            attrs([("type", Value::text("mine")), ("phase", Value::text(phase)), ("data", Value::text("x"))])
        };
        apply(&p, change(Kind::Plugin, "m.PreInit.10.0.0.2", M1, Action::Create, None, Some(after("PreInit"))))
            .await
            .unwrap();
        let commands = remote.commands(M1);
        assert_eq!(commands[0], "/var/lib/sealer/c/rootfs/plugins/mine --config");
        assert!(commands[1].ends_with("exec /var/lib/sealer/c/rootfs/plugins/mine"), "{}", commands[1]);
        let err = apply(
            &p,
            change(Kind::Plugin, "m.PostInstall.10.0.0.2", M1, Action::Create, None, Some(after("PostInstall"))),
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(err, "plugin `mine` on `10.0.0.2`: it runs at PreInit, not at PostInstall");
    }

    #[tokio::test]
    async fn clustercheck_waits_until_every_node_is_ready() {
        let ready =
            r#"{"items":[{"metadata":{"name":"a"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}]}"#;
        let remote = Arc::new(
            Scripted::default().once("get nodes", r#"{"items":[{"metadata":{"name":"a"}}]}"#).on("get nodes", ready),
        );
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("type", Value::text("CLUSTERCHECK"))]);
        apply(&p, change(Kind::Plugin, "c.PostInstall.10.0.0.2", M1, Action::Create, None, Some(after))).await.unwrap();
        assert_eq!(remote.calls().len(), 2, "asked again after a node was not Ready");
    }

    #[tokio::test]
    async fn a_failing_script_names_the_host_command_and_status() {
        let remote = Arc::new(Scripted::default().fail(" -s", 3, "line 1\nboom"));
        let (p, _logs) = provider(remote);
        let err =
            apply(&p, change(Kind::Plugin, "s.PostInstall.10.0.0.2", M1, Action::Create, None, Some(shell("create"))))
                .await
                .unwrap_err()
                .to_string();
        assert!(err.contains("on `10.0.0.2` exited with 3: line 1 / boom"), "{err}");
    }

    /// A host's SHELL plugins run as one chain: each logged and reported on its own, in order, and
    /// none after the one that failed; the plugins of another host are a chain of their own.
    #[tokio::test]
    async fn a_hosts_shell_plugins_run_as_one_chain_that_stops_at_a_failure() {
        let plugin = |n: &str| {
            let mut a = shell("create");
            a.insert("env".into(), Value::Map(BTreeMap::from([("STEP".to_string(), n.to_string())])));
            a
        };
        let remote = Arc::new(Scripted::default().fail("export STEP=2;", 3, "step 2 broke"));
        let (p, logs) = provider(remote.clone());
        let changes: Vec<sealer_engine::ResourceChange> = [(M1, "1"), (M1, "2"), (M1, "3"), (M2, "4")]
            .into_iter()
            .map(|(ip, n)| {
                let key = format!("s{n}.PostInstall.{ip}");
                (*change(Kind::Plugin, &key, ip, Action::Create, None, Some(plugin(n)))).clone()
            })
            .collect();
        assert!(changes.iter().all(|c| sealer_engine::Provider::chain_key(&p, c) == c.host.map(|h| h.to_string())));
        let (report, recorded) = walk(p, changes).await;
        let outcome = |k: &str| report.outcomes.iter().find(|(a, _)| a.key.starts_with(k)).unwrap().1.clone();
        assert_eq!(outcome("s1."), NodeOutcome::Applied);
        assert!(
            matches!(outcome("s2."), NodeOutcome::Failed(ref e) if e.contains("exited with 3: step 2 broke")),
            "{:?}",
            outcome("s2.")
        );
        assert_eq!(outcome("s4."), NodeOutcome::Applied);
        // s3 never ran in the chain; independent of s2, it ran after, on its own.
        assert_eq!(outcome("s3."), NodeOutcome::Applied);
        let m1: Vec<String> =
            remote.commands(M1).iter().map(|c| c.split("export STEP=").nth(1).unwrap()[..1].to_string()).collect();
        assert_eq!(m1, ["1", "2", "3"], "in order, s3 once");
        assert!(recorded.contains(&("s2.PostInstall.10.0.0.2".to_string(), true)), "tainted: {recorded:?}");
        let log = std::fs::read_to_string(logs.path().join("10.0.0.2.log")).unwrap();
        assert_eq!(log.matches("$ export PATH=").count(), 3, "{log}");
        assert!(log.contains("step 2 broke\n# exit 3 after "), "{log}");
    }

    /// A chain whose host cannot be reached: each plugin fails with the reason, none with a vaguer one.
    #[tokio::test]
    async fn a_chain_that_cannot_reach_its_host_names_the_reason_for_each_plugin() {
        let remote = Arc::new(Scripted::default().down(M1));
        let (p, _logs) = provider(remote);
        let changes = ["1", "2"].map(|n| {
            (*change(Kind::Plugin, &format!("s{n}.PostInstall.{M1}"), M1, Action::Create, None, Some(shell("create"))))
                .clone()
        });
        let (report, _) = walk(p, changes.to_vec()).await;
        assert_eq!(report.outcomes.len(), 2);
        for outcome in report.outcomes.values() {
            assert!(matches!(outcome, NodeOutcome::Failed(e) if e.contains("connection timed out")), "{outcome:?}");
        }
    }
}

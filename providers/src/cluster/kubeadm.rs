//! `kubeadm-init.IP` (the first master) and `kubeadm-join.IP` (every other host): membership of the
//! cluster, and reconfiguration of the control plane when the merged kubeadm configuration changes.

use std::net::IpAddr;

use sealer_engine::kubeadm::{
    differs_beyond_version, for_control_plane_member, with_join_credentials, API_SERVER_DOMAIN, REGISTRY_DOMAIN,
};
use sealer_engine::schema;

use super::remote::Result;
use super::{cluster_dir, Cx, JoinInfo, KindProvider};
use crate::error::ProviderError;
use crate::shell::quote;

pub struct Init;
pub struct Join;

/// The join command `kubeadm init` or `kubeadm token create --print-join-command` printed.
fn parse_join(output: &str) -> Option<JoinInfo> {
    let words: Vec<&str> = output.split_whitespace().filter(|w| *w != "\\").collect();
    let at = words.windows(2).position(|w| w == ["kubeadm", "join"])? + 1;
    let after =
        |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).map(|s| s.to_string());
    // The endpoint is the planned JoinConfiguration's; a command without one is not a join command.
    words.get(at + 1)?;
    Some(JoinInfo {
        token: after("--token")?,
        ca_hash: after("--discovery-token-ca-cert-hash")?,
        certificate_key: after("--certificate-key"),
    })
}

impl Cx {
    fn kubeadm_config_path(&self) -> String {
        format!("{}/etc/kubeadm.yml", self.rootfs())
    }

    /// A changed configuration reaches the running control plane (kubeadm's documented reconfiguration):
    /// the stored cluster configuration is replaced, so that masters joining later use it, and every
    /// master that has joined regenerates its static Pods, one at a time, each advertising itself.
    async fn reconfigure_control_plane(&self, first: IpAddr, config: &str) -> Result<()> {
        let qconfig = quote(&self.kubeadm_config_path());
        self.regenerate_control_plane(first, &qconfig).await?;
        let upload = format!("kubeadm init phase upload-config kubeadm --config {qconfig}");
        self.run(first, &self.with_image_path(&upload), b"").await?;
        let joined_masters = self
            .ctx
            .masters
            .iter()
            .filter(|m| **m != first)
            .filter(|m| self.known::<schema::KubeadmJoin>(&m.to_string()).is_some_and(|j| j.is_master()));
        for &member in joined_masters {
            let own = for_control_plane_member(config, member)?;
            let path = format!("{}/etc/kubeadm-control-plane.yml", self.rootfs());
            self.upload(member, &path, own.as_bytes(), 0o644).await?;
            self.regenerate_control_plane(member, &quote(&path)).await?;
        }
        Ok(())
    }

    /// kubeadm keeps an existing serving certificate, so it goes first (changed certSANs reach it), then
    /// the certificate and the static Pods are made again from the configuration at `qconfig`.
    async fn regenerate_control_plane(&self, ip: IpAddr, qconfig: &str) -> Result<()> {
        self.run(ip, "rm -f /etc/kubernetes/pki/apiserver.crt /etc/kubernetes/pki/apiserver.key", b"").await?;
        for phase in ["certs apiserver", "control-plane all"] {
            self.run(ip, &self.with_image_path(&format!("kubeadm init phase {phase} --config {qconfig}")), b"").await?;
        }
        Ok(())
    }

    /// Join credentials: those `kubeadm init` printed in this apply, else freshly minted ones.
    async fn join_info(&self, control_plane: bool) -> Result<JoinInfo> {
        let mut guard = self.join.lock().await;
        let first = self.ctx.first_master;
        let info = match guard.take() {
            Some(info) => info,
            None => {
                let out =
                    self.output(first, &self.with_image_path("kubeadm token create --print-join-command")).await?;
                parse_join(&out).ok_or_else(|| ProviderError::Unexpected {
                    host: first,
                    what: "`kubeadm token create`".into(),
                    message: "it printed no join command".into(),
                })?
            }
        };
        let mut info = info;
        if control_plane && info.certificate_key.is_none() {
            let out =
                self.output(first, &self.with_image_path("kubeadm init phase upload-certs --upload-certs")).await?;
            info.certificate_key = Some(out.lines().last().unwrap_or_default().trim().to_string());
        }
        *guard = Some(info.clone());
        Ok(info)
    }

    /// One member's upgrade step: drained, upgraded with `upgrade` (run on the member), uncordoned.
    async fn upgrade_member(&self, ip: IpAddr, upgrade: &[String]) -> Result<()> {
        let name = quote(&self.node_name(ip).await?);
        self.kubectl(&format!("drain {name} --ignore-daemonsets --delete-emptydir-data --timeout=5m")).await?;
        for command in upgrade {
            self.run(ip, &self.with_image_path(command), b"").await?;
        }
        self.kubectl(&format!("uncordon {name}")).await.map(|_| ())
    }

    /// `kubeadm ARGS` holding the host's kubeadm lock, so that a killed apply's kubeadm (ended within
    /// seconds by its shell's watcher, see `transport::shell::shell_loop`) and the next apply's never run at once.
    /// `-o`: the lock is flock's own, not inherited by the daemons kubeadm starts (the kubelet), which
    /// would hold it for ever.
    fn exclusive_kubeadm(&self, args: &str) -> String {
        let dir = cluster_dir(&self.ctx.cluster);
        let marker = quote(&unfinished(&self.ctx.cluster));
        let kubeadm = format!("flock -o -w 300 {} kubeadm {args}", quote(&format!("{dir}/kubeadm.lock")));
        let command = match args.split_whitespace().next() {
            Some("init" | "join") => format!(": > {marker} && {kubeadm} && rm -f {marker}"),
            Some("reset") => format!("{kubeadm} && rm -f {marker}"),
            _ => kubeadm,
        };
        self.with_image_path(&format!("mkdir -p {} && {command}", quote(&dir)))
    }

    /// Waits until no kubeadm of an earlier apply runs on `ip` (what it leaves is judged after).
    async fn await_kubeadm(&self, ip: IpAddr) -> Result<()> {
        self.run(ip, &self.exclusive_kubeadm("version >/dev/null"), b"").await.map(|_| ())
    }

    pub(super) async fn initialised(&self, ip: IpAddr, file: &str) -> Result<bool> {
        self.holds(ip, &format!("-f /etc/kubernetes/{file}")).await
    }

    /// What the cluster keeps of a member whose host is gone, removed through the first master: its node
    /// (by address, else by the name sealer recorded) and, for a master, its etcd member.
    async fn forget_member(&self, ip: IpAddr, control_plane: bool) -> Result<()> {
        if let Some(node) = self.registered_node(ip).await? {
            self.kubectl(&format!("delete node {}", quote(&node.metadata.name))).await?;
        }
        if control_plane {
            self.remove_etcd_member(ip).await?;
        }
        Ok(())
    }
}

impl Init {
    /// Writes the configuration and runs `kubeadm init` unless the host already is a control plane;
    /// returns whether it already was.
    async fn ensure(&self, cx: &Cx, ip: IpAddr, config: &str) -> Result<bool> {
        let path = cx.kubeadm_config_path();
        cx.upload(ip, &path, config.as_bytes(), 0o644).await?;
        cx.hosts_entry(ip, API_SERVER_DOMAIN, ip).await?;
        if cx.initialised(ip, "admin.conf").await? {
            return Ok(true);
        }
        let out =
            cx.output(ip, &cx.exclusive_kubeadm(&format!("init --config {} --upload-certs", quote(&path)))).await?;
        let mut join = parse_join(&out).ok_or_else(|| ProviderError::Unexpected {
            host: ip,
            what: "`kubeadm init`".into(),
            message: "it printed no join command".into(),
        })?;
        if join.certificate_key.is_none() {
            join.certificate_key =
                out.split_whitespace().skip_while(|w| *w != "--certificate-key").nth(1).map(str::to_string);
        }
        *cx.join.lock().await = Some(join);
        Ok(false)
    }
}

/// The marker of a kubeadm init or join that began and did not finish: written before kubeadm starts,
/// removed once it (or a reset) succeeded. One left behind (an apply killed whatever kubeadm had written
/// yet) makes the next init or join reset first.
fn unfinished(cluster: &str) -> String {
    format!("{}/kubeadm.unfinished", cluster_dir(cluster))
}

impl KindProvider for Init {
    type Schema = schema::KubeadmInit;

    /// Nothing recorded means no init finished here: one that an apply started and did not finish (killed,
    /// or failed part-way) left files and processes its next run refuses (`FileAvailable`, a non-empty etcd
    /// directory), so they are reset first, as sealer's own retries do. A complete one (its node registered
    /// in its own API) stays: what was lost is only its record. An API that does not answer is asked again
    /// for 30 s (it may be starting); one that never answers had no init finish behind it.
    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::KubeadmInit) -> Result<schema::KubeadmInit> {
        cx.await_kubeadm(ip).await?;
        let leftovers = format!(
            "-e {} -o -e /etc/kubernetes/admin.conf -o -e /etc/kubernetes/manifests/kube-apiserver.yaml \
             -o -e /etc/kubernetes/kubelet.conf -o -d /var/lib/etcd/member",
            quote(&unfinished(&cx.ctx.cluster))
        );
        if cx.holds(ip, &leftovers).await? {
            let mut complete = false;
            if cx.initialised(ip, "admin.conf").await? {
                for attempt in 0..10 {
                    match cx.registered_node(ip).await {
                        Ok(node) => {
                            complete = node.is_some();
                            break;
                        }
                        Err(_) if attempt < 9 => tokio::time::sleep(std::time::Duration::from_secs(3)).await,
                        Err(_) => {}
                    }
                }
            }
            if !complete {
                cx.run(ip, &cx.exclusive_kubeadm("reset -f"), b"").await?;
            }
        }
        self.ensure(cx, ip, &after.config).await?;
        Ok(after)
    }

    /// A new Kubernetes version is upgraded to with kubeadm (`upgrade plan` checks the cluster first);
    /// any other change of the configuration is a reconfiguration of every master's control plane.
    async fn update(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::KubeadmInit,
        after: schema::KubeadmInit,
    ) -> Result<schema::KubeadmInit> {
        let config = &after.config;
        if !self.ensure(cx, ip, config).await? {
            return Ok(after);
        }
        if let Some(to) = upgrade_to(&before.kubernetes_version, &after.kubernetes_version) {
            let to = quote(&to);
            cx.upgrade_member(ip, &[format!("kubeadm upgrade plan {to}"), format!("kubeadm upgrade apply {to} --yes")])
                .await?;
        }
        if differs_beyond_version(&before.config, config) {
            cx.reconfigure_control_plane(ip, config).await?;
        }
        Ok(after)
    }

    async fn delete(&self, cx: &Cx, ip: IpAddr, _before: &schema::KubeadmInit) -> Result<()> {
        cx.run(ip, &cx.exclusive_kubeadm("reset -f"), b"").await.map(|_| ())
    }

    async fn forget(&self, cx: &Cx, ip: IpAddr, _before: &schema::KubeadmInit) -> Result<()> {
        cx.forget_member(ip, true).await
    }
}

impl Init {
    /// The update of `kubeadm-init.IP` whose record was the host's join (`before`): a master promoted to
    /// first because the first is gone. It runs a control plane already; nothing is initialised, upgraded
    /// or reconfigured, and a host that is no control-plane member is refused rather than initialised as
    /// a second cluster.
    pub(super) async fn promote(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::KubeadmJoin,
        after: schema::KubeadmInit,
    ) -> Result<schema::KubeadmInit> {
        if upgrade_to(&before.kubernetes_version, &after.kubernetes_version).is_some() {
            return Err(ProviderError::Unexpected {
                host: ip,
                what: "promotion to first master".into(),
                message: "the Clusterfile also changes the Kubernetes version: apply the new first master at \
                          the cluster's version, then upgrade"
                    .into(),
            });
        }
        if !cx.initialised(ip, "admin.conf").await? {
            return Err(ProviderError::Unexpected {
                host: ip,
                what: "promotion to first master".into(),
                message: "it has no /etc/kubernetes/admin.conf: it is no control-plane member".into(),
            });
        }
        self.ensure(cx, ip, &after.config).await?;
        Ok(after)
    }
}

/// The version to upgrade to, when the member was recorded at another one (never for a record that
/// predates versions: that member is where it was installed).
fn upgrade_to(from: &str, to: &str) -> Option<String> {
    (!from.is_empty() && !to.is_empty() && from != to).then(|| to.to_string())
}

impl Join {
    /// The member's hosts entries, and its join unless it joined already.
    async fn converge(&self, cx: &Cx, ip: IpAddr, after: schema::KubeadmJoin) -> Result<schema::KubeadmJoin> {
        let joined = cx.initialised(ip, "kubelet.conf").await?;
        let control_plane = after.is_master();
        // The API's name: a master joins through the first master and is its own API once it joined; a
        // node whose image carries the balancer reaches it through its virtual IP (`balancer.IP` wrote
        // that), else through the first master.
        let balanced = !control_plane && cx.image().is_ok_and(|i| super::balancer::carried_by(&i.rootfs));
        if control_plane && joined {
            cx.hosts_entry(ip, API_SERVER_DOMAIN, ip).await?;
        } else if !balanced {
            cx.hosts_entry(ip, API_SERVER_DOMAIN, cx.ctx.first_master).await?;
        }
        cx.hosts_entry(ip, REGISTRY_DOMAIN, cx.ctx.first_master).await?;
        if joined {
            return Ok(after);
        }
        let info = cx.join_info(control_plane).await?;
        let planned = &after.config;
        let key = info.certificate_key.clone().unwrap_or_default();
        let config =
            with_join_credentials(planned, &info.token, &info.ca_hash, control_plane.then_some((ip, key.as_str())))?;
        // The credentials travel in a 0600 file, in a 0700 directory of its own, that go whatever the join
        // did; never on a command line.
        let dir = format!("{}/join", cluster_dir(&cx.ctx.cluster));
        let path = format!("{dir}/kubeadm-join.yml");
        cx.upload(ip, &path, config.as_bytes(), 0o600).await?;
        let joined = cx.run(ip, &cx.exclusive_kubeadm(&format!("join --config {}", quote(&path))), b"").await;
        cx.run(ip, &format!("rm -rf {}", quote(&dir)), b"").await?;
        joined?;
        if control_plane {
            cx.hosts_entry(ip, API_SERVER_DOMAIN, ip).await?;
        }
        Ok(after)
    }
}

/// Whether `ip` finished its join: its kubelet's configuration written and its node registered (Ready or
/// not: a cluster's network comes after every join) and, for a master, its etcd member started. An API
/// that does not answer is an error: nothing is undone on a guess.
async fn joined_completely(cx: &Cx, ip: IpAddr, control_plane: bool) -> Result<bool> {
    if !cx.initialised(ip, "kubelet.conf").await? || cx.registered_node(ip).await?.is_none() {
        return Ok(false);
    }
    Ok(!control_plane || cx.etcd_member_started(ip).await?)
}

impl KindProvider for Join {
    type Schema = schema::KubeadmJoin;

    /// A joined member at another version is upgraded (`kubeadm upgrade node`); else it converges on its
    /// attributes (its hosts entries), as a recorded member: never undone.
    async fn update(
        &self,
        cx: &Cx,
        ip: IpAddr,
        before: &schema::KubeadmJoin,
        after: schema::KubeadmJoin,
    ) -> Result<schema::KubeadmJoin> {
        let joined = cx.initialised(ip, "kubelet.conf").await?;
        if joined && upgrade_to(&before.kubernetes_version, &after.kubernetes_version).is_some() {
            cx.upgrade_member(ip, &["kubeadm upgrade node".to_string()]).await?;
            return Ok(after);
        }
        self.converge(cx, ip, after).await
    }

    /// Nothing recorded means no join finished here as far as sealer knows: one an earlier apply started
    /// and did not finish (killed, or failed part-way) may have left a registration, a master's etcd
    /// member that never started (which costs etcd its quorum), files; what it left is undone first. A
    /// complete one (registered, a master's etcd member started) stays: only its record was lost. What
    /// counts as left: every file kubeadm's join preflight refuses, and etcd's data.
    async fn create(&self, cx: &Cx, ip: IpAddr, after: schema::KubeadmJoin) -> Result<schema::KubeadmJoin> {
        let control_plane = after.is_master();
        cx.await_kubeadm(ip).await?;
        let leftovers = format!(
            "-e {} -o -e /etc/kubernetes/kubelet.conf -o -e /etc/kubernetes/bootstrap-kubelet.conf \
             -o -e /etc/kubernetes/pki/ca.crt -o -e /etc/kubernetes/manifests/kube-apiserver.yaml \
             -o -e /etc/kubernetes/manifests/etcd.yaml -o -d /var/lib/etcd/member",
            quote(&unfinished(&cx.ctx.cluster))
        );
        if cx.holds(ip, &leftovers).await? && !joined_completely(cx, ip, control_plane).await? {
            cx.run(ip, &cx.exclusive_kubeadm("reset -f"), b"").await?;
            cx.forget_member(ip, control_plane).await?;
        }
        self.converge(cx, ip, after).await
    }

    /// The node is drained and deleted through the API (when it registered at all: a join that failed
    /// part-way may not have), then reset; a master's etcd member that its reset could not remove (it never
    /// started) is removed through the first master.
    async fn delete(&self, cx: &Cx, ip: IpAddr, before: &schema::KubeadmJoin) -> Result<()> {
        let name = cx.node_name(ip).await?;
        let registered = cx.nodes().await?.items.iter().any(|n| n.metadata.name == name);
        if registered {
            let q = quote(&name);
            // The node leaves for good: its bare pods, which a drain refuses to evict without `--force`,
            // would be deleted with the node anyway (an upgrade's drain keeps that refusal).
            cx.kubectl(&format!("drain {q} --ignore-daemonsets --delete-emptydir-data --force --timeout=5m")).await?;
            cx.kubectl(&format!("delete node {q}")).await?;
        }
        cx.run(ip, &cx.exclusive_kubeadm("reset -f"), b"").await?;
        if before.is_master() {
            cx.remove_etcd_member(ip).await?;
        }
        Ok(())
    }

    async fn forget(&self, cx: &Cx, ip: IpAddr, before: &schema::KubeadmJoin) -> Result<()> {
        cx.forget_member(ip, before.is_master()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Address, Attributes, Kind, Value};

    use super::*;
    use crate::cluster::testing::*;

    const INIT_OUT: &str = "Then you can join...\n\nkubeadm join apiserver.cluster.local:6443 --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash sha256:00ff \\\n\t--control-plane --certificate-key 0a0b\n";

    #[test]
    fn join_commands_are_read_from_kubeadm_output() {
        let j = parse_join(INIT_OUT).unwrap();
        assert_eq!(j.token, "abcdef.0123456789abcdef");
        assert_eq!(j.ca_hash, "sha256:00ff");
        assert_eq!(j.certificate_key.as_deref(), Some("0a0b"));
        assert!(parse_join("no join here").is_none());
    }

    const JOIN: &str =
        "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    \
                        apiServerEndpoint: apiserver.cluster.local:6443\n";

    /// The commands as written without the image's PATH, the host's kubeadm lock and the unfinished marker
    /// (checked where init runs), and without the waits for an earlier apply's kubeadm.
    fn strip(commands: Vec<String>) -> Vec<String> {
        let lock = "mkdir -p /var/lib/sealer/c && flock -o -w 300 /var/lib/sealer/c/kubeadm.lock ";
        let (set, clear) =
            (": > /var/lib/sealer/c/kubeadm.unfinished && ", " && rm -f /var/lib/sealer/c/kubeadm.unfinished");
        commands
            .into_iter()
            .map(|c| {
                let c = c.replace("export PATH=/var/lib/sealer/c/rootfs/bin:$PATH KUBECONFIG=\"${KUBECONFIG:-/etc/kubernetes/admin.conf}\"; ", "");
                c.replace(set, "").replace(clear, "").replace(lock, "")
            })
            .filter(|c| c != "kubeadm version >/dev/null")
            .collect()
    }

    #[tokio::test]
    async fn init_then_joins_use_what_init_printed() {
        let remote = Arc::new(Scripted::default().on("test -f", "no").on("kubeadm init", INIT_OUT));
        let (p, _logs) = provider(remote.clone());
        let init = attrs([("config", Value::text("kind: InitConfiguration\n"))]);
        apply(&p, change(Kind::KubeadmInit, "10.0.0.2", M1, Action::Create, None, Some(init))).await.unwrap();
        let master = attrs([("role", Value::text("master")), ("config", Value::text(JOIN))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.3", M2, Action::Create, None, Some(master))).await.unwrap();
        let node = attrs([("role", Value::text("node")), ("config", Value::text(JOIN))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.5", N1, Action::Create, None, Some(node))).await.unwrap();
        let m1 = strip(remote.commands(M1));
        assert!(
            m1[0].starts_with("test -e /var/lib/sealer/c/kubeadm.unfinished -o -e /etc/kubernetes/admin.conf -o"),
            "{m1:?}"
        );
        // Marked unfinished before kubeadm starts, unmarked once it succeeded.
        let init = remote.commands(M1).into_iter().find(|c| c.contains("kubeadm init")).unwrap();
        assert!(
            init.contains(": > /var/lib/sealer/c/kubeadm.unfinished && flock ")
                && init.ends_with(" && rm -f /var/lib/sealer/c/kubeadm.unfinished"),
            "{init}"
        );
        assert_eq!(m1[1], "upload /var/lib/sealer/c/rootfs/etc/kubeadm.yml 644");
        assert!(m1[2].contains("10.0.0.2 apiserver.cluster.local"));
        assert_eq!(m1[4], "kubeadm init --config /var/lib/sealer/c/rootfs/etc/kubeadm.yml --upload-certs");
        assert_eq!(m1.len(), 5, "no token minted: init printed one {m1:?}");
        let path = "/var/lib/sealer/c/join/kubeadm-join.yml";
        for (host, control_plane) in [(M2, true), (N1, false)] {
            let commands = strip(remote.commands(host));
            // A master is its own API once it joined; before, it reaches the first master's.
            let tail = if control_plane { 4 } else { 3 };
            assert_eq!(
                commands[commands.len() - tail..commands.len() - tail + 3],
                [
                    format!("upload {path} 600"),
                    format!("kubeadm join --config {path}"),
                    "rm -rf /var/lib/sealer/c/join".to_string()
                ]
            );
            if control_plane {
                assert!(commands[commands.len() - 1].contains("'10.0.0.3 apiserver.cluster.local'"), "{commands:?}");
            }
            assert!(commands.iter().any(|c| c.contains("10.0.0.2 apiserver.cluster.local")), "{commands:?}");
            assert!(commands.iter().any(|c| c.contains("10.0.0.2 sea.hub")));
            assert!(!commands.iter().any(|c| c.contains("abcdef") || c.contains("0a0b")), "{commands:?}");
            let written: serde_yaml::Value =
                serde_yaml::from_str(remote.uploaded(host, path).unwrap().trim_start_matches("---\n")).unwrap();
            assert_eq!(written["discovery"]["bootstrapToken"]["token"], "abcdef.0123456789abcdef");
            assert_eq!(written["discovery"]["bootstrapToken"]["caCertHashes"][0], "sha256:00ff");
            assert_eq!(written["controlPlane"]["certificateKey"].as_str(), control_plane.then_some("0a0b"));
        }
        let logs = std::fs::read_dir(_logs.path()).unwrap();
        for log in logs {
            let log = log.unwrap().path();
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(!text.contains("abcdef.0123456789abcdef") && !text.contains("0a0b"), "{text}");
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn a_later_master_join_mints_a_token_and_uploads_certificates() {
        let remote = Arc::new(
            Scripted::default()
                .on("test -f", "no")
                .on(
                    "token create",
                    "kubeadm join apiserver.cluster.local:6443 --token t.1 --discovery-token-ca-cert-hash sha256:1",
                )
                .on("upload-certs", "[upload-certs] Using certificate key:\nkey123"),
        );
        let (p, _logs) = provider(remote.clone());
        let master = attrs([("role", Value::text("master")), ("config", Value::text(JOIN))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.3", M2, Action::Create, None, Some(master))).await.unwrap();
        assert_eq!(
            strip(remote.commands(M1)),
            ["kubeadm token create --print-join-command", "kubeadm init phase upload-certs --upload-certs"]
        );
        let written = remote.uploaded(M2, "/var/lib/sealer/c/join/kubeadm-join.yml").unwrap();
        assert!(written.contains("certificateKey: key123") && written.contains("token: t.1"), "{written}");
        // The minted token and the certificate key are in no log line.
        let mut all = String::new();
        for log in std::fs::read_dir(_logs.path()).unwrap() {
            all += &std::fs::read_to_string(log.unwrap().path()).unwrap();
        }
        assert!(all.contains("token create") && all.contains("upload-certs"), "{all}");
        assert!(!all.contains("t.1") && !all.contains("key123"), "{all}");
    }

    #[tokio::test]
    async fn a_joined_host_is_not_joined_again() {
        let remote = Arc::new(Scripted::default().on("test -f", "yes"));
        let (p, _logs) = provider(remote.clone());
        let node = attrs([("role", Value::text("node"))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.5", N1, Action::Create, None, Some(node))).await.unwrap();
        let kubeadm: Vec<String> =
            strip(remote.commands(N1)).into_iter().filter(|c| c.starts_with("kubeadm")).collect();
        assert!(kubeadm.is_empty(), "only the wait for an earlier kubeadm: {kubeadm:?}");
    }

    #[tokio::test]
    async fn an_update_of_init_regenerates_every_joined_master_in_turn() {
        let remote = Arc::new(Scripted::default().on("test -f", "yes"));
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.prior.insert(Address::new(Kind::KubeadmJoin, "10.0.0.3"), attrs([("role", Value::text("master"))]));
        let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
        let config = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n";
        let after = attrs([("config", Value::text(config))]);
        apply(&p, change(Kind::KubeadmInit, "10.0.0.2", M1, Action::Update, Some(attrs([])), Some(after)))
            .await
            .unwrap();
        let m1 = strip(remote.commands(M1));
        assert!(!m1.iter().any(|c| c.starts_with("kubeadm init --config")), "no second init: {m1:?}");
        assert_eq!(
            m1[m1.len() - 4..],
            [
                "rm -f /etc/kubernetes/pki/apiserver.crt /etc/kubernetes/pki/apiserver.key",
                "kubeadm init phase certs apiserver --config /var/lib/sealer/c/rootfs/etc/kubeadm.yml",
                "kubeadm init phase control-plane all --config /var/lib/sealer/c/rootfs/etc/kubeadm.yml",
                "kubeadm init phase upload-config kubeadm --config /var/lib/sealer/c/rootfs/etc/kubeadm.yml",
            ]
        );
        let m2 = strip(remote.commands(M2));
        assert_eq!(m2[0], "upload /var/lib/sealer/c/rootfs/etc/kubeadm-control-plane.yml 644");
        assert_eq!(m2.len(), 4, "{m2:?}");
        let own = remote.uploaded(M2, "/var/lib/sealer/c/rootfs/etc/kubeadm-control-plane.yml").unwrap();
        assert!(own.contains("advertiseAddress: 10.0.0.3"), "{own}");
    }

    /// What an init that did not finish left (an apply killed while it ran) is reset before the next init;
    /// a complete one (its node registered) is kept, and not initialised again.
    #[tokio::test]
    async fn a_half_done_init_is_reset_and_a_complete_one_kept() {
        let init = attrs([("config", Value::text("kind: InitConfiguration\n"))]);
        let remote =
            Arc::new(Scripted::default().on("test -e", "yes").on("test -f", "no").on("kubeadm init", INIT_OUT));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::KubeadmInit, "10.0.0.2", M1, Action::Create, None, Some(init.clone()))).await.unwrap();
        let m1 = strip(remote.commands(M1));
        let reset = m1.iter().position(|c| c == "kubeadm reset -f").expect("reset");
        let init_at = m1.iter().position(|c| c.starts_with("kubeadm init --config")).expect("init");
        assert!(reset < init_at, "{m1:?}");

        let nodes = r#"{"items":[{"metadata":{"name":"master-0"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}]}}]}"#;
        let remote = Arc::new(Scripted::default().on("test -", "yes").on("get nodes -o json", nodes));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::KubeadmInit, "10.0.0.2", M1, Action::Create, None, Some(init))).await.unwrap();
        let m1 = strip(remote.commands(M1));
        assert!(!m1.iter().any(|c| c.starts_with("kubeadm reset") || c.starts_with("kubeadm init")), "{m1:?}");
    }

    /// What a join that did not finish left is undone before the host joins again: its reset, and through
    /// the first master its registration and a master's etcd member that never started. A complete join
    /// (registered, Ready, its member started) is kept.
    #[tokio::test]
    async fn a_half_done_join_is_undone_and_a_complete_one_kept() {
        let nodes = r#"{"items":[{"metadata":{"name":"master-1"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.3"}],
            "conditions":[{"type":"Ready","status":"True"}]}}]}"#;
        let unstarted = "91bc3c398fb3c146, unstarted, , http://10.0.0.3:2380, , false\n";
        let remote = Arc::new(
            Scripted::default()
                .on("test -e", "yes")
                .on("test -f", "no")
                .on("get nodes -o json", nodes)
                .on("member list", unstarted)
                .on(
                    "token create",
                    "kubeadm join x --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1",
                )
                .on("upload-certs", "[upload-certs] Using certificate key:\nkey123"),
        );
        let (p, _logs) = provider(remote.clone());
        let master = attrs([("role", Value::text("master")), ("config", Value::text(JOIN))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.3", M2, Action::Create, None, Some(master.clone()))).await.unwrap();
        let m2 = strip(remote.commands(M2));
        let reset = m2.iter().position(|c| c == "kubeadm reset -f").expect("reset");
        let join = m2.iter().position(|c| c.starts_with("kubeadm join --config")).expect("join");
        assert!(reset < join, "{m2:?}");
        // The marker: among what counts as left, set before the join, cleared by the reset and the join.
        let marker = "/var/lib/sealer/c/kubeadm.unfinished";
        let raw = remote.commands(M2);
        assert!(raw.iter().any(|c| c.starts_with(&format!("test -e {marker} -o "))), "{raw:?}");
        let reset = raw.iter().find(|c| c.contains("kubeadm reset -f")).unwrap();
        assert!(reset.ends_with(&format!("kubeadm reset -f && rm -f {marker}")), "{reset}");
        let join = raw.iter().find(|c| c.contains("kubeadm join --config")).unwrap();
        assert!(
            join.contains(&format!(": > {marker} && flock ")) && join.ends_with(&format!(" && rm -f {marker}")),
            "{join}"
        );
        let m1 = strip(remote.commands(M1));
        assert!(m1.contains(&"kubectl delete node master-1".to_string()), "{m1:?}");
        assert!(m1.iter().any(|c| c.ends_with("member remove 91bc3c398fb3c146")), "{m1:?}");

        let started = "91bc3c398fb3c146, started, master-1, http://10.0.0.3:2380, http://10.0.0.3:2379, false\n";
        let remote =
            Arc::new(Scripted::default().on("test -", "yes").on("get nodes -o json", nodes).on("member list", started));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.3", M2, Action::Create, None, Some(master))).await.unwrap();
        let calls = remote.calls();
        assert!(!calls.iter().any(|c| c.contains("kubeadm reset") || c.contains("kubeadm join")), "{calls:?}");
    }

    /// A failed `kubeadm init` is shown with its own error, credentials masked, in the error and the log.
    #[tokio::test]
    async fn a_failed_init_says_why_with_its_credentials_masked() {
        let said = "[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: \
                    already exists\nkubeadm join x --token abcdef.0123456789abcdef";
        let remote = Arc::new(Scripted::default().on("test -f", "no").fail("kubeadm init", 1, said));
        let (p, logs) = provider(remote.clone());
        let init = attrs([("config", Value::text("kind: InitConfiguration\n"))]);
        let error = failure(&p, change(Kind::KubeadmInit, "10.0.0.2", M1, Action::Create, None, Some(init))).await;
        assert!(error.contains("kube-apiserver.yaml]: already exists"), "{error}");
        assert!(error.contains("--token <redacted>") && !error.contains("abcdef.0123456789abcdef"), "{error}");
        let log = std::fs::read_to_string(logs.path().join("10.0.0.2.log")).unwrap();
        assert!(log.contains("already exists") && !log.contains("abcdef.0123456789abcdef"), "{log}");
    }

    /// A master promoted to first (its join record before) is a control-plane member already: it gets the
    /// init configuration and its API name, and is never initialised; one without a control plane is
    /// refused, not initialised as a second cluster.
    #[tokio::test]
    async fn a_master_promoted_to_first_is_not_initialised_again() {
        let joined = attrs([("role", Value::text("master")), ("config", Value::text(JOIN))]);
        let init = attrs([("config", Value::text("kind: InitConfiguration\n"))]);
        // The plan moves the join's record to the init's address, and says where it was.
        let promotion = |before: Attributes, after: Attributes| {
            let mut c = (*change(Kind::KubeadmInit, "10.0.0.3", M2, Action::Update, Some(before), Some(after))).clone();
            c.previous_address = Some(Address::new(Kind::KubeadmJoin, "10.0.0.3"));
            Arc::new(c)
        };
        let remote = Arc::new(Scripted::default().on("test -f", "yes"));
        let (p, _logs) = provider(remote.clone());
        apply(&p, promotion(joined.clone(), init.clone())).await.unwrap();
        let m2 = strip(remote.commands(M2));
        assert_eq!(m2[0], "test -f /etc/kubernetes/admin.conf && echo yes || echo no");
        assert_eq!(m2[1], "upload /var/lib/sealer/c/rootfs/etc/kubeadm.yml 644");
        assert!(m2[2].contains("10.0.0.3 apiserver.cluster.local"), "{m2:?}");
        assert!(
            !remote.calls().iter().any(|c| c.contains("kubeadm ") || c.contains("kubectl")),
            "{:?}",
            remote.calls()
        );
        // A member's record is a promotion even where no `previous_address` says so: never an init's update.
        let remote = Arc::new(Scripted::default().on("test -f", "yes"));
        let (p, _logs) = provider(remote.clone());
        let unmarked =
            change(Kind::KubeadmInit, "10.0.0.3", M2, Action::Update, Some(joined.clone()), Some(init.clone()));
        apply(&p, unmarked).await.unwrap();
        assert!(!remote.calls().iter().any(|c| c.contains("kubeadm ")), "{:?}", remote.calls());

        let remote = Arc::new(Scripted::default().on("test -f", "no"));
        let (p, _logs) = provider(remote.clone());
        let error = failure(&p, promotion(joined, init)).await;
        assert!(error.contains("it is no control-plane member"), "{error}");
        assert!(!remote.calls().iter().any(|c| c.contains("kubeadm init")), "{:?}", remote.calls());
    }

    /// A member whose host left the Clusterfile and does not answer is forgotten through the first
    /// master: its node deleted, a master's etcd member removed; nothing is tried on the dead host but
    /// the one probe that found it gone. A host the Clusterfile still has is never taken for gone.
    #[tokio::test]
    async fn a_member_whose_host_is_gone_is_forgotten_through_the_first_master() {
        let nodes = r#"{"items":[{"metadata":{"name":"master-1"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.3"}]}}]}"#;
        let members = "8e9e05c52164694d, started, master-0, http://10.0.0.2:2380, http://10.0.0.2:2379, false\n\
                       91bc3c398fb3c146, started, master-1, http://10.0.0.3:2380, http://10.0.0.3:2379, false\n";
        let remote = Arc::new(Scripted::default().down(M2).on("get nodes -o json", nodes).on("member list", members));
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.hosts = vec![M1, N1];
        ctx.forgotten = [M2].into();
        let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
        let before = attrs([("role", Value::text("master"))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.3", M2, Action::Delete, Some(before.clone()), None)).await.unwrap();
        apply(&p, change(Kind::Image, "10.0.0.3", M2, Action::Delete, Some(attrs([])), None)).await.unwrap();
        assert_eq!(remote.commands(M2), ["true"], "only the one probe reaches the dead host");
        let m1 = strip(remote.commands(M1));
        assert_eq!(m1[..2], ["kubectl get nodes -o json", "kubectl delete node master-1"]);
        assert!(m1[2].ends_with("etcdctl $tls member list"), "{m1:?}");
        assert!(m1[3].ends_with("etcdctl $tls member remove 91bc3c398fb3c146"), "{m1:?}");

        // Not said gone by the plan, or still in the Clusterfile: an unreachable host is an error.
        for (hosts, forgotten) in [(vec![M1, N1], vec![]), (vec![M1, M2, N1], vec![M2])] {
            let remote = Arc::new(Scripted::default().down(M2));
            let mut ctx = context(None, logs.path());
            (ctx.hosts, ctx.forgotten) = (hosts, forgotten.into_iter().collect());
            let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
            let delete = change(Kind::KubeadmJoin, "10.0.0.3", M2, Action::Delete, Some(before.clone()), None);
            let error = failure(&p, delete).await;
            assert!(error.contains("cannot reach `10.0.0.3:22`"), "{error}");
        }
    }

    #[tokio::test]
    async fn removing_a_registered_node_drains_deletes_and_resets_it() {
        let nodes = r#"{"items":[{"metadata":{"name":"node-1"}}]}"#;
        let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes -o json", nodes));
        let (p, _logs) = provider(remote.clone());
        let before = attrs([("role", Value::text("node"))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.5", N1, Action::Delete, Some(before.clone()), None)).await.unwrap();
        assert_eq!(
            strip(remote.commands(M1)),
            [
                "kubectl get nodes -o json",
                "kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data --force --timeout=5m",
                "kubectl delete node node-1"
            ]
        );
        assert_eq!(strip(remote.commands(N1)), ["hostname", "kubeadm reset -f"]);

        let remote = Arc::new(Scripted::default().on("hostname", "node-1").on("get nodes -o json", r#"{"items":[]}"#));
        let (p, _logs) = provider(remote.clone());
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.5", N1, Action::Delete, Some(before), None)).await.unwrap();
        assert_eq!(strip(remote.commands(M1)), ["kubectl get nodes -o json"], "never registered: no drain");
    }

    fn versioned(config: &str, version: &str) -> sealer_engine::Attributes {
        attrs([
            ("config", Value::text(config.replace("VERSION", version))),
            ("kubernetes_version", Value::text(version)),
        ])
    }

    #[tokio::test]
    async fn a_new_version_upgrades_the_first_master_drained_without_reconfiguring_it() {
        let remote = Arc::new(Scripted::default().on("test -f", "yes").on("hostname", "master-0"));
        let (p, _logs) = provider(remote.clone());
        let config = "kind: ClusterConfiguration\nkubernetesVersion: VERSION\n";
        let (before, after) = (versioned(config, "v1.22.15"), versioned(config, "v1.23.0"));
        apply(&p, change(Kind::KubeadmInit, "10.0.0.2", M1, Action::Update, Some(before), Some(after))).await.unwrap();
        let m1 = strip(remote.commands(M1));
        assert_eq!(
            m1[3..],
            [
                "hostname",
                "kubectl drain master-0 --ignore-daemonsets --delete-emptydir-data --timeout=5m",
                "kubeadm upgrade plan v1.23.0",
                "kubeadm upgrade apply v1.23.0 --yes",
                "kubectl uncordon master-0",
            ]
        );
        assert_eq!(
            remote.uploaded(M1, "/var/lib/sealer/c/rootfs/etc/kubeadm.yml").unwrap(),
            config.replace("VERSION", "v1.23.0")
        );
    }

    #[tokio::test]
    async fn a_new_version_upgrades_a_node_with_upgrade_node_between_drain_and_uncordon() {
        let remote = Arc::new(Scripted::default().on("test -f", "yes").on("hostname", "node-1"));
        let (p, _logs) = provider(remote.clone());
        let at = |v: &str| attrs([("role", Value::text("node")), ("kubernetes_version", Value::text(v))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.5", N1, Action::Update, Some(at("v1.22.15")), Some(at("v1.23.0"))))
            .await
            .unwrap();
        assert_eq!(
            strip(remote.commands(M1)),
            ["kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data --timeout=5m", "kubectl uncordon node-1"]
        );
        assert_eq!(
            strip(remote.commands(N1)),
            ["test -f /etc/kubernetes/kubelet.conf && echo yes || echo no", "hostname", "kubeadm upgrade node"]
        );
    }

    #[tokio::test]
    async fn a_record_without_a_version_is_not_upgraded() {
        let remote = Arc::new(Scripted::default().on("test -f", "yes"));
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("role", Value::text("node")), ("kubernetes_version", Value::text("v1.22.15"))]);
        let before = attrs([("role", Value::text("node"))]);
        apply(&p, change(Kind::KubeadmJoin, "10.0.0.5", N1, Action::Update, Some(before), Some(after))).await.unwrap();
        assert!(!remote.calls().iter().any(|c| c.contains("upgrade") || c.contains("drain")), "{:?}", remote.calls());
    }
}

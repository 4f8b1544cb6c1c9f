//! The providers of every resource kind, over one SSH connection per host. Each is idempotent: when the
//! host already holds what the change asks for, it reads and returns without mutating anything.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealer_engine::{Action, Address, Attributes, Kind, Provider, ProviderFuture, ResourceChange, Value};
use tokio::sync::OnceCell;

use crate::image::store::StoredImage;
use crate::shell::quote;
use crate::transport::{ExecOutput, SshSession, SshTarget};

const REGISTRY_PID: &str = "/run/sealer-registry.pid";

/// Where a cluster lives on each host.
pub fn cluster_dir(cluster: &str) -> String {
    format!("/var/lib/sealer/{cluster}")
}

pub struct ClusterContext {
    pub cluster: String,
    pub hosts: BTreeMap<IpAddr, SshTarget>,
    pub first_master: IpAddr,
    /// Every master the Clusterfile declares, the first one included.
    pub masters: Vec<IpAddr>,
    pub image: Option<StoredImage>,
    /// Attributes recorded by earlier applies, for what this apply does not redo (node names).
    pub prior: BTreeMap<Address, Attributes>,
    pub log_dir: PathBuf,
    pub command_timeout: Duration,
    /// Deleting a `hostname` gives the host back the name it had before sealer set one.
    pub restore_hostnames: bool,
}

#[derive(Clone, Debug)]
struct JoinInfo {
    endpoint: String,
    token: String,
    ca_hash: String,
    certificate_key: Option<String>,
}

struct Inner {
    ctx: ClusterContext,
    sessions: Mutex<HashMap<IpAddr, Arc<OnceCell<Arc<SshSession>>>>>,
    results: Mutex<BTreeMap<Address, Attributes>>,
    join: tokio::sync::Mutex<Option<JoinInfo>>,
    logs: Mutex<HashMap<IpAddr, std::fs::File>>,
}

#[derive(Clone)]
pub struct ClusterProvider(Arc<Inner>);

type Result<T> = std::result::Result<T, String>;

fn text(attrs: &Attributes, key: &str) -> Option<String> {
    match attrs.get(key) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

impl ClusterProvider {
    pub fn new(ctx: ClusterContext) -> Self {
        ClusterProvider(Arc::new(Inner {
            ctx,
            sessions: Mutex::new(HashMap::new()),
            results: Mutex::new(BTreeMap::new()),
            join: tokio::sync::Mutex::new(None),
            logs: Mutex::new(HashMap::new()),
        }))
    }
}

/// Hosts a refresh reads at once.
const REFRESH_CONNECTIONS: usize = 32;

impl ClusterProvider {
    /// Reads what the hosts really hold for the resources in `state` (hostnames; labels and taints of the
    /// nodes) and writes it into `state`, so that a plan shows drift. Reads only; mutates nothing remote.
    pub async fn refresh(&self, state: &mut sealer_engine::State) -> Result<()> {
        let inner = &self.0;
        let mut tasks = tokio::task::JoinSet::new();
        // Thousands of hosts must not mean thousands of SSH handshakes at once.
        let connections = Arc::new(tokio::sync::Semaphore::new(REFRESH_CONNECTIONS));
        for (address, resource) in &state.resources {
            // A tainted resource is replaced whatever the host holds.
            if address.kind != Kind::Hostname || resource.status == sealer_engine::ResourceStatus::Tainted {
                continue;
            }
            let (Some(ip), inner, address) = (resource.host, inner.clone(), address.clone()) else { continue };
            let connections = connections.clone();
            tasks.spawn(async move {
                let _permit = connections.acquire_owned().await;
                (address, inner.run(ip, "hostname", b"").await.map(|o| o.stdout_text()))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (address, name) = joined.map_err(|e| e.to_string())?;
            let name = name.map_err(|e| format!("refresh of `{address}`: {e}"))?;
            if let Some(r) = state.resources.get_mut(&address) {
                r.attributes.insert("name".into(), Value::Text(name));
            }
        }
        let has_node_metadata = state.resources.keys().any(|a| matches!(a.kind, Kind::Label | Kind::Taint));
        let init = Address::new(Kind::KubeadmInit, inner.ctx.first_master.to_string());
        if !has_node_metadata || !state.resources.contains_key(&init) {
            return Ok(());
        }
        let json =
            inner.kubectl("get nodes -o json").await.map_err(|e| format!("refresh of node labels and taints: {e}"))?;
        let nodes: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        let by_ip: HashMap<String, &serde_json::Value> = nodes["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|n| {
                        let ip = n["status"]["addresses"].as_array()?.iter().find(|a| a["type"] == "InternalIP")?
                            ["address"]
                            .as_str()?;
                        Some((ip.to_string(), n))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for resource in state.resources.values_mut() {
            let Some(ip) = resource.host else { continue };
            let node = by_ip.get(&ip.to_string());
            match resource.address.kind {
                Kind::Label => {
                    let Some(Value::Map(recorded)) = resource.attributes.get("labels").cloned() else { continue };
                    let live = node.and_then(|n| n["metadata"]["labels"].as_object());
                    let observed: BTreeMap<String, String> = recorded
                        .keys()
                        .filter_map(|k| {
                            live.and_then(|l| l.get(k)).and_then(|v| v.as_str()).map(|v| (k.clone(), v.to_string()))
                        })
                        .collect();
                    resource.attributes.insert("labels".into(), Value::Map(observed));
                }
                Kind::Taint => {
                    let Some(Value::List(recorded)) = resource.attributes.get("taints").cloned() else { continue };
                    let live: Vec<String> = node
                        .and_then(|n| n["spec"]["taints"].as_array())
                        .map(|ts| ts.iter().map(taint_text).collect())
                        .unwrap_or_default();
                    let observed = recorded.into_iter().filter(|t| live.contains(t)).collect();
                    resource.attributes.insert("taints".into(), Value::List(observed));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Sets the hostname live and persistently.
fn set_hostname(name: &str) -> String {
    let q = quote(name);
    format!("hostname {q} && printf '%s\\n' {q} > /etc/hostname")
}

fn taint_text(t: &serde_json::Value) -> String {
    let (k, e) = (t["key"].as_str().unwrap_or_default(), t["effect"].as_str().unwrap_or_default());
    match t["value"].as_str() {
        Some(v) => format!("{k}={v}:{e}"),
        None => format!("{k}:{e}"),
    }
}

impl Inner {
    fn log(&self, ip: IpAddr, line: &str) {
        let Ok(mut logs) = self.logs.lock() else { return };
        let file = match logs.entry(ip) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let _ = std::fs::create_dir_all(&self.ctx.log_dir);
                let path = self.ctx.log_dir.join(format!("{ip}.log"));
                match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    Ok(f) => e.insert(f),
                    Err(_) => return,
                }
            }
        };
        let _ = writeln!(file, "{line}");
    }

    async fn session(&self, ip: IpAddr) -> Result<Arc<SshSession>> {
        let cell = {
            let mut sessions = self.sessions.lock().map_err(|e| e.to_string())?;
            sessions.entry(ip).or_default().clone()
        };
        let target = self.ctx.hosts.get(&ip).cloned().ok_or_else(|| format!("no ssh credentials for `{ip}`"))?;
        cell.get_or_try_init(
            || async move { SshSession::connect(target).await.map(Arc::new).map_err(|e| e.to_string()) },
        )
        .await
        .cloned()
    }

    /// Runs `command` on `ip`, logging it and its output; a non-zero exit is an error naming the host.
    async fn run(&self, ip: IpAddr, command: &str, stdin: &[u8]) -> Result<ExecOutput> {
        let session = self.session(ip).await?;
        self.log(ip, &format!("$ {command}"));
        let out = session.exec(command, stdin, self.ctx.command_timeout).await.map_err(|e| e.to_string())?;
        let (stdout, stderr) = (out.stdout_text(), out.stderr_text());
        if !stdout.is_empty() {
            self.log(ip, &stdout);
        }
        if !stderr.is_empty() {
            self.log(ip, &stderr);
        }
        self.log(ip, &format!("# exit {}", out.status));
        if out.status != 0 {
            let first = command.lines().next().unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let detail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("`{first}` on `{ip}` exited with {}: {}", out.status, detail.join(" / ")));
        }
        Ok(out)
    }

    fn rootfs(&self) -> String {
        format!("{}/rootfs", cluster_dir(&self.ctx.cluster))
    }

    /// The command prefix for the image's own tools (kubeadm, kubectl).
    fn with_image_path(&self, command: &str) -> String {
        format!("export PATH={}/bin:$PATH; {command}", quote(&self.rootfs()))
    }

    fn image(&self) -> Result<&StoredImage> {
        self.ctx.image.as_ref().ok_or_else(|| "the cluster image is not in the local store".to_string())
    }

    fn known(&self, address: &Address) -> Option<Attributes> {
        let results = self.results.lock().ok()?;
        results.get(address).cloned().or_else(|| self.ctx.prior.get(address).cloned())
    }

    async fn node_name(&self, ip: IpAddr) -> Result<String> {
        if let Some(name) = self.known(&Address::new(Kind::Hostname, ip.to_string())).and_then(|a| text(&a, "name")) {
            return Ok(name);
        }
        Ok(self.run(ip, "hostname", b"").await?.stdout_text())
    }

    async fn apply(&self, change: &ResourceChange) -> Result<Option<Attributes>> {
        let ip = change.host.ok_or_else(|| format!("`{}` has no host", change.address))?;
        if change.action == Action::Delete {
            self.delete(change, ip).await?;
            return Ok(None);
        }
        if change.action == Action::Replace {
            self.delete(change, ip).await?;
        }
        let after = change.after.clone().unwrap_or_default();
        let attrs = match change.kind {
            Kind::Host => self.host(ip, after).await?,
            Kind::Hostname => self.hostname(ip, after).await?,
            Kind::Image => self.copy_image(ip, after).await?,
            Kind::Config => self.config(ip, after).await?,
            Kind::Registry => self.registry(ip, after).await?,
            Kind::KubeadmInit => self.kubeadm_init(ip, change, after).await?,
            Kind::KubeadmJoin => self.kubeadm_join(ip, after).await?,
            Kind::Label => self.labels(ip, change, after).await?,
            Kind::Taint => self.taints(ip, change, after).await?,
            Kind::Plugin => self.plugin(ip, after).await?,
            Kind::Guest => self.guest(ip, after).await?,
        };
        if let Ok(mut results) = self.results.lock() {
            results.insert(change.address.clone(), attrs.clone());
        }
        Ok(Some(attrs))
    }

    async fn host(&self, ip: IpAddr, mut after: Attributes) -> Result<Attributes> {
        let session = self.session(ip).await?;
        let facts = "uname -m; nproc; awk '/MemTotal/ {print $2}' /proc/meminfo; \
                     (. /etc/os-release 2>/dev/null && echo \"$ID-$VERSION_ID\") || echo unknown";
        let out = self.run(ip, facts, b"").await?.stdout_text();
        let lines: Vec<&str> = out.lines().collect();
        let fact = |i: usize| lines.get(i).map(|s| s.trim().to_string()).unwrap_or_default();
        after.insert("arch".into(), Value::Text(fact(0)));
        after.insert("cpus".into(), Value::Int(fact(1).parse().unwrap_or(0)));
        after.insert("memory_kib".into(), Value::Int(fact(2).parse().unwrap_or(0)));
        after.insert("os".into(), Value::Text(fact(3)));
        after.insert("host_key".into(), Value::Text(session.host_key().to_string()));
        Ok(after)
    }

    async fn hostname(&self, ip: IpAddr, mut after: Attributes) -> Result<Attributes> {
        let current = self.run(ip, "hostname", b"").await?.stdout_text();
        if matches!(after.get("original"), None | Some(Value::Unknown)) {
            after.insert("original".into(), Value::Text(current.clone()));
        }
        match text(&after, "name") {
            Some(name) if name != current => {
                self.run(ip, &set_hostname(&name), b"").await?;
                let now = self.run(ip, "hostname", b"").await?.stdout_text();
                if now != name {
                    return Err(format!("the hostname of `{ip}` is `{now}` after setting `{name}`"));
                }
            }
            Some(_) => {}
            None => {
                after.insert("name".into(), Value::Text(current));
            }
        }
        Ok(after)
    }

    /// Copies the image rootfs, sending only the files whose content or mode differs from what the host
    /// recorded at the last copy; nothing at all when the digest already matches.
    async fn copy_image(&self, ip: IpAddr, mut after: Attributes) -> Result<Attributes> {
        let image = self.image()?;
        let dir = cluster_dir(&self.ctx.cluster);
        let qdir = quote(&dir);
        let on_host = self.run(ip, &format!("cat {qdir}/digest 2>/dev/null; true"), b"").await?.stdout_text();
        if on_host != image.config.digest {
            let old = self.run(ip, &format!("cat {qdir}/manifest 2>/dev/null; true"), b"").await?.stdout_text();
            let old: std::collections::HashSet<&str> = old.lines().collect();
            let changed: Vec<&str> =
                image.manifest.lines().filter(|l| !old.contains(l)).filter_map(|l| l.splitn(3, ' ').nth(2)).collect();
            let new_paths: std::collections::HashSet<&str> =
                image.manifest.lines().filter_map(|l| l.splitn(3, ' ').nth(2)).collect();
            let removed: Vec<String> = old
                .iter()
                .filter_map(|l| l.splitn(3, ' ').nth(2))
                .filter(|p| !new_paths.contains(p))
                .map(|p| quote(&format!("rootfs/{p}")))
                .collect();
            let archive = tar(&image.rootfs, &changed)?;
            let mut script = format!("set -e; mkdir -p {qdir}/rootfs; cd {qdir}; ");
            if !removed.is_empty() {
                script.push_str(&format!("rm -f {}; ", removed.join(" ")));
            }
            script.push_str("tar -C rootfs -xf -");
            self.run(ip, &script, &archive).await?;
            self.run(ip, &format!("cat > {qdir}/manifest"), image.manifest.as_bytes()).await?;
            self.run(ip, &format!("printf '%s' {} > {qdir}/digest", quote(&image.config.digest)), b"").await?;
        }
        after.insert("digest".into(), Value::Text(image.config.digest.clone()));
        Ok(after)
    }

    async fn config(&self, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        let path = text(&after, "path").unwrap_or_default();
        let data = text(&after, "data").unwrap_or_default();
        let target = quote(&format!("{}/{path}", self.rootfs()));
        let mut content = data.clone();
        if text(&after, "strategy").as_deref() == Some("merge") {
            let existing = self.run(ip, &format!("cat {target} 2>/dev/null; true"), b"").await?.stdout_text();
            let mut base: serde_yaml::Value = serde_yaml::from_str(&existing).unwrap_or(serde_yaml::Value::Null);
            let over: serde_yaml::Value =
                serde_yaml::from_str(&data).map_err(|e| format!("Config data of `{path}`: {e}"))?;
            if base.is_null() {
                base = over;
            } else {
                sealer_engine::kubeadm::merge(&mut base, &over);
            }
            content = serde_yaml::to_string(&base).map_err(|e| e.to_string())?;
        }
        if let Some(Value::List(process)) = after.get("process") {
            for step in process {
                content = match step.as_str() {
                    "toJson" => {
                        let v: serde_yaml::Value = serde_yaml::from_str(&content).map_err(|e| e.to_string())?;
                        serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                    }
                    "toBase64" => base64(content.as_bytes()),
                    "toSecret" => {
                        let v: BTreeMap<String, String> = serde_yaml::from_str(&content)
                            .map_err(|e| format!("toSecret needs a map of strings: {e}"))?;
                        let data: BTreeMap<String, String> =
                            v.into_iter().map(|(k, v)| (k, base64(v.as_bytes()))).collect();
                        let name = path
                            .rsplit('/')
                            .next()
                            .unwrap_or("secret")
                            .split('.')
                            .next()
                            .unwrap_or("secret")
                            .to_string();
                        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data});
                        serde_yaml::to_string(&secret).map_err(|e| e.to_string())?
                    }
                    other => return Err(format!("unknown Config process `{other}`")),
                };
            }
        }
        self.run(ip, &format!("mkdir -p \"$(dirname {target})\" && cat > {target}"), content.as_bytes()).await?;
        Ok(after)
    }

    async fn hosts_entry(&self, ip: IpAddr, name: &str, address: IpAddr) -> Result<()> {
        let line = format!("{address} {name}");
        let q = quote(&line);
        let qn = quote(name);
        self.run(ip, &format!("grep -qxF {q} /etc/hosts || {{ sed -i \"/ {qn}\\$/d\" /etc/hosts; printf '%s\\n' {q} >> /etc/hosts; }}"), b"")
            .await
            .map(|_| ())
    }

    /// Starts the image's registry (its `bin/registry`, serving the image's `registry/` directory) on the
    /// first master, unless it already runs, and waits until it answers.
    async fn registry(&self, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        let rootfs = self.rootfs();
        let binary = quote(&format!("{rootfs}/bin/registry"));
        let has_registry =
            self.run(ip, &format!("test -x {binary} && echo yes || echo no"), b"").await?.stdout_text() == "yes";
        if has_registry {
            let port = sealer_engine::kubeadm::REGISTRY_PORT;
            let config = format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {rootfs}/registry\nhttp:\n  addr: {ip}:{port}\n"
            );
            let config_path = quote(&format!("{rootfs}/etc/registry.yml"));
            self.run(
                ip,
                &format!("mkdir -p {}/registry \"$(dirname {config_path})\" && cat > {config_path}", quote(&rootfs)),
                config.as_bytes(),
            )
            .await?;
            let start = format!(
                "if ! kill -0 \"$(cat {REGISTRY_PID} 2>/dev/null)\" 2>/dev/null; then \
                   setsid {binary} serve {config_path} >/var/log/sealer-registry.log 2>&1 </dev/null & echo $! > {REGISTRY_PID}; fi; \
                 for i in $(seq 100); do bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null && exit 0; sleep 0.1; done; \
                 echo 'the registry did not answer on {ip}:{port}' >&2; exit 1"
            );
            self.run(ip, &start, b"").await?;
        }
        self.hosts_entry(ip, sealer_engine::kubeadm::REGISTRY_DOMAIN, ip).await?;
        Ok(after)
    }

    fn parse_join(output: &str) -> Option<JoinInfo> {
        let words: Vec<&str> = output.split_whitespace().filter(|w| *w != "\\").collect();
        let at = words.windows(2).position(|w| w == ["kubeadm", "join"])? + 1;
        let after =
            |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).map(|s| s.to_string());
        Some(JoinInfo {
            endpoint: words.get(at + 1)?.to_string(),
            token: after("--token")?,
            ca_hash: after("--discovery-token-ca-cert-hash")?,
            certificate_key: after("--certificate-key"),
        })
    }

    async fn kubeadm_init(&self, ip: IpAddr, change: &ResourceChange, after: Attributes) -> Result<Attributes> {
        let config = text(&after, "config").unwrap_or_default();
        let config_path = format!("{}/etc/kubeadm.yml", self.rootfs());
        let qconfig = quote(&config_path);
        self.run(ip, &format!("mkdir -p \"$(dirname {qconfig})\" && cat > {qconfig}"), config.as_bytes()).await?;
        self.hosts_entry(ip, sealer_engine::kubeadm::API_SERVER_DOMAIN, ip).await?;
        let initialised =
            self.run(ip, "test -f /etc/kubernetes/admin.conf && echo yes || echo no", b"").await?.stdout_text()
                == "yes";
        if !initialised {
            let out = self
                .run(ip, &self.with_image_path(&format!("kubeadm init --config {qconfig} --upload-certs")), b"")
                .await?;
            let text = out.stdout_text();
            let mut join =
                Self::parse_join(&text).ok_or_else(|| format!("`kubeadm init` on `{ip}` printed no join command"))?;
            if join.certificate_key.is_none() {
                join.certificate_key =
                    text.split_whitespace().skip_while(|w| *w != "--certificate-key").nth(1).map(str::to_string);
            }
            *self.join.lock().await = Some(join);
        } else if change.action == Action::Update {
            self.reconfigure_control_plane(ip, &config).await?;
        }
        Ok(after)
    }

    /// A changed configuration reaches the running control plane (kubeadm's documented reconfiguration):
    /// the stored cluster configuration is replaced, so that masters joining later use it, and every
    /// master that has joined regenerates its static Pods, one at a time, each advertising itself.
    async fn reconfigure_control_plane(&self, first: IpAddr, config: &str) -> Result<()> {
        let config_path = format!("{}/etc/kubeadm.yml", self.rootfs());
        let qconfig = quote(&config_path);
        self.regenerate_control_plane(first, &qconfig).await?;
        let upload = format!("kubeadm init phase upload-config kubeadm --config {qconfig}");
        self.run(first, &self.with_image_path(&upload), b"").await?;
        let joined_masters = self.ctx.masters.iter().filter(|m| **m != first).filter(|m| {
            self.known(&Address::new(Kind::KubeadmJoin, m.to_string()))
                .is_some_and(|a| text(&a, "role").as_deref() == Some("master"))
        });
        for &member in joined_masters {
            let own = sealer_engine::kubeadm::for_control_plane_member(config, member)?;
            let path = quote(&format!("{}/etc/kubeadm-control-plane.yml", self.rootfs()));
            self.run(member, &format!("cat > {path}"), own.as_bytes()).await?;
            self.regenerate_control_plane(member, &path).await?;
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
        if guard.is_none() {
            let out = self.run(first, &self.with_image_path("kubeadm token create --print-join-command"), b"").await?;
            *guard = Some(
                Self::parse_join(&out.stdout_text())
                    .ok_or_else(|| "`kubeadm token create` printed no join command".to_string())?,
            );
        }
        let mut info = guard.clone().ok_or_else(|| "no join information".to_string())?;
        if control_plane && info.certificate_key.is_none() {
            let out =
                self.run(first, &self.with_image_path("kubeadm init phase upload-certs --upload-certs"), b"").await?;
            let key = out.stdout_text().lines().last().unwrap_or_default().trim().to_string();
            info.certificate_key = Some(key);
            *guard = Some(info.clone());
        }
        Ok(info)
    }

    async fn kubeadm_join(&self, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        let joined =
            self.run(ip, "test -f /etc/kubernetes/kubelet.conf && echo yes || echo no", b"").await?.stdout_text()
                == "yes";
        self.hosts_entry(ip, sealer_engine::kubeadm::API_SERVER_DOMAIN, self.ctx.first_master).await?;
        self.hosts_entry(ip, sealer_engine::kubeadm::REGISTRY_DOMAIN, self.ctx.first_master).await?;
        if joined {
            return Ok(after);
        }
        let control_plane = text(&after, "role").as_deref() == Some("master");
        let info = self.join_info(control_plane).await?;
        let mut command = format!(
            "kubeadm join {} --token {} --discovery-token-ca-cert-hash {}",
            quote(&info.endpoint),
            quote(&info.token),
            quote(&info.ca_hash)
        );
        if control_plane {
            let key = info.certificate_key.clone().unwrap_or_default();
            command.push_str(&format!(
                " --control-plane --certificate-key {} --apiserver-advertise-address {}",
                quote(&key),
                ip
            ));
        }
        self.run(ip, &self.with_image_path(&command), b"").await?;
        Ok(after)
    }

    async fn kubectl(&self, args: &str) -> Result<String> {
        Ok(self.run(self.ctx.first_master, &self.with_image_path(&format!("kubectl {args}")), b"").await?.stdout_text())
    }

    async fn live_node(&self, name: &str) -> Result<serde_json::Value> {
        let json = self.kubectl(&format!("get nodes {} -o json", quote(name))).await?;
        serde_json::from_str(&json).map_err(|e| format!("kubectl printed invalid JSON: {e}"))
    }

    /// Declared labels are set; labels this resource declared before and no longer does are removed.
    async fn labels(&self, ip: IpAddr, change: &ResourceChange, after: Attributes) -> Result<Attributes> {
        let name = self.node_name(ip).await?;
        let live = self.live_node(&name).await?;
        let current = live["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        let desired = match after.get("labels") {
            Some(Value::Map(m)) => m.clone(),
            _ => BTreeMap::new(),
        };
        let before = match change.before.as_ref().and_then(|b| b.get("labels")) {
            Some(Value::Map(m)) => m.clone(),
            _ => BTreeMap::new(),
        };
        let mut args = Vec::new();
        for (k, v) in &desired {
            if current.get(k).and_then(|c| c.as_str()) != Some(v.as_str()) {
                args.push(quote(&format!("{k}={v}")));
            }
        }
        for k in before.keys().filter(|k| !desired.contains_key(*k) && current.contains_key(*k)) {
            args.push(quote(&format!("{k}-")));
        }
        if !args.is_empty() {
            self.kubectl(&format!("label node {} {} --overwrite", quote(&name), args.join(" "))).await?;
        }
        Ok(after)
    }

    async fn taints(&self, ip: IpAddr, change: &ResourceChange, after: Attributes) -> Result<Attributes> {
        let name = self.node_name(ip).await?;
        let live = self.live_node(&name).await?;
        let current: Vec<String> =
            live["spec"]["taints"].as_array().map(|ts| ts.iter().map(taint_text).collect()).unwrap_or_default();
        let list = |attrs: Option<&Attributes>, key: &str| match attrs.and_then(|a| a.get(key)) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        };
        let desired = list(Some(&after), "taints");
        let absent = list(Some(&after), "absent");
        let before = list(change.before.as_ref(), "taints");
        let key_effect = |t: &str| {
            let (kv, effect) = t.rsplit_once(':').unwrap_or((t, ""));
            format!("{}:{effect}", kv.split('=').next().unwrap_or(kv))
        };
        let mut args = Vec::new();
        for t in &desired {
            if !current.contains(t) {
                args.push(quote(t));
            }
        }
        let present: Vec<String> = current.iter().map(|t| key_effect(t)).collect();
        for t in absent.iter().chain(before.iter().filter(|t| !desired.contains(t))) {
            let ke = key_effect(t);
            if present.contains(&ke) && !desired.iter().any(|d| key_effect(d) == ke) {
                args.push(quote(&format!("{ke}-")));
            }
        }
        if !args.is_empty() {
            self.kubectl(&format!("taint node {} {} --overwrite", quote(&name), args.join(" "))).await?;
        }
        Ok(after)
    }

    fn env_exports(after: &Attributes) -> String {
        match after.get("env") {
            Some(Value::Map(env)) => env.iter().map(|(k, v)| format!("export {k}={}; ", quote(v))).collect(),
            _ => String::new(),
        }
    }

    async fn plugin(&self, ip: IpAddr, after: Attributes) -> Result<Attributes> {
        if text(&after, "runs_on").as_deref() == Some("delete") {
            return Ok(after);
        }
        if text(&after, "type").as_deref() == Some("ETCD") {
            return self.etcd_backup(ip, after).await;
        }
        self.run_plugin(ip, &after).await?;
        Ok(after)
    }

    /// ETCD plugin: a real `etcdctl snapshot save` on the first master, brought to the directory its data
    /// names on the operator's machine (default `.sealer/backups`), checksum verified.
    async fn etcd_backup(&self, ip: IpAddr, mut after: Attributes) -> Result<Attributes> {
        let dir = text(&after, "data").map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
        let dir = PathBuf::from(dir.unwrap_or_else(|| ".sealer/backups".into()));
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let name = format!("etcd-{}-{stamp}.db", self.ctx.cluster);
        let remote = format!("{}/backup/{name}", cluster_dir(&self.ctx.cluster));
        let q = quote(&remote);
        // A kubeadm cluster's etcd speaks TLS with the certificates kubeadm made; without them (the test
        // image's etcd), plain HTTP on loopback.
        let save = format!(
            "mkdir -p \"$(dirname {q})\" && pki=/etc/kubernetes/pki/etcd && if [ -f $pki/ca.crt ]; then \
             tls=\"--endpoints https://127.0.0.1:2379 --cacert $pki/ca.crt --cert $pki/healthcheck-client.crt \
             --key $pki/healthcheck-client.key\"; else tls=\"--endpoints http://127.0.0.1:2379\"; fi && \
             ETCDCTL_API=3 etcdctl $tls snapshot save {q}"
        );
        self.run(ip, &self.with_image_path(&save), b"").await?;
        let local = dir.join(&name);
        let fetched = self.download(ip, &remote, &local).await;
        self.run(ip, &format!("rm -f {q}"), b"").await?;
        let (sha256, bytes) = fetched?;
        after.insert("snapshot".into(), Value::text(local.display().to_string()));
        after.insert("sha256".into(), Value::text(sha256));
        after.insert("bytes".into(), Value::Int(i64::try_from(bytes).unwrap_or(i64::MAX)));
        Ok(after)
    }

    /// Copies a file of `ip` to `local` (written whole or not at all) and returns its SHA-256 and size,
    /// refusing it when the bytes that arrived do not have the checksum the host computed. Base64 on the
    /// wire keeps binary content out of the shell framing and the logs.
    async fn download(&self, ip: IpAddr, remote: &str, local: &Path) -> Result<(String, usize)> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let q = quote(remote);
        let expected = self.run(ip, &format!("sha256sum {q}"), b"").await?.stdout_text();
        let expected = expected.split_whitespace().next().unwrap_or_default().to_string();
        let session = self.session(ip).await?;
        self.log(ip, &format!("$ base64 -w0 {q}  # download to {}", local.display()));
        let out =
            session.exec(&format!("base64 -w0 {q}"), b"", self.ctx.command_timeout).await.map_err(|e| e.to_string())?;
        if out.status != 0 {
            return Err(format!("cannot read `{remote}` on `{ip}`: {}", out.stderr_text()));
        }
        let content = base64::engine::general_purpose::STANDARD
            .decode(out.stdout_text().trim())
            .map_err(|e| format!("`{remote}` on `{ip}` arrived damaged: {e}"))?;
        let actual = format!("{:x}", sha2::Sha256::digest(&content));
        if actual != expected {
            return Err(format!("`{remote}` from `{ip}` has SHA-256 {actual}, the host computed {expected}: not kept"));
        }
        self.log(ip, &format!("# downloaded {} bytes, sha256 {actual}", content.len()));
        let io = |e: std::io::Error| format!("cannot write `{}`: {e}", local.display());
        if let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let partial = local.with_extension("partial");
        std::fs::write(&partial, &content).map_err(io)?;
        std::fs::rename(&partial, local).map_err(io)?;
        Ok((actual, content.len()))
    }

    async fn run_plugin(&self, ip: IpAddr, after: &Attributes) -> Result<()> {
        let kind = text(after, "type").unwrap_or_default();
        let data = text(after, "data").unwrap_or_default();
        let prefix = format!("cd {} && {}", quote(&self.rootfs()), Self::env_exports(after));
        match kind.as_str() {
            "SHELL" => {
                self.run(ip, &self.with_image_path(&format!("{prefix}exec sh -s")), data.as_bytes()).await?;
            }
            "CLUSTERCHECK" => self.wait_ready().await?,
            // At a clean phase (a backup before the cluster goes), only the snapshot itself matters.
            "ETCD" => return self.etcd_backup(ip, after.clone()).await.map(|_| ()),
            other => {
                // An out-of-tree plugin describes itself; one that does not run at this phase is refused.
                let exe = quote(&format!("{}/plugins/{other}", self.rootfs()));
                let phase = text(after, "phase").unwrap_or_default();
                let described = self.run(ip, &format!("{exe} --config"), b"").await?.stdout_text();
                let config: serde_json::Value = serde_json::from_str(&described)
                    .map_err(|e| format!("plugin `{other}` on `{ip}` printed no JSON for --config: {e}"))?;
                let phases: Vec<&str> = config["phases"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                if !phases.contains(&phase.as_str()) {
                    return Err(format!("plugin `{other}` runs at {}, not at {phase}", phases.join(", ")));
                }
                let env = match after.get("env") {
                    Some(Value::Map(m)) => serde_json::json!(m),
                    _ => serde_json::json!({}),
                };
                let context = serde_json::json!({"cluster": self.ctx.cluster, "host": ip.to_string(), "phase": phase, "data": data, "env": env});
                self.run(ip, &self.with_image_path(&format!("{prefix}exec {exe}")), context.to_string().as_bytes())
                    .await?;
            }
        }
        Ok(())
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let json = self.kubectl("get nodes -o json").await?;
            let nodes: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
            let not_ready: Vec<String> = nodes["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter(|n| {
                            !n["status"]["conditions"]
                                .as_array()
                                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                        })
                        .map(|n| n["metadata"]["name"].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            if not_ready.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("nodes not Ready after 120 s: {}", not_ready.join(", ")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn guest(&self, ip: IpAddr, mut after: Attributes) -> Result<Attributes> {
        let image = self.image()?;
        let prefix = format!("cd {} && {}", quote(&self.rootfs()), Self::env_exports(&after));
        for cmd in &image.config.cmds {
            self.run(ip, &self.with_image_path(&format!("{prefix}{cmd}")), b"").await?;
        }
        after.insert("cmds".into(), Value::List(image.config.cmds.clone()));
        Ok(after)
    }

    async fn delete(&self, change: &ResourceChange, ip: IpAddr) -> Result<()> {
        let before = change.before.clone().unwrap_or_default();
        match change.kind {
            Kind::Hostname if self.ctx.restore_hostnames => match text(&before, "original") {
                Some(original) if !original.is_empty() => self.run(ip, &set_hostname(&original), b"").await.map(|_| ()),
                _ => Ok(()),
            },
            Kind::Plugin if text(&before, "runs_on").as_deref() == Some("delete") => self.run_plugin(ip, &before).await,
            Kind::KubeadmJoin => {
                let name = self.node_name(ip).await?;
                let q = quote(&name);
                // A join that failed part-way (a tainted one being replaced) may never have registered.
                let nodes: serde_json::Value = serde_json::from_str(&self.kubectl("get nodes -o json").await?)
                    .map_err(|e| format!("kubectl printed invalid JSON: {e}"))?;
                let registered = nodes["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|n| n["metadata"]["name"].as_str() == Some(name.as_str())));
                if registered {
                    self.kubectl(&format!("drain {q} --ignore-daemonsets --delete-emptydir-data")).await?;
                    self.kubectl(&format!("delete node {q}")).await?;
                }
                self.run(ip, &self.with_image_path("kubeadm reset -f"), b"").await.map(|_| ())
            }
            Kind::KubeadmInit => self.run(ip, &self.with_image_path("kubeadm reset -f"), b"").await.map(|_| ()),
            Kind::Image => {
                let dir = quote(&cluster_dir(&self.ctx.cluster));
                let names = [sealer_engine::kubeadm::REGISTRY_DOMAIN, sealer_engine::kubeadm::API_SERVER_DOMAIN];
                let edits: Vec<String> =
                    names.iter().map(|n| format!("-e {}", quote(&format!("/ {}$/d", n.replace('.', "\\."))))).collect();
                self.run(ip, &format!("rm -rf {dir} && sed -i {} /etc/hosts", edits.join(" ")), b"").await.map(|_| ())
            }
            Kind::Registry => self
                .run(
                    ip,
                    &format!("kill \"$(cat {REGISTRY_PID} 2>/dev/null)\" 2>/dev/null; rm -f {REGISTRY_PID}; true"),
                    b"",
                )
                .await
                .map(|_| ()),
            // Labels and taints go with their node; hosts, hostnames, configs and guests leave nothing
            // that outlives the rootfs.
            _ => Ok(()),
        }
    }
}

/// The ConfigMap in `kube-system` that keeps a copy of the cluster's state (without secrets: the state
/// never holds any) so that a lost workstation can recover it with `sealer state pull --from-cluster`.
pub const STATE_CONFIGMAP: &str = "sealer-state";
const STATE_KEY: &str = "state.json";

impl ClusterProvider {
    /// Writes `state_json` into the state ConfigMap, through kubectl on the first master.
    pub async fn publish_state(&self, state_json: &str) -> Result<()> {
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
        let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let command = "f=$(mktemp) && cat > \"$f\" && kubectl apply -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc";
        self.0.run(self.0.ctx.first_master, &self.0.with_image_path(command), &body).await.map(|_| ())
    }

    /// The state copy kept in the cluster, read through kubectl on the first master.
    pub async fn published_state(&self) -> Result<String> {
        let json = self.0.kubectl(&format!("get configmap {STATE_CONFIGMAP} -n kube-system -o json")).await?;
        let configmap: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| format!("kubectl printed invalid JSON: {e}"))?;
        configmap["data"][STATE_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("ConfigMap kube-system/{STATE_CONFIGMAP} has no `{STATE_KEY}`"))
    }
}

impl Provider for ClusterProvider {
    fn apply(&self, change: Arc<ResourceChange>) -> ProviderFuture {
        let inner = self.0.clone();
        Box::pin(async move { inner.apply(&change).await })
    }
}

/// The listed files of `root` as a tar stream (the system tar keeps modes and is fast).
fn tar(root: &std::path::Path, files: &[&str]) -> Result<Vec<u8>> {
    let mut child = std::process::Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["--null", "-cf", "-", "-T", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let list: Vec<u8> = files.iter().flat_map(|f| f.bytes().chain(std::iter::once(0))).collect();
    let mut stdin = child.stdin.take().ok_or("tar has no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&list));
    let out = child.wait_with_output().map_err(|e| format!("tar failed: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!("tar failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn join_commands_are_read_from_kubeadm_output() {
        let out = "Then you can join...\n\nkubeadm join apiserver.cluster.local:6443 --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash sha256:00ff \\\n\t--control-plane --certificate-key 0a0b\n";
        let j = Inner::parse_join(out).unwrap();
        assert_eq!(j.endpoint, "apiserver.cluster.local:6443");
        assert_eq!(j.token, "abcdef.0123456789abcdef");
        assert_eq!(j.ca_hash, "sha256:00ff");
        assert_eq!(j.certificate_key.as_deref(), Some("0a0b"));
    }
}

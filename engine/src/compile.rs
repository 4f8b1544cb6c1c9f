//! Clusterfile → resource DAG, in named steps (hosts, plugins by phase, images, the control plane,
//! joins, node metadata, guest), each adding its resources and the edges to what must come first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::clusterfile::{Clusterfile, Host, KubeadmDocument, Phase, Plugin, PluginType, Role};
use crate::error::GraphError;
use crate::graph::{GraphBuilder, ResourceGraph};
use crate::kubeadm;
use crate::resource::{Address, Kind, Resource};
use crate::schema::{self, ConfigData, Known, Schema, Secret};

/// What the local image store knows of the cluster image at plan time (nothing when it is not there yet).
#[derive(Clone, Debug, Default)]
pub struct ImageFacts {
    /// The documents of the image's `etc/kubeadm.yml`, a layer of the merged kubeadm configuration.
    pub kubeadm: Vec<KubeadmDocument>,
    /// The image's digest (its files and configuration): a rebuilt image under the same name is a change
    /// of `image.*`, and its CMDs run again.
    pub digest: Option<String>,
    /// The image's ENV: the defaults its templates are rendered with, under each host's env.
    pub env: BTreeMap<String, String>,
    /// The image's `*.tmpl` files (path in the rootfs, text), rendered with each host's env.
    pub templates: Vec<(String, String)>,
    /// The digests of the application images (`spec.apps`) the store has: a rebuilt application runs again.
    pub apps: BTreeMap<String, String>,
    /// The registries the cluster image and the applications collected container images from.
    pub registries: std::collections::BTreeSet<String>,
    /// The port of the image's registry, when its configuration moves it from 5000.
    pub registry_port: Option<u16>,
    /// The login of the image's registry (its password stays in the image).
    pub registry_user: Option<String>,
    /// The image has executables that may be shell-operator hooks (`hooks/`, `plugins/`, `plugin/`).
    pub hooks: bool,
    /// The image carries the node-local API balancer (`bin/lvscare`): every node gets a `balancer.IP`.
    pub balancer: bool,
}

struct Compiler<'a> {
    cf: &'a Clusterfile,
    /// The cluster image's own kubeadm documents, merged under the Clusterfile's.
    image_kubeadm: &'a [KubeadmDocument],
    /// The image's digest, `Unknown` when the store does not have it.
    digest: Known<String>,
    templates: &'a [(String, String)],
    image_env: &'a BTreeMap<String, String>,
    apps: &'a BTreeMap<String, String>,
    /// Registries every host's container runtime pulls through the cluster's registry.
    mirrors: Vec<String>,
    registry_port: u16,
    registry_user: Option<String>,
    b: GraphBuilder,
    /// Plugin resources by phase and host, for wiring them to their place in the install.
    plugins: HashMap<(Phase, IpAddr), Vec<Address>>,
    /// The resource after which a host is a member of the cluster: `kubeadm-init` or its `kubeadm-join`.
    membership: HashMap<IpAddr, Address>,
}

fn address(kind: Kind, ip: IpAddr) -> Address {
    Address::new(kind, ip.to_string())
}

/// `image`: what the local store knows of the cluster image (see [`ImageFacts`]).
pub fn compile(cf: &Clusterfile, image: &ImageFacts) -> Result<ResourceGraph, GraphError> {
    let mut c = Compiler {
        cf,
        image_kubeadm: &image.kubeadm,
        digest: image.digest.clone().into(),
        templates: &image.templates,
        image_env: &image.env,
        apps: &image.apps,
        mirrors: kubeadm::MIRRORED_REGISTRIES
            .iter()
            .map(|r| r.to_string())
            .chain(image.registries.iter().filter(|r| kubeadm::is_registry_name(r)).cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        registry_port: image.registry_port.unwrap_or(kubeadm::REGISTRY_PORT),
        registry_user: image.registry_user.clone(),
        b: GraphBuilder::default(),
        plugins: HashMap::new(),
        membership: HashMap::new(),
    };
    let Some(first) = cf.cluster.first_master().map(|h| h.ip) else {
        // Validation guarantees a master; an empty cluster compiles to an empty graph.
        return c.b.finish();
    };
    c.hosts()?;
    c.plugin_resources()?;
    c.hostnames_images_configs()?;
    c.registry_and_init(first)?;
    if image.balancer {
        c.balancers()?;
    }
    c.joins(first)?;
    c.node_metadata()?;
    c.guest(first)?;
    if image.hooks {
        c.hooks(first)?;
    }
    c.apps(first)?;
    c.plugin_edges(first)?;
    c.b.finish()
}

impl Compiler<'_> {
    /// Adds the resource `S` at `key` on `host`.
    fn add<S: Schema>(&mut self, key: String, host: IpAddr, attributes: &S) -> Result<Address, GraphError> {
        let address = Address::new(S::KIND, key);
        self.b.add(Resource { address: address.clone(), host: Some(host), attributes: attributes.to_attributes() })?;
        Ok(address)
    }

    fn plugins_at(&self, phase: Phase, ip: IpAddr) -> Vec<Address> {
        self.plugins.get(&(phase, ip)).cloned().unwrap_or_default()
    }

    fn depends_all(&mut self, dependent: &Address, deps: &[Address]) -> Result<(), GraphError> {
        deps.iter().try_for_each(|d| self.b.depends(dependent, d))
    }

    fn hosts(&mut self) -> Result<(), GraphError> {
        for host in &self.cf.cluster.hosts {
            self.add(host.ip.to_string(), host.ip, &host_schema(host))?;
        }
        Ok(())
    }

    fn plugin_resources(&mut self) -> Result<(), GraphError> {
        let hosts: HashMap<IpAddr, &Host> = self.cf.cluster.hosts.iter().map(|h| (h.ip, h)).collect();
        for plugin in &self.cf.plugins {
            for &phase in &plugin.phases {
                // The first master initialises the cluster: it never joins.
                let joining = |ip: &&IpAddr| {
                    !matches!(phase, Phase::PreJoin | Phase::PostJoin)
                        || Some(**ip) != self.cf.cluster.first_master().map(|h| h.ip)
                };
                for ip in plugin.hosts.iter().filter(joining) {
                    let env = hosts.get(ip).map(|h| h.env.clone()).unwrap_or_default();
                    let key = format!("{}.{}.{}", plugin.name, phase.as_str(), ip);
                    let a = self.add(key, *ip, &plugin_schema(plugin, phase, env))?;
                    self.b.depends(&a, &address(Kind::Host, *ip))?;
                    self.plugins.entry((phase, *ip)).or_default().push(a);
                }
            }
        }
        Ok(())
    }

    fn hostnames_images_configs(&mut self) -> Result<(), GraphError> {
        let cf = self.cf;
        for host in &cf.cluster.hosts {
            let ip = host.ip;
            let name = cf.hostnames.get(&ip).cloned().into();
            let hostname = self.add(ip.to_string(), ip, &schema::Hostname { name, original: Known::Unknown })?;
            self.b.depends(&hostname, &address(Kind::Host, ip))?;
            let originally = self.plugins_at(Phase::Originally, ip);
            self.depends_all(&hostname, &originally)?;
            // Each template rendered with this host's env over the image's ENV, written beside it
            // without `.tmpl`: a change of either shows as the files it changes.
            let mut env = self.image_env.clone();
            env.extend(host.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let rendered: BTreeMap<String, String> = self
                .templates
                .iter()
                .map(|(path, text)| {
                    (path.strip_suffix(".tmpl").unwrap_or(path).to_string(), crate::template::render(text, &env))
                })
                .collect();
            let a = schema::Image {
                image: cf.cluster.image.clone(),
                digest: self.digest.clone(),
                mirrors: self.mirrors.clone(),
                mirror_endpoint: format!("http://{}:{}", kubeadm::REGISTRY_DOMAIN, self.registry_port),
                templates: (!rendered.is_empty()).then_some(rendered),
            };
            let image = self.add(ip.to_string(), ip, &a)?;
            self.b.depends(&image, &hostname)?;
            for config in &cf.configs {
                // A toSecret document's data is a secret: in its place, a keyed digest that shows a change.
                let secret = config.is_secret();
                let attributes = schema::Config {
                    name: config.name.clone(),
                    path: config.path.clone(),
                    strategy: config.strategy.as_str().to_string(),
                    process: config.process.iter().map(|p| p.as_str().to_string()).collect(),
                    data: if secret { ConfigData::Secret } else { ConfigData::Text(config.data.clone()) },
                    image_digest: self.digest.clone(),
                    data_digest: secret.then(|| config.secret_digest.clone().into()),
                };
                let a = self.add(format!("{}.{}", config.name, ip), ip, &attributes)?;
                self.b.depends(&a, &image)?;
            }
        }
        Ok(())
    }

    /// What must be on a host before it takes part in the cluster: its rootfs with the Config documents
    /// applied, and its PreInstall plugins.
    fn prepared(&self, ip: IpAddr) -> Vec<Address> {
        let mut deps = vec![address(Kind::Image, ip)];
        deps.extend(self.cf.configs.iter().map(|c| Address::new(Kind::Config, format!("{}.{}", c.name, ip))));
        deps.extend(self.plugins_at(Phase::PreInstall, ip));
        deps
    }

    fn registry_and_init(&mut self, first: IpAddr) -> Result<(), GraphError> {
        let cf = self.cf;
        let a = schema::Registry {
            domain: kubeadm::REGISTRY_DOMAIN.to_string(),
            port: i64::from(self.registry_port),
            image: cf.cluster.image.clone(),
            username: self.registry_user.clone(),
        };
        let registry = self.add(first.to_string(), first, &a)?;
        let prepared = self.prepared(first);
        self.depends_all(&registry, &prepared)?;
        let a = schema::KubeadmInit {
            kubernetes_version: kubeadm::kubernetes_version(cf, self.image_kubeadm),
            control_plane_endpoint: format!("{}:6443", kubeadm::API_SERVER_DOMAIN),
            config: kubeadm::init_config(cf, self.image_kubeadm, first),
        };
        let init = self.add(first.to_string(), first, &a)?;
        self.b.depends(&init, &registry)?;
        for host in &cf.cluster.hosts {
            let pre_init = self.plugins_at(Phase::PreInit, host.ip);
            self.depends_all(&init, &pre_init)?;
        }
        self.membership.insert(first, init);
        Ok(())
    }

    /// `balancer.IP` on every node: the virtual server and the masters it balances over (a master added or
    /// removed is an update of every node's), before the node joins through it.
    fn balancers(&mut self) -> Result<(), GraphError> {
        let cf = self.cf;
        let masters: Vec<String> =
            cf.cluster.hosts.iter().filter(|h| h.role == Role::Master).map(|h| format!("{}:6443", h.ip)).collect();
        for host in cf.cluster.hosts.iter().filter(|h| h.role == Role::Node) {
            let a = schema::Balancer {
                virtual_server: Known::Is(format!("{}:6443", kubeadm::VIRTUAL_IP)),
                real_servers: masters.clone(),
            };
            let balancer = self.add(host.ip.to_string(), host.ip, &a)?;
            self.b.depends(&balancer, &address(Kind::Image, host.ip))?;
        }
        Ok(())
    }

    /// Masters join one at a time (etcd grows by one member at a time), nodes after the last master.
    fn joins(&mut self, first: IpAddr) -> Result<(), GraphError> {
        let cf = self.cf;
        let master_join = kubeadm::join_config(cf, self.image_kubeadm);
        let worker_join = kubeadm::worker_join_config(cf, self.image_kubeadm);
        let version = kubeadm::kubernetes_version(cf, self.image_kubeadm);
        let mut last_master = address(Kind::KubeadmInit, first);
        for role in [Role::Master, Role::Node] {
            for host in cf.cluster.hosts.iter().filter(|h| h.role == role && h.ip != first) {
                let config = if role == Role::Master { &master_join } else { &worker_join };
                let a = schema::KubeadmJoin {
                    role: role.as_str().to_string(),
                    control_plane_endpoint: format!("{}:6443", kubeadm::API_SERVER_DOMAIN),
                    first_master: Some(first.to_string()),
                    kubernetes_version: version.clone(),
                    config: config.clone(),
                };
                let join = self.add(host.ip.to_string(), host.ip, &a)?;
                self.b.depends(&join, &last_master)?;
                let mut deps = self.prepared(host.ip);
                deps.extend(self.plugins_at(Phase::PreJoin, host.ip));
                // A node reaches the API through its balancer.
                let balancer = address(Kind::Balancer, host.ip);
                if self.b.contains(&balancer) {
                    deps.push(balancer);
                }
                self.depends_all(&join, &deps)?;
                if role == Role::Master {
                    last_master = join.clone();
                }
                self.membership.insert(host.ip, join);
            }
        }
        Ok(())
    }

    fn node_metadata(&mut self) -> Result<(), GraphError> {
        let cf = self.cf;
        for (ip, labels) in &cf.labels {
            let member = self.membership[ip].clone();
            let a = self.add(ip.to_string(), *ip, &schema::Label { labels: labels.clone() })?;
            self.b.depends(&a, &member)?;
        }
        for (ip, taints) in &cf.taints {
            let member = self.membership[ip].clone();
            let a = schema::Taint {
                taints: taints.present.iter().map(ToString::to_string).collect(),
                absent: (!taints.absent.is_empty()).then(|| taints.absent.iter().map(ToString::to_string).collect()),
            };
            let a = self.add(ip.to_string(), *ip, &a)?;
            self.b.depends(&a, &member)?;
        }
        Ok(())
    }

    /// Everything that makes the cluster complete: every member and its labels and taints.
    fn cluster_complete(&self) -> Vec<Address> {
        let mut deps: Vec<Address> = self.cf.cluster.hosts.iter().map(|h| self.membership[&h.ip].clone()).collect();
        deps.extend(self.cf.labels.keys().map(|ip| address(Kind::Label, *ip)));
        deps.extend(self.cf.taints.keys().map(|ip| address(Kind::Taint, *ip)));
        deps
    }

    fn guest(&mut self, first: IpAddr) -> Result<(), GraphError> {
        let cf = self.cf;
        let env = cf.cluster.first_master().map(|h| h.env.clone()).unwrap_or_default();
        let a = schema::Guest {
            image: cf.cluster.image.clone(),
            cmd_args: cf.cluster.cmd_args.clone(),
            cmds: Known::Unknown,
            image_digest: self.digest.clone(),
            env: (!env.is_empty()).then_some(env),
        };
        let guest = self.add(first.to_string(), first, &a)?;
        let mut deps = self.cluster_complete();
        for host in &cf.cluster.hosts {
            deps.extend(self.plugins_at(Phase::PostJoin, host.ip));
            deps.extend(self.plugins_at(Phase::PreGuest, host.ip));
        }
        self.depends_all(&guest, &deps)
    }

    /// `hooks.IP` on the first master, once the cluster is installed: the image's shell-operator hooks
    /// (`--config` answering `configVersion: v1`), whose `onStartup` ones it runs once, in order, and
    /// whose `schedule` and `kubernetes` bindings it records for `sealer reconcile`.
    fn hooks(&mut self, first: IpAddr) -> Result<(), GraphError> {
        let a = schema::Hooks { image_digest: self.digest.clone(), ..Default::default() };
        let hooks = self.add(first.to_string(), first, &a)?;
        self.b.depends(&hooks, &address(Kind::Guest, first))
    }

    /// `app.NAME` for each application, in `spec.apps` order, after the cluster image's own CMDs: its
    /// files on the masters, its container images in the cluster's registry, its CMDs on the first master.
    fn apps(&mut self, first: IpAddr) -> Result<(), GraphError> {
        let cf = self.cf;
        let env = cf.cluster.first_master().map(|h| h.env.clone()).unwrap_or_default();
        let mut previous = address(Kind::Guest, first);
        for image in &cf.cluster.apps {
            let a = schema::App {
                image: image.clone(),
                digest: self.apps.get(image).cloned().into(),
                masters: cf.cluster.hosts.iter().filter(|h| h.role == Role::Master).map(|h| h.ip.to_string()).collect(),
                first_master: Some(first.to_string()),
                cmds: Known::Unknown,
                clean_cmds: Known::Unknown,
                env: (!env.is_empty()).then(|| env.clone()),
            };
            let app = self.add(crate::clusterfile::app_name(image).to_string(), first, &a)?;
            self.b.depends(&app, &previous)?;
            previous = app;
        }
        Ok(())
    }

    /// Places each plugin resource at its phase. Clean phases are wired so that deleting in reverse
    /// order runs PreClean before the host leaves the cluster and PostClean after, before its rootfs goes.
    fn plugin_edges(&mut self, first: IpAddr) -> Result<(), GraphError> {
        let complete = self.cluster_complete();
        let guest = address(Kind::Guest, first);
        let init = address(Kind::KubeadmInit, first);
        let mut entries: Vec<((Phase, IpAddr), Vec<Address>)> =
            self.plugins.iter().map(|(k, v)| (*k, v.clone())).collect();
        entries.sort();
        for ((phase, ip), plugins) in entries {
            let member = self.membership[&ip].clone();
            let prepared = self.prepared(ip);
            for plugin in &plugins {
                let deps: Vec<Address> = match phase {
                    Phase::Originally => vec![],
                    Phase::PreInstall => vec![address(Kind::Image, ip)],
                    Phase::PreInit => prepared.clone(),
                    Phase::PreJoin => {
                        let mut d = prepared.clone();
                        d.push(init.clone());
                        d
                    }
                    Phase::PostJoin | Phase::PreClean => vec![member.clone()],
                    Phase::PreGuest => complete.clone(),
                    // After the guest, and after its own host joined: on a scale-up the guest is done
                    // long before a new host has its rootfs.
                    Phase::PostInstall => vec![guest.clone(), member.clone()],
                    Phase::PostClean => {
                        self.b.depends(&member, plugin)?;
                        prepared.clone()
                    }
                };
                let deps: Vec<Address> = deps.into_iter().filter(|d| d != plugin).collect();
                self.depends_all(plugin, &deps)?;
            }
        }
        Ok(())
    }
}

fn host_schema(host: &Host) -> schema::Host {
    let ssh = &host.ssh;
    let auth = match (&ssh.private_key, &ssh.password) {
        (Some(_), Some(_)) => "key, then password",
        (Some(_), None) => "key",
        (None, Some(_)) => "password",
        (None, None) => "agent",
    };
    // The facts (`os`, `arch`, ...) only apply can read: pinned on first contact, they never cause a
    // change by themselves.
    schema::Host {
        role: host.role.as_str().to_string(),
        ssh_user: ssh.user.clone(),
        ssh_port: i64::from(ssh.port),
        ssh_auth: auth.to_string(),
        ssh_password: ssh.password.as_ref().map(|_| Secret::Withheld),
        ssh_private_key: ssh.private_key.clone(),
        ssh_key_passphrase: ssh.key_passphrase.as_ref().map(|_| Secret::Withheld),
        ..Default::default()
    }
}

fn plugin_schema(plugin: &Plugin, phase: Phase, env: BTreeMap<String, String>) -> schema::Plugin {
    let shell = matches!(plugin.plugin_type, PluginType::Shell | PluginType::OutOfTree(_));
    // An ETCD snapshot's place on the operator's machine, checksum and size are known once it is taken.
    let etcd = plugin.plugin_type == PluginType::Etcd;
    schema::Plugin {
        r#type: plugin.plugin_type.name().to_string(),
        phase: phase.as_str().to_string(),
        runs_on: if phase.runs_on_delete() { "delete" } else { "create" }.to_string(),
        data: (!plugin.data.is_empty()).then(|| plugin.data.clone()),
        env: (shell && !env.is_empty()).then_some(env),
        snapshot: etcd.then_some(Known::Unknown),
        sha256: etcd.then_some(Known::Unknown),
        bytes: etcd.then_some(Known::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Value;

    const CLUSTER: &str = "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  image: k:v1.22.15\n  \
                           hosts:\n    - ips: [10.0.0.2, 10.0.0.3]\n      roles: [master]\n    - ips: [10.0.0.5]\n      roles: [node]\n";

    /// An image that carries the balancer gives every node a `balancer.IP` over all masters, which the
    /// node's join follows; masters get none.
    #[test]
    fn nodes_balance_the_api_over_every_master_before_they_join() {
        let cf = crate::parse("Clusterfile", CLUSTER).unwrap().clusterfile;
        let graph = compile(&cf, &ImageFacts { balancer: true, ..Default::default() }).unwrap();
        let balancer = Address::new(Kind::Balancer, "10.0.0.5");
        let attributes = &graph.get(&balancer).unwrap().attributes;
        assert_eq!(attributes["virtual_server"], Value::text("10.103.97.2:6443"));
        assert_eq!(attributes["real_servers"], Value::List(vec!["10.0.0.2:6443".into(), "10.0.0.3:6443".into()]));
        assert!(graph.depends_on(&Address::new(Kind::KubeadmJoin, "10.0.0.5")).contains(&balancer));
        assert!(graph.get(&Address::new(Kind::Balancer, "10.0.0.3")).is_none(), "a master is its own API");
        let without = compile(&cf, &ImageFacts::default()).unwrap();
        assert!(without.get(&balancer).is_none(), "an image without the balancer gives none");
    }

    /// An image's templates render with its ENV as defaults, under each host's env: an ENV-only rebuild
    /// changes the files it renders.
    #[test]
    fn templates_render_with_the_image_env_under_the_host_env() {
        let text = format!("{CLUSTER}  env: [\"dir=/cluster\"]\n");
        let cf = crate::parse("Clusterfile", &text).unwrap().clusterfile;
        let rendered = |env: &[(&str, &str)]| {
            let facts = ImageFacts {
                templates: vec![("etc/a.conf.tmpl".to_string(), "v={{ .version }} d={{ .dir }}".to_string())],
                env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            };
            let graph = compile(&cf, &facts).unwrap();
            graph.get(&Address::new(Kind::Image, "10.0.0.5")).unwrap().attributes["templates"].clone()
        };
        let one = rendered(&[("version", "1"), ("dir", "/image")]);
        assert_eq!(one, Value::Map(BTreeMap::from([("etc/a.conf".to_string(), "v=1 d=/cluster".to_string())])));
        assert_ne!(one, rendered(&[("version", "2"), ("dir", "/image")]), "an ENV change is a change of the file");
    }

    /// Applications come after the image's own CMDs, in `spec.apps` order, named by their repository;
    /// every host mirrors the default registries and those the images collected from.
    #[test]
    fn applications_follow_the_guest_in_order_and_hosts_mirror_every_registry() {
        let text = format!("{CLUSTER}  apps: [reg.io/team/redis:5.0, \"mysql-cluster:8.0\"]\n");
        let cf = crate::parse("Clusterfile", &text).unwrap().clusterfile;
        let facts = ImageFacts {
            apps: BTreeMap::from([("reg.io/team/redis:5.0".to_string(), "sha256:r".to_string())]),
            registries: ["quay.io".to_string(), "my.reg:5000".to_string(), "bad/name".to_string()].into(),
            ..Default::default()
        };
        let graph = compile(&cf, &facts).unwrap();
        let redis = Address::new(Kind::App, "redis");
        let mysql = Address::new(Kind::App, "mysql-cluster");
        assert_eq!(graph.depends_on(&redis), [Address::new(Kind::Guest, "10.0.0.2")]);
        assert_eq!(graph.depends_on(&mysql), std::slice::from_ref(&redis));
        let app = graph.get(&redis).unwrap();
        assert_eq!(app.attributes["digest"], Value::text("sha256:r"));
        assert_eq!(app.attributes["masters"], Value::List(vec!["10.0.0.2".into(), "10.0.0.3".into()]));
        assert_eq!(graph.get(&mysql).unwrap().attributes["digest"], Value::Unknown, "not in the store yet");
        let image = graph.get(&Address::new(Kind::Image, "10.0.0.5")).unwrap();
        assert_eq!(
            image.attributes["mirrors"],
            Value::List(
                ["docker.io", "ghcr.io", "k8s.gcr.io", "my.reg:5000", "quay.io", "registry.k8s.io"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(image.attributes["mirror_endpoint"], Value::text("http://sea.hub:5000"));
    }

    #[test]
    fn spec_apps_are_image_references_one_per_name() {
        let text = format!("{CLUSTER}  apps: [\"a/redis:5\", \"b/redis:6\", \"Not An Image\"]\n");
        let err = crate::parse("Clusterfile", &text).unwrap_err().to_string();
        assert!(err.contains("spec.apps[1]") && err.contains("application `redis` is already `a/redis:5`"), "{err}");
        assert!(err.contains("spec.apps[2]") && err.contains("not a valid image reference"), "{err}");
    }
}

//! Every command line argument of `sealer`, in one place.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sealer",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("SEALER_GIT_REV"), ")"),
    about = "Deliver whole Kubernetes clusters, declaratively: plan, then apply"
)]
pub struct Cli {
    /// Where the state lives: a SQLite file (default `.sealer/state.db` under the working directory) or a
    /// shared PostgreSQL database, `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    #[arg(long, global = true, env = "SEALER_STATE", hide_env_values = true, value_name = "PATH|URL")]
    pub state: Option<String>,

    /// No colours in the output (the `NO_COLOR` environment variable does the same)
    #[arg(long, global = true)]
    pub no_color: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cluster image on hosts (a new cluster, or more hosts for one `run` made), or an application
    /// image on a cluster: writes the Clusterfile that means, then applies it like `apply -f`
    Run(RunArgs),
    /// Show what apply would change: the Clusterfile compared with the state
    Plan(PlanArgs),
    /// Check a Clusterfile: no state, no hosts (exit 0 when valid, 1 when not)
    Validate(ValidateArgs),
    /// Keep the cluster as declared: refresh and plan every interval, apply safe changes with --apply
    Reconcile(ReconcileArgs),
    /// Show a plan saved by `sealer plan --out`
    Show(ShowArgs),
    /// Print a shell completion script
    Completion(CompletionArgs),
    /// Print the manual page (roff): `sealer man > /usr/local/share/man/man1/sealer.1`
    Man,
    /// Make the cluster match the Clusterfile (or apply a saved plan)
    Apply(ApplyArgs),
    /// Tear the cluster down: every resource in the state is deleted, dependents first
    Destroy(DestroyArgs),
    /// Build a cluster image from a Kubefile into the local store
    Build(BuildArgs),
    /// List the cluster images of the local store
    Images(ImagesArgs),
    /// Push an image of the local store to its registry
    Push(RegistryArgs),
    /// Pull an image from its registry into the local store
    Pull(RegistryArgs),
    /// Write an image of the local store to an OCI archive
    Save(SaveArgs),
    /// Read the images of an OCI archive into the local store
    Load(LoadArgs),
    /// Give an image of the local store another name
    Tag(TagArgs),
    /// Remove an image from the local store
    Rmi(RmiArgs),
    /// Show an image's configuration
    Inspect(NameArg),
    /// Store credentials for a registry ($SEALER_HOME/auth.json, mode 0600)
    Login(LoginArgs),
    /// Forget the credentials of a registry
    Logout(RegistryHostArg),
    /// Print the resource graph of a Clusterfile as Graphviz DOT
    Graph(GraphArgs),
    /// Add hosts to a cluster `sealer run` made: its kept Clusterfile gets them, then it is applied
    Join(JoinArgs),
    /// Remove hosts from a cluster `sealer run` made (its kept Clusterfile loses them, then it is
    /// applied), or with --all tear the whole cluster down
    Delete(DeleteArgs),
    /// Add names to the API server's certificate on every master (recorded in the cluster's kept
    /// Clusterfile as `apiServer.certSANs`, then applied: each master's serving certificate is made again)
    Cert(CertArgs),
    /// Take over a running kubeadm cluster sealer did not install: read it, write its Clusterfile (kept as
    /// `run`'s) and import its members into the state, then apply what sealer adds (the image's files and
    /// scripts/init.sh, its registry, the nodes' balancer, the image's CMDs); Kubernetes itself is never
    /// initialised, joined or reset, and an apply that applies nothing takes the import back
    Gen(GenArgs),
    /// Check the hosts before an install (--pre: root, free ports, swap, clock, hostnames) or the
    /// cluster after it (--post: every host a Ready node); exit 1 when a check fails
    Check(CheckArgs),
    /// Run a command on the cluster's hosts (by role, node label or address), many at once; each output
    /// line is prefixed with its host, and the exit code is the worst host's (255: could not run there)
    Exec(ExecArgs),
    /// Read the state
    #[command(subcommand)]
    State(StateCommand),
    /// Release a state lock whose holder died
    ForceUnlock(ForceUnlockArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Clusterfile
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// Print the plan as JSON (the same as --format json)
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Every attribute in full (multi-line values too); by default a created or destroyed resource is one
    /// line and a multi-line value its line count and digest
    #[arg(long)]
    pub verbose: bool,
    /// How the plan is printed: `human`, `json`, or `markdown` (a summary table and the changes in
    /// collapsible blocks, for a pull-request comment)
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
    /// Save the plan to FILE, for a later `sealer apply FILE`
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Only this resource and what it depends on (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Read the live hosts before planning (`--refresh=false` plans against the state as recorded)
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub refresh: bool,
    /// Plan the deletion of everything the state holds
    #[arg(long)]
    pub destroy: bool,
    /// Only show what changed on the hosts outside of sealer (the state update a refresh would make)
    #[arg(long, conflicts_with_all = ["destroy", "targets"])]
    pub refresh_only: bool,
    /// In a Kubernetes upgrade, how many nodes are drained and upgraded at once (masters: one at a time)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_unavailable: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Human,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// Time between ticks: 30s, 5m, 1h
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub interval: String,
    /// Apply plans with changes (never one that `apply` refuses without --force); else only report drift
    #[arg(long)]
    pub apply: bool,
    /// One tick, then exit: 0 no changes (or applied), 2 drift not applied, 1 failure
    #[arg(long)]
    pub once: bool,
    /// Serve Prometheus metrics (and /healthz) here, e.g. 127.0.0.1:9115
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `git pull --ff-only` the working copy holding the Clusterfile before each tick
    #[arg(long)]
    pub git_pull: bool,
    /// Events as JSON lines
    #[arg(long)]
    pub json: bool,
    /// How many resources are applied at once
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub parallelism: usize,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// The diagnostics as JSON (file, document, field, line, column)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `sealer plan --out`
    pub planfile: PathBuf,
    /// The plan as JSON
    #[arg(long)]
    pub json: bool,
    /// Every attribute in full
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
}

/// The hosts and how to reach them, as `sealer run` and `sealer join` take them.
#[derive(Debug, Args)]
pub struct HostFlags {
    /// IPs of the masters: a list and ranges, `192.168.0.2,192.168.0.3-192.168.0.4`
    #[arg(short = 'm', long = "masters", value_name = "IPS")]
    pub masters: Option<String>,
    /// IPs of the nodes: a list and ranges
    #[arg(short = 'n', long = "nodes", value_name = "IPS")]
    pub nodes: Option<String>,
    /// The ssh password of the hosts (kept in the Clusterfile `run` writes, mode 0600)
    #[arg(short = 'p', long = "passwd", value_name = "PASSWORD")]
    pub passwd: Option<String>,
    /// The ssh private key file
    #[arg(long = "pk", value_name = "FILE")]
    pub pk: Option<String>,
    /// The passphrase of the private key
    #[arg(long = "pk-passwd", value_name = "PASSPHRASE")]
    pub pk_passwd: Option<String>,
    /// The ssh user (default root; hosts added to a cluster: the cluster's)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// The ssh port (default 22; hosts added to a cluster: the cluster's)
    #[arg(long = "port", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// The cluster (default: the one cluster in the state, else `my-cluster`)
    #[arg(long = "cluster-name", value_name = "NAME")]
    pub cluster_name: Option<String>,
}

/// How a verb applies the Clusterfile it wrote, as `apply` does.
#[derive(Debug, Args)]
pub struct VerbApply {
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// How many resources are applied at once
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub parallelism: usize,
    /// Plain progress lines even on a terminal
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    #[command(flatten)]
    pub hosts: HostFlags,
    #[command(flatten)]
    pub apply: VerbApply,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// IPs of the masters to remove
    #[arg(short = 'm', long = "masters", value_name = "IPS", conflicts_with = "all")]
    pub masters: Option<String>,
    /// IPs of the nodes to remove
    #[arg(short = 'n', long = "nodes", value_name = "IPS", conflicts_with = "all")]
    pub nodes: Option<String>,
    /// Tear the whole cluster down (as `sealer destroy`)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Apply even when the plan is dangerous (a host that no longer answers, the first master), as
    /// `apply --force`
    #[arg(long, conflicts_with = "all")]
    pub force: bool,
    /// The cluster (default: the one cluster in the state, else `my-cluster`)
    #[arg(long = "cluster-name", value_name = "NAME")]
    pub cluster_name: Option<String>,
    #[command(flatten)]
    pub apply: VerbApply,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    /// The names to add: IP addresses or DNS names, comma separated
    #[arg(long = "alt-names", value_name = "NAMES", required = true)]
    pub alt_names: String,
    /// The cluster (default: the one cluster in the state, else `my-cluster`)
    #[arg(long = "cluster-name", value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Plain progress lines even on a terminal
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// The cluster image of the running cluster's Kubernetes version
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    #[command(flatten)]
    pub hosts: HostFlags,
    #[command(flatten)]
    pub apply: VerbApply,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Clusterfile
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// Before an install: what each host must offer
    #[arg(long, conflicts_with = "post")]
    pub pre: bool,
    /// After an install: the cluster's health (the default when the state has the cluster)
    #[arg(long)]
    pub post: bool,
    /// Refuse hosts whose ssh host key is not in the state yet
    #[arg(long)]
    pub strict_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The Clusterfile
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// The cluster `sealer run` made (the Clusterfile it keeps), instead of --file
    #[arg(short = 'c', long = "cluster-name", value_name = "NAME", conflicts_with = "file")]
    pub cluster: Option<String>,
    /// Only hosts of these roles (comma-separated)
    #[arg(short = 'r', long = "roles", value_name = "ROLE", value_delimiter = ',')]
    pub roles: Vec<RoleArg>,
    /// Only hosts whose node has these labels now (KEY=VALUE, comma-separated; asks the cluster's API)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Only these hosts (comma-separated addresses of the cluster's hosts)
    #[arg(long = "ips", value_name = "IP", value_delimiter = ',')]
    pub ips: Vec<std::net::IpAddr>,
    /// How many hosts run the command at once
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Seconds the command may run on a host (at most a day)
    #[arg(long, default_value_t = 600, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Refuse hosts whose ssh host key is not in the state yet
    #[arg(long)]
    pub strict_host_keys: bool,
    /// The command, run by each host's shell (as `ssh HOST COMMAND` would)
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Master,
    Node,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses of the resources in the state
    List(ClusterArg),
    /// Show one resource of the state
    Show(StateShowArgs),
    /// Copy the state (lineage, serial, resources, history) to another backend, e.g. a shared PostgreSQL
    Migrate(StateMigrateArgs),
    /// Rebuild a lost local state from the copy every apply keeps in the cluster (ConfigMap
    /// kube-system/sealer-state), read over ssh on a master with the Clusterfile's credentials
    Pull(StatePullArgs),
}

#[derive(Debug, Args)]
pub struct StatePullArgs {
    /// A master of the cluster
    #[arg(long = "from-cluster", value_name = "IP")]
    pub from_cluster: std::net::IpAddr,
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct StateMigrateArgs {
    /// The new location: a SQLite file or `postgres://...`
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// Only this cluster (default: every cluster the state holds)
    #[arg(long)]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClusterArg {
    /// The cluster, when the state holds several
    #[arg(long)]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct StateShowArgs {
    /// Address of the resource, e.g. `hostname.192.168.0.2`
    pub address: String,
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Print the resource as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock id, as printed by the command that was refused
    pub lock_id: String,
    /// Do not ask for confirmation
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `sealer plan --out`; without it, apply plans first and asks for confirmation
    pub planfile: Option<PathBuf>,
    /// The Clusterfile (also needed with a saved plan: it holds the ssh credentials, which plans never do)
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// How many resources are applied at once
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub parallelism: usize,
    /// Only this resource and what it depends on (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Refuse hosts whose ssh host key is not in the state yet
    #[arg(long)]
    pub strict_host_keys: bool,
    /// Read the live hosts before planning (`--refresh=false` trusts the recorded state)
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub refresh: bool,
    /// Plain progress lines even on a terminal
    #[arg(long)]
    pub no_progress: bool,
    /// Apply events as JSON lines (needs --auto-approve or a saved plan)
    #[arg(long)]
    pub json: bool,
    /// Show the plan with every attribute in full
    #[arg(long)]
    pub verbose: bool,
    /// Apply even when the plan removes the first master or more than half of the masters
    #[arg(long)]
    pub force: bool,
    /// Only record in the state what changed on the hosts outside of sealer; change nothing remote
    #[arg(long, conflicts_with_all = ["planfile", "targets"])]
    pub refresh_only: bool,
    /// Hosts that leave the cluster get back the hostname they had before sealer set one
    #[arg(long)]
    pub restore_hostname: bool,
    /// In a Kubernetes upgrade, how many nodes are drained and upgraded at once (masters: one at a time)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_unavailable: u16,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cluster image (`kubernetes:v1.19.8`) or application image
    pub image: String,
    #[command(flatten)]
    pub hosts: HostFlags,
    /// Env for the image's templates, scripts and CMDs (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Arguments of the image's CMDs (repeatable)
    #[arg(long = "cmd-args", value_name = "ARG")]
    pub cmd_args: Vec<String>,
    #[command(flatten)]
    pub apply: VerbApply,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name of the image, e.g. `my/kubernetes:v1.22.15`
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tag: String,
    /// The Kubefile, relative to the working directory
    #[arg(short = 'f', long = "file", value_name = "KUBEFILE")]
    pub file: Option<PathBuf>,
    /// ARG values (repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Platforms of the container images to carry (`linux/amd64`, repeatable; default all)
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Pull container images over plain HTTP (implied for 127.0.0.1 and localhost)
    #[arg(long)]
    pub insecure: bool,
    /// The build mode: `lite`, the only one, carries every container image the rootfs names
    #[arg(short = 'm', long = "mode", value_name = "MODE", default_value = "lite")]
    pub mode: String,
    /// Fetch a registry's container images from a mirror: `docker.io=http://127.0.0.1:5000` (repeatable;
    /// over the `mirrors` of $SEALER_HOME/registries.yaml). The images keep their own names.
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
    pub registry_mirrors: Vec<String>,
    /// The build context
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print the images as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The Clusterfile (for the ssh credentials)
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "Clusterfile")]
    pub file: PathBuf,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// How many resources are deleted at once
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub parallelism: usize,
    /// Plain progress lines even on a terminal
    #[arg(long)]
    pub no_progress: bool,
    /// Give every host back the hostname it had before sealer set one
    #[arg(long)]
    pub restore_hostname: bool,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The image, e.g. `127.0.0.1:5000/sim/kubernetes:v1.22.15`
    pub name: String,
    /// Plain HTTP (implied for 127.0.0.1 and localhost)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    pub name: String,
    /// Remove it even when a cluster in the state uses it
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry, e.g. `registry.example.com:5000`
    pub registry: String,
    #[arg(short = 'u', long)]
    pub username: String,
    /// The password (visible to other users of this machine and kept in shell history: prefer
    /// --password-stdin)
    #[arg(short = 'p', long = "passwd", visible_alias = "password", conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry speaks plain HTTP (always assumed for 127.0.0.1 and localhost)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct RegistryHostArg {
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    pub name: String,
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: PathBuf,
}

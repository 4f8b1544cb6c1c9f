//! `plan`: the Clusterfile compiled and diffed against the state (read-only) and the live hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::error::{bail, Context as _};
use super::Result;
use sealer_engine::kubeadm::kubernetes_version;
use sealer_engine::{Address, Clusterfile, Diagnostic, Kind, Location, Plan, PlanOptions, Severity};
use sealer_providers::cluster::Observed;
use sealer_providers::image::oci::Pulled;
use sealer_providers::image::TransferProgress;

use super::Workspace;

#[derive(Clone, Debug, Default)]
pub struct PlanRequest {
    pub targets: Vec<Address>,
    pub destroy: bool,
    /// Read the live hosts first, so that drift shows.
    pub refresh: bool,
    /// Only what the hosts hold differs from the state; nothing of the Clusterfile.
    pub refresh_only: bool,
    /// Nodes upgraded at once in a Kubernetes upgrade.
    pub max_unavailable: usize,
}

pub struct Planned {
    pub plan: Plan,
    /// Things the user should know that do not stop the plan.
    pub warnings: Vec<Diagnostic>,
    /// The images the local store lacked and this plan pulled (see [`plan`]).
    pub pulled: Vec<Pulled>,
}

/// A Clusterfile compiled with what the image brings.
pub struct Compiled {
    pub graph: sealer_engine::ResourceGraph,
    pub warnings: Vec<Diagnostic>,
    /// Where each plugin resource comes from: the image or the Clusterfile (shown in plans).
    pub plugin_origins: BTreeMap<Address, String>,
}

/// The Clusterfile's graph against what the hosts hold: the plugins the image carries joined to the
/// Clusterfile's, label selectors resolved with the labels the cluster's nodes have (`live`), the image as
/// the local store knows it. Without the image its facts are missing — its `etc/kubeadm.yml`, digest,
/// plugins and hooks — and what they bring is absent from the graph: [`plan`] never compiles a cluster the
/// state records without them, or those resources would be planned for deletion.
pub fn compile(ws: &Workspace, cf: &Clusterfile, live: &Observed) -> Result<Compiled> {
    let (image, missing) = super::images::facts(ws, cf)?;
    let mut cf = cf.clone();
    super::hosts::digest_secret_configs(ws, &mut cf)?;
    let files = super::images::plugin_files(ws, &cf.cluster.image)?;
    let (from_image, mut warnings) = match sealer_engine::clusterfile::add_image_plugins(&mut cf, &files) {
        Ok((names, warnings)) => (names, warnings.0),
        Err(diagnostics) => {
            let shown: Vec<String> = diagnostics.0.iter().map(ToString::to_string).collect();
            bail!("the plugins of image `{}` are not valid:\n{}", cf.cluster.image, shown.join("\n"));
        }
    };
    warnings.extend(cf.select_by_labels(&live.node_labels, &kubernetes_version(&cf, &image.kubeadm)));
    if let Some(message) = missing {
        warnings.push(Diagnostic {
            severity: Severity::Warning,
            location: Location {
                file: cf.cluster.image.clone(),
                document: None,
                field: None,
                line: None,
                column: None,
            },
            message,
            value: None,
        });
    }
    let mut plugin_origins = BTreeMap::new();
    for plugin in &cf.plugins {
        let origin = if from_image.contains(&plugin.name) {
            format!("plugin from the image `{}`", cf.cluster.image)
        } else {
            "plugin from the Clusterfile".to_string()
        };
        for phase in &plugin.phases {
            for ip in &plugin.hosts {
                let key = format!("{}.{}.{}", plugin.name, phase.as_str(), ip);
                plugin_origins.insert(Address::new(Kind::Plugin, key), origin.clone());
            }
        }
    }
    Ok(Compiled { graph: sealer_engine::compile(&cf, &image)?, warnings, plugin_origins })
}

/// Marks the plan's changes on hosts that left the Clusterfile and did not answer the refresh: forgotten,
/// not undone (a dead machine), each said beside it; the plan needs `--force`.
pub fn note_gone_hosts(plan: &mut Plan, gone: &BTreeSet<IpAddr>) {
    let on_gone = |c: &sealer_engine::ResourceChange| c.host.is_some_and(|h| gone.contains(&h));
    plan.forgotten = plan.changes.iter().filter(|c| on_gone(c)).filter_map(|c| c.host).collect();
    for change in plan.changes.iter().filter(|c| on_gone(c)) {
        let host = change.host.map(|h| h.to_string()).unwrap_or_default();
        let what = match change.kind {
            Kind::KubeadmInit | Kind::KubeadmJoin => {
                "the cluster forgets its node (and a master's etcd member) through the first master"
            }
            _ => "nothing is undone there",
        };
        let note = format!("{host} does not answer: forgotten, not cleaned up on the host; {what}");
        plan.notes.entry(change.address.clone()).or_insert(note);
    }
}

/// Notes each plugin of `plan` with where it comes from.
pub fn note_plugin_origins(plan: &mut Plan, origins: &BTreeMap<Address, String>) {
    for change in plan.changes.iter().filter(|c| c.kind == Kind::Plugin) {
        if let Some(origin) = origins.get(&change.address) {
            plan.notes.entry(change.address.clone()).or_insert_with(|| origin.clone());
        }
    }
}

/// Plans without writing to the state: it is opened read-only and never created. For a cluster the state
/// records, the cluster and application images the local store lacks are pulled first, as `apply` does;
/// a pull that fails refuses the plan, naming the image and why.
/// The plan a plan file holds, checked against its checksum.
pub fn read(path: &std::path::Path) -> Result<Plan> {
    Ok(sealer_state::read_plan_file(path)?)
}

/// Saves `plan` as a plan file at `path` (checksummed, written whole or not at all; 0644: a plan holds no
/// secret), for `sealer apply PATH`.
pub fn save(plan: &Plan, path: &std::path::Path) -> Result<()> {
    let text = sealer_state::plan_file_text(path, plan)?;
    sealer_providers::private::write_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write plan file `{}`", path.display()))
}

pub fn plan(ws: &Workspace, cf: &Clusterfile, req: &PlanRequest, progress: &dyn TransferProgress) -> Result<Planned> {
    let recorded = super::recorded_state(ws, &cf.cluster.name)?;
    // What the images bring (hooks, their plugins, their kubeadm configuration) is compiled from the local
    // store; missing, those resources would be planned away from a cluster that has them. A new cluster has
    // nothing to lose (it plans with a warning, and apply pulls), and neither a destroy nor a refresh-only
    // plan is made from the graph.
    let mut pulled = Vec::new();
    if !recorded.resources.is_empty() && !req.destroy && !req.refresh_only {
        for image in std::iter::once(&cf.cluster.image).chain(&cf.cluster.apps) {
            let fetched = super::images::ensure_local(ws, image, progress).with_context(|| {
                format!(
                    "cluster `{}` is in the state and the local store lacks image `{image}`: its plan needs what \
                     the image holds",
                    cf.cluster.name
                )
            })?;
            pulled.extend(fetched);
        }
    }
    let mut state = recorded.clone();
    let live = if req.refresh || req.refresh_only {
        super::hosts::refresh(ws, cf, &mut state, false)?
    } else {
        Observed::default()
    };
    let compiled = compile(ws, cf, &live)?;
    let mut plan = if req.refresh_only {
        sealer_engine::refresh_only_plan(&recorded, &state)
    } else {
        let options =
            PlanOptions { targets: req.targets.clone(), destroy: req.destroy, max_unavailable: req.max_unavailable };
        sealer_engine::plan(&compiled.graph, &state, &options)?
    };
    super::images::note_image_changes(ws, cf, &mut plan);
    note_plugin_origins(&mut plan, &compiled.plugin_origins);
    note_gone_hosts(&mut plan, &live.gone);
    Ok(Planned { plan, warnings: compiled.warnings, pulled })
}

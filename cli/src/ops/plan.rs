//! `plan`: the Clusterfile compiled and diffed against the state (read-only) and the live hosts.

use std::collections::BTreeMap;

use anyhow::bail;
use sealer_engine::kubeadm::kubernetes_version;
use sealer_engine::{Address, Clusterfile, Diagnostic, Kind, Location, Plan, PlanOptions, Severity, State};
use sealer_providers::cluster::Observed;

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
/// the local store knows it.
pub fn compile(ws: &Workspace, cf: &Clusterfile, live: &Observed) -> anyhow::Result<Compiled> {
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

/// Notes each plugin of `plan` with where it comes from.
pub fn note_plugin_origins(plan: &mut Plan, origins: &BTreeMap<Address, String>) {
    for change in plan.changes.iter().filter(|c| c.kind == Kind::Plugin) {
        if let Some(origin) = origins.get(&change.address) {
            plan.notes.entry(change.address.clone()).or_insert_with(|| origin.clone());
        }
    }
}

/// Plans without writing anything: the state is opened read-only and never created.
pub fn plan(ws: &Workspace, cf: &Clusterfile, req: &PlanRequest) -> anyhow::Result<Planned> {
    let recorded = match ws.state.open_read_only()? {
        Some(store) => store.load(&cf.cluster.name)?,
        None => None,
    }
    .unwrap_or_else(|| State::empty(&cf.cluster.name));
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
    Ok(Planned { plan, warnings: compiled.warnings })
}

//! `plan`: the Clusterfile compiled and diffed against the state (read-only) and the live hosts.

use sealer_engine::kubeadm::kubernetes_version;
use sealer_engine::{Address, Clusterfile, Diagnostic, Location, Plan, PlanOptions, Severity, State};
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

/// The Clusterfile's graph against what the hosts hold: label selectors resolved with the labels the
/// cluster's nodes have (`live`), the image as the local store knows it. Returns the graph and warnings.
pub fn compile(
    ws: &Workspace,
    cf: &Clusterfile,
    live: &Observed,
) -> anyhow::Result<(sealer_engine::ResourceGraph, Vec<Diagnostic>)> {
    let (image, missing) = super::images::facts(ws, cf)?;
    let mut cf = cf.clone();
    super::hosts::digest_secret_configs(ws, &mut cf)?;
    let mut warnings = cf.select_by_labels(&live.node_labels, &kubernetes_version(&cf, &image.kubeadm));
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
    Ok((sealer_engine::compile(&cf, &image)?, warnings))
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
    let (graph, warnings) = compile(ws, cf, &live)?;
    let mut plan = if req.refresh_only {
        sealer_engine::refresh_only_plan(&recorded, &state)
    } else {
        let options =
            PlanOptions { targets: req.targets.clone(), destroy: req.destroy, max_unavailable: req.max_unavailable };
        sealer_engine::plan(&graph, &state, &options)?
    };
    super::images::note_image_changes(ws, cf, &mut plan);
    Ok(Planned { plan, warnings })
}

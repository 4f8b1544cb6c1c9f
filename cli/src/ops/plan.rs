//! `plan`: the Clusterfile compiled and diffed against the state (read-only) and the live hosts.

use sealer_engine::{Address, Clusterfile, Plan, PlanOptions, State};

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
    pub warnings: Vec<String>,
}

/// Plans without writing anything: the state is opened read-only and never created.
pub fn plan(ws: &Workspace, cf: &Clusterfile, req: &PlanRequest) -> anyhow::Result<Planned> {
    let (image, warning) = super::images::facts(ws, cf)?;
    let graph = sealer_engine::compile(cf, &image)?;
    let recorded = match ws.state.open_read_only()? {
        Some(store) => store.load(&cf.cluster.name)?,
        None => None,
    }
    .unwrap_or_else(|| State::empty(&cf.cluster.name));
    let mut state = recorded.clone();
    if req.refresh || req.refresh_only {
        super::hosts::refresh(ws, cf, &mut state, false)?;
    }
    let mut plan = if req.refresh_only {
        sealer_engine::refresh_only_plan(&recorded, &state)
    } else {
        let options =
            PlanOptions { targets: req.targets.clone(), destroy: req.destroy, max_unavailable: req.max_unavailable };
        sealer_engine::plan(&graph, &state, &options)?
    };
    super::images::note_image_changes(ws, cf, &mut plan);
    Ok(Planned { plan, warnings: warning.into_iter().collect() })
}

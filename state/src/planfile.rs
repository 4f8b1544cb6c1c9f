//! Saved plans (`sealer plan --out FILE`): the plan as JSON with a checksum over it, so that a plan that
//! was edited or truncated is refused instead of applied.

use std::path::Path;

use sealer_engine::Plan;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PlanFileError;

const KIND: &str = "sealer-plan";

#[derive(Serialize, Deserialize)]
struct PlanFile {
    kind: String,
    checksum: String,
    plan: Plan,
}

fn checksum(plan: &Plan) -> Result<String, serde_json::Error> {
    let bytes = serde_json::to_vec(plan)?;
    Ok(format!("sha256:{:x}", Sha256::digest(&bytes)))
}

/// The text of a plan file of `plan` (`path` names it in errors). The caller writes it whole or not at
/// all, so that a crash never leaves half a plan under the final name.
pub fn plan_file_text(path: &Path, plan: &Plan) -> Result<String, PlanFileError> {
    let display = path.display().to_string();
    let format = |e: serde_json::Error| PlanFileError::Format { path: display.clone(), message: e.to_string() };
    let file = PlanFile { kind: KIND.into(), checksum: checksum(plan).map_err(format)?, plan: plan.clone() };
    Ok(serde_json::to_string_pretty(&file).map_err(format)? + "\n")
}

pub fn read_plan_file(path: &Path) -> Result<Plan, PlanFileError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read { path: display.clone(), source })?;
    let file: PlanFile = serde_json::from_str(&text)
        .map_err(|e| PlanFileError::Format { path: display.clone(), message: e.to_string() })?;
    if file.kind != KIND {
        return Err(PlanFileError::Format { path: display, message: format!("kind is `{}`", file.kind) });
    }
    let expected =
        checksum(&file.plan).map_err(|e| PlanFileError::Format { path: display.clone(), message: e.to_string() })?;
    if expected != file.checksum {
        return Err(PlanFileError::Checksum { path: display });
    }
    Ok(file.plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let state = sealer_engine::State { lineage: Some("l".into()), serial: 3, ..sealer_engine::State::empty("c") };
        Plan::against(&state, vec![])
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plan");
        std::fs::write(&path, plan_file_text(&path, &plan()).unwrap()).unwrap();
        assert_eq!(read_plan_file(&path).unwrap(), plan());
        let text = std::fs::read_to_string(&path).unwrap().replace("\"prior_serial\": 3", "\"prior_serial\": 4");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(read_plan_file(&path), Err(PlanFileError::Checksum { .. })));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(read_plan_file(&path), Err(PlanFileError::Format { .. })));
    }
}

//! How a stored resource is laid out in a row, shared by every backend so that `state migrate` moves
//! exactly what was stored.

use sealer_engine::{Address, ResourceStatus, StateError, StoredResource};

pub(crate) fn corrupt(address: &str, e: serde_json::Error) -> StateError {
    StateError::Backend { message: format!("stored resource `{address}` cannot be read"), source: Some(Box::new(e)) }
}

/// The columns of one resource row.
pub(crate) struct ResourceRow {
    pub address: String,
    pub kind: &'static str,
    pub host: Option<String>,
    pub status: &'static str,
    pub attributes: String,
    pub depends_on: String,
}

pub(crate) fn encode(address: &Address, resource: &StoredResource) -> Result<ResourceRow, StateError> {
    let key = address.to_string();
    Ok(ResourceRow {
        attributes: serde_json::to_string(&resource.attributes).map_err(|e| corrupt(&key, e))?,
        depends_on: serde_json::to_string(&resource.depends_on).map_err(|e| corrupt(&key, e))?,
        kind: address.kind.as_str(),
        host: resource.host.map(|h| h.to_string()),
        status: match resource.status {
            ResourceStatus::Ready => "ready",
            ResourceStatus::Tainted => "tainted",
        },
        address: key,
    })
}

pub(crate) fn decode(
    address: &str,
    host: Option<&str>,
    status: &str,
    attributes: &str,
    depends_on: &str,
) -> Result<StoredResource, StateError> {
    let parsed: Address = address.parse().map_err(|e: sealer_engine::AddressError| StateError::Backend {
        message: e.to_string(),
        source: Some(Box::new(e)),
    })?;
    let status = match status {
        "ready" => ResourceStatus::Ready,
        "tainted" => ResourceStatus::Tainted,
        other => {
            return Err(StateError::Backend {
                message: format!("stored resource `{address}` has unknown status `{other}`"),
                source: None,
            })
        }
    };
    let host = match host {
        Some(h) => Some(h.parse().map_err(|_| StateError::Backend {
            message: format!("stored resource `{address}` has host `{h}`, not an IP"),
            source: None,
        })?),
        None => None,
    };
    Ok(StoredResource {
        address: parsed,
        host,
        status,
        attributes: serde_json::from_str(attributes).map_err(|e| corrupt(address, e))?,
        depends_on: serde_json::from_str(depends_on).map_err(|e| corrupt(address, e))?,
    })
}

//! Resources: what the engine plans and applies, addressed as `kind.key`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Host,
    Hostname,
    Image,
    Config,
    Registry,
    KubeadmInit,
    KubeadmJoin,
    Label,
    Taint,
    Plugin,
    Guest,
    Hooks,
    App,
    /// A node's API balancer (sealer's lvscare): `apiserver.cluster.local` is a virtual IP there, sent to
    /// the masters that answer.
    Balancer,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Host,
        Kind::Hostname,
        Kind::Image,
        Kind::Config,
        Kind::Registry,
        Kind::KubeadmInit,
        Kind::KubeadmJoin,
        Kind::Label,
        Kind::Taint,
        Kind::Plugin,
        Kind::Guest,
        Kind::Hooks,
        Kind::App,
        Kind::Balancer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Hostname => "hostname",
            Kind::Image => "image",
            Kind::Config => "config",
            Kind::Registry => "registry",
            Kind::KubeadmInit => "kubeadm-init",
            Kind::KubeadmJoin => "kubeadm-join",
            Kind::Label => "label",
            Kind::Taint => "taint",
            Kind::Plugin => "plugin",
            Kind::Guest => "guest",
            Kind::Hooks => "hooks",
            Kind::App => "app",
            Kind::Balancer => "balancer",
        }
    }

    /// Whether a change of `attribute` cannot be applied in place: the kind's schema says.
    pub fn forces_replacement(self, attribute: &str) -> bool {
        crate::schema::forces_replacement(self, attribute)
    }
}

/// `kind.key`, e.g. `hostname.192.168.0.2` or `plugin.disable-swap.PreInit.192.168.0.2`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    pub kind: Kind,
    pub key: String,
}

impl Address {
    pub fn new(kind: Kind, key: impl Into<String>) -> Self {
        Address { kind, key: key.into() }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.key)
    }
}

/// Text that is not an address.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not an address (`kind.key`)")]
    Shape(String),
    #[error("`{0}` is not a resource kind; expected one of {kinds}", kinds = Kind::ALL.map(Kind::as_str).join(", "))]
    Kind(String),
    #[error("`{0}` has no key after the kind")]
    NoKey(String),
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, key) = s.split_once('.').ok_or_else(|| AddressError::Shape(s.to_string()))?;
        let kind =
            Kind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| AddressError::Kind(kind.to_string()))?;
        if key.is_empty() {
            return Err(AddressError::NoKey(s.to_string()));
        }
        Ok(Address::new(kind, key))
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

/// One attribute value. `Sensitive` carries no value at all: a secret is never copied into a resource,
/// so it cannot reach a plan or a log. `Sealed` is the one exception, in the state only: a secret that a
/// later apply needs when the Clusterfile no longer has it (the ssh password of a host being removed),
/// encrypted with the user's state key; it is shown and compared as `Sensitive`. `Unknown` is a value only
/// apply can learn (a hostname nobody declared, an image digest): it never causes a change by itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Sensitive,
    Sealed(String),
    Unknown,
}

impl Value {
    pub fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into())
    }
}

pub type Attributes = BTreeMap<String, Value>;

/// A desired resource: where it lives and what it must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub address: Address,
    pub host: Option<IpAddr>,
    pub attributes: Attributes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_with_dots_in_the_key() {
        let a: Address = "plugin.swap.PreInit.10.0.0.2".parse().unwrap();
        assert_eq!(a.kind, Kind::Plugin);
        assert_eq!(a.key, "swap.PreInit.10.0.0.2");
        assert_eq!(a.to_string(), "plugin.swap.PreInit.10.0.0.2");
        assert!("nope.1".parse::<Address>().is_err());
        assert!("host.".parse::<Address>().is_err());
        assert!("host".parse::<Address>().is_err());
    }
}

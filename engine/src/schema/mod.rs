//! One typed schema per resource kind: its attributes as a struct, which of them force a replacement,
//! and the kind's own rules (how two values compare, what an imported record may not hold), declared once
//! in the kind's module. Compile builds the struct; a provider takes it; the engine's diff, plan and
//! state keep the generic [`Attributes`] map the struct converts to and from (the way Terraform's core
//! diffs values against one schema per resource type), so the state format is the map it always was.
//!
//! Adding an attribute to a kind is a field in its module (the attribute's name is the field's name);
//! no other file names it by a string (`architecture::no_attribute_is_named_outside_its_kind`).

mod app;
mod balancer;
mod config;
mod guest;
mod hooks;
mod host;
mod hostname;
mod image;
mod kubeadm_init;
mod kubeadm_join;
mod label;
mod plugin;
mod registry;
mod taint;

use std::collections::BTreeMap;

pub use app::App;
pub use balancer::Balancer;
pub use config::{Config, ConfigData};
pub use guest::Guest;
pub use hooks::Hooks;
pub use host::Host;
pub use hostname::Hostname;
pub use image::Image;
pub use kubeadm_init::KubeadmInit;
pub use kubeadm_join::KubeadmJoin;
pub use label::Label;
pub use plugin::Plugin;
pub use registry::Registry;
pub use taint::Taint;

use crate::resource::{Attributes, Kind, Value};

/// A kind's attributes as a struct. Implemented by [`schema!`] from the field list.
pub trait Schema: Sized {
    const KIND: Kind;
    /// The attributes' names, in declaration order.
    const ATTRIBUTES: &'static [&'static str];
    /// The attributes whose change cannot be applied in place (delete, then create).
    const REPLACING: &'static [&'static str];
    fn to_attributes(&self) -> Attributes;
    /// Reads a record or a desired resource. An attribute the map lacks reads as its default: that is how
    /// records written before the attribute existed migrate. A value of another type is an error.
    fn from_attributes(attributes: &Attributes) -> Result<Self, SchemaError>;
}

/// A kind's rules beyond its fields; each kind states which it has.
pub trait Rules: Schema {
    /// The attributes [`Rules::same_value`] compares: a plan reads the records as the kind only for these
    /// (it compares thousands of records, most of them by value).
    const COMPARED: &'static [&'static str] = &[];
    /// Whether [`Rules::complete_older`] completes anything: a plan reads only such records as the kind.
    const COMPLETES_OLDER: bool = false;
    /// Whether the desired and the recorded value of `attribute` (one of [`Rules::COMPARED`]) ask for the
    /// same.
    fn same_value(_attribute: &str, _desired: &Self, _recorded: &Self) -> bool {
        true
    }
    /// What a record from outside the workstation (the cluster's copy of the state) may not hold.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// Gives a record written before one of its attributes existed the value it was made with, where the
    /// state tells it (the first master the state records), so upgrading sealer plans no change for it.
    fn complete_older(&mut self, _first_master: &str) {}
}

/// Writes into `record` the attributes in which `changed` differs from `original` (both read from it), and
/// nothing else: the record keeps every key it had, and gains none a read or a completion did not set
/// (a refresh must show drift, not the defaults of attributes an older record lacks).
pub fn patch<S: Schema>(record: &mut Attributes, original: &S, changed: &S) {
    let (before, after) = (original.to_attributes(), changed.to_attributes());
    for (name, value) in &after {
        if before.get(name) != Some(value) {
            record.insert(name.clone(), value.clone());
        }
    }
    for name in before.keys().filter(|k| !after.contains_key(*k)) {
        record.remove(name);
    }
}

/// A value of the wrong type for its attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{kind}` attribute `{attribute}` is {found}, expected {expected}", kind = kind.as_str())]
pub struct SchemaError {
    pub kind: Kind,
    pub attribute: &'static str,
    pub expected: &'static str,
    pub found: &'static str,
}

/// What a value of another type than its attribute's was.
#[derive(Debug)]
pub struct Mismatch {
    pub expected: &'static str,
    pub found: &'static str,
}

fn found(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an integer",
        Value::Text(_) => "text",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Sensitive | Value::Sealed(_) => "a secret",
        Value::Unknown => "unknown",
    }
}

/// How one attribute's type is kept as a [`Value`].
pub trait Field: Sized {
    /// `None`: the attribute is left out of the map.
    fn to_value(&self) -> Option<Value>;
    /// `None`: the map lacks the attribute.
    fn from_value(value: Option<&Value>) -> Result<Self, Mismatch>;
}

macro_rules! plain_field {
    ($ty:ty, $variant:ident, $expected:literal) => {
        impl Field for $ty {
            fn to_value(&self) -> Option<Value> {
                Some(Value::$variant(self.clone()))
            }
            fn from_value(value: Option<&Value>) -> Result<Self, Mismatch> {
                match value {
                    None => Ok(Self::default()),
                    Some(Value::$variant(v)) => Ok(v.clone()),
                    Some(other) => Err(Mismatch { expected: $expected, found: found(other) }),
                }
            }
        }
    };
}

plain_field!(String, Text, "text");
plain_field!(i64, Int, "an integer");
plain_field!(Vec<String>, List, "a list");
plain_field!(BTreeMap<String, String>, Map, "a map");

impl<T: Field> Field for Option<T> {
    fn to_value(&self) -> Option<Value> {
        self.as_ref().and_then(Field::to_value)
    }
    fn from_value(value: Option<&Value>) -> Result<Self, Mismatch> {
        value.map(|v| T::from_value(Some(v))).transpose()
    }
}

/// A value only apply can learn (a hostname nobody declared, an image digest): `Unknown` never causes a
/// change by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Known<T> {
    #[default]
    Unknown,
    Is(T),
}

impl<T> Known<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Known::Is(v) => Some(v),
            Known::Unknown => None,
        }
    }
}

impl<T> From<Option<T>> for Known<T> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Known::Unknown, Known::Is)
    }
}

impl<T: Field> Field for Known<T> {
    fn to_value(&self) -> Option<Value> {
        match self {
            Known::Unknown => Some(Value::Unknown),
            Known::Is(v) => v.to_value(),
        }
    }
    fn from_value(value: Option<&Value>) -> Result<Self, Mismatch> {
        match value {
            None | Some(Value::Unknown) => Ok(Known::Unknown),
            Some(v) => T::from_value(Some(v)).map(Known::Is),
        }
    }
}

/// A secret: never a value in a resource (`Withheld`), except `Sealed` with the user's key in the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Secret {
    #[default]
    Withheld,
    Sealed(String),
}

impl Field for Secret {
    fn to_value(&self) -> Option<Value> {
        Some(match self {
            Secret::Withheld => Value::Sensitive,
            Secret::Sealed(s) => Value::Sealed(s.clone()),
        })
    }
    fn from_value(value: Option<&Value>) -> Result<Self, Mismatch> {
        match value {
            None | Some(Value::Sensitive) => Ok(Secret::Withheld),
            Some(Value::Sealed(s)) => Ok(Secret::Sealed(s.clone())),
            Some(other) => Err(Mismatch { expected: "a secret", found: found(other) }),
        }
    }
}

/// An attribute's name: its field's, without the `r#` of a keyword (`r#type`).
pub const fn key(field: &'static str) -> &'static str {
    match field.as_bytes() {
        [b'r', b'#', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(name) => name,
            Err(_) => field,
        },
        _ => field,
    }
}

/// Only `replaces` marks a field.
macro_rules! replaces_marker {
    (replaces) => {};
}
pub(crate) use replaces_marker;

/// Declares a kind's schema: `schema! { /// doc  pub struct Name for Kind { field: Type [replaces], ... } }`.
macro_rules! schema {
    (
        $(#[$meta:meta])*
        pub struct $name:ident for $kind:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty $([$flag:ident])? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty, )* }

        impl $crate::schema::Schema for $name {
            const KIND: $crate::resource::Kind = $crate::resource::Kind::$kind;
            const ATTRIBUTES: &'static [&'static str] = &[$($crate::schema::key(stringify!($field))),*];
            const REPLACING: &'static [&'static str] =
                &[$( $( { $crate::schema::replaces_marker!($flag); $crate::schema::key(stringify!($field)) }, )? )*];
            fn to_attributes(&self) -> $crate::resource::Attributes {
                let mut a = $crate::resource::Attributes::new();
                $(
                    if let Some(v) = $crate::schema::Field::to_value(&self.$field) {
                        a.insert($crate::schema::key(stringify!($field)).to_string(), v);
                    }
                )*
                a
            }
            fn from_attributes(a: &$crate::resource::Attributes) -> Result<Self, $crate::schema::SchemaError> {
                Ok($name {
                    $(
                        $field: $crate::schema::Field::from_value(a.get($crate::schema::key(stringify!($field)))).map_err(|m| {
                            $crate::schema::SchemaError {
                                kind: $crate::resource::Kind::$kind,
                                attribute: $crate::schema::key(stringify!($field)),
                                expected: m.expected,
                                found: m.found,
                            }
                        })?,
                    )*
                })
            }
        }
    };
}
pub(crate) use schema;

/// Calls `$body` with `$S` bound to the schema of `$kind`.
macro_rules! per_kind {
    ($kind:expr, $S:ident => $body:expr) => {
        match $kind {
            Kind::Host => {
                type $S = Host;
                $body
            }
            Kind::Hostname => {
                type $S = Hostname;
                $body
            }
            Kind::Image => {
                type $S = Image;
                $body
            }
            Kind::Config => {
                type $S = Config;
                $body
            }
            Kind::Registry => {
                type $S = Registry;
                $body
            }
            Kind::KubeadmInit => {
                type $S = KubeadmInit;
                $body
            }
            Kind::KubeadmJoin => {
                type $S = KubeadmJoin;
                $body
            }
            Kind::Label => {
                type $S = Label;
                $body
            }
            Kind::Taint => {
                type $S = Taint;
                $body
            }
            Kind::Plugin => {
                type $S = Plugin;
                $body
            }
            Kind::Guest => {
                type $S = Guest;
                $body
            }
            Kind::Hooks => {
                type $S = Hooks;
                $body
            }
            Kind::App => {
                type $S = App;
                $body
            }
            Kind::Balancer => {
                type $S = Balancer;
                $body
            }
        }
    };
}

pub fn forces_replacement(kind: Kind, attribute: &str) -> bool {
    per_kind!(kind, S => S::REPLACING.contains(&attribute))
}

/// The attribute names `kind` declares.
pub fn attributes(kind: Kind) -> &'static [&'static str] {
    per_kind!(kind, S => S::ATTRIBUTES)
}

/// Whether the desired and the recorded value of `attribute` ask for the same, by the kind's rules; `None`
/// when the kind has none for it (or either side does not read as the kind).
pub fn same_value(kind: Kind, attribute: &str, desired: &Attributes, recorded: &Attributes) -> Option<bool> {
    per_kind!(kind, S => {
        if !S::COMPARED.contains(&attribute) {
            return None;
        }
        let (d, r) = (S::from_attributes(desired).ok()?, S::from_attributes(recorded).ok()?);
        Some(S::same_value(attribute, &d, &r))
    })
}

/// What an imported record of `kind` may not hold, a type error included.
pub fn problems(kind: Kind, attributes: &Attributes) -> Vec<String> {
    per_kind!(kind, S => match S::from_attributes(attributes) {
        Ok(s) => s.problems(),
        Err(e) => vec![e.to_string()],
    })
}

/// Completes a record of `kind` written before one of its attributes existed ([`Rules::complete_older`]);
/// returns whether it changed. A record that does not read as its kind is left as it is (the plan and the
/// provider name it).
pub fn complete_older_record(kind: Kind, record: &mut Attributes, first_master: &str) -> bool {
    per_kind!(kind, S => {
        if !S::COMPLETES_OLDER {
            return false;
        }
        let Ok(original) = S::from_attributes(record) else { return false };
        let mut completed = original.clone();
        completed.complete_older(first_master);
        if completed == original {
            return false;
        }
        patch(record, &original, &completed);
        true
    })
}

/// `env` names a record may hold (hosts' env reaches shells as variable names).
fn env_problems(env: Option<&BTreeMap<String, String>>) -> Vec<String> {
    env.into_iter()
        .flat_map(|env| env.keys())
        .filter(|k| !crate::clusterfile::rules::is_env_name(k))
        .map(|k| format!("`{k}` is not an env name"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind converts to the map and back unchanged, and a map of another type is named.
    #[test]
    fn a_record_reads_back_as_it_was_written_and_a_wrong_type_is_named() {
        let host = Host {
            role: "master".into(),
            ssh_port: 22,
            ssh_password: Some(Secret::Sealed("c".into())),
            cpus: Known::Is(2),
            ..Default::default()
        };
        let a = host.to_attributes();
        assert_eq!(a["ssh_password"], Value::Sealed("c".into()));
        assert_eq!(a["os"], Value::Unknown);
        assert!(!a.contains_key("ssh_private_key"), "an absent option is no attribute");
        assert_eq!(Host::from_attributes(&a).unwrap(), host);
        let mut wrong = a.clone();
        wrong.insert("ssh_port".into(), Value::text("22"));
        let e = Host::from_attributes(&wrong).unwrap_err().to_string();
        assert_eq!(e, "`host` attribute `ssh_port` is text, expected an integer");
        assert!(forces_replacement(Kind::Host, "role") && !forces_replacement(Kind::Host, "ssh_user"));
        assert!(forces_replacement(Kind::KubeadmJoin, "role"));
        assert!(Host::ATTRIBUTES.contains(&Host::PASSWORD) && Host::ATTRIBUTES.contains(&Host::KEY_PASSPHRASE));
        for kind in Kind::ALL {
            assert!(!attributes(kind).is_empty(), "{kind:?} declares its attributes");
        }
    }

    /// A stored state from before the schemas (and records older still) reads as every kind, its values
    /// kept: what the record has is what the struct holds, what it lacks is the default, and writing it
    /// back changes none of what it had. The imported-state check finds nothing wrong in it.
    #[test]
    fn a_stored_state_from_before_reads_as_every_kind() {
        let state: crate::State = serde_yaml::from_str(include_str!("testdata/older-state.yml")).unwrap();
        let kinds: std::collections::BTreeSet<Kind> = state.resources.keys().map(|a| a.kind).collect();
        assert_eq!(kinds.len(), Kind::ALL.len(), "the fixture has a record of every kind");
        for r in state.resources.values() {
            per_kind!(r.address.kind, S => {
                let typed = S::from_attributes(&r.attributes).unwrap_or_else(|e| panic!("{}: {e}", r.address));
                let written = typed.to_attributes();
                for (name, value) in &r.attributes {
                    assert_eq!(written.get(name), Some(value), "{}: `{name}` kept", r.address);
                }
            });
        }
        assert_eq!(state.check_imported(), Ok(()));
        let host = Host::from_attributes(&state.resources[&"host.10.0.0.2".parse().unwrap()].attributes).unwrap();
        assert_eq!(host.ssh_password, Some(Secret::Sealed("v1:ciphertext".into())));
        assert_eq!((host.os, host.host_key), (Known::Is("debian-13".into()), Known::Unknown));
        let login = state.resources[&"host.10.0.0.2".parse().unwrap()].recorded_login().unwrap().unwrap();
        assert_eq!((login.sealed_password.as_deref(), login.password_only), (Some("v1:ciphertext"), true));
    }

    /// A record that an edit gave a value of another type is refused by the imported-state check, named.
    #[test]
    fn an_imported_record_of_the_wrong_type_is_a_problem() {
        let text = include_str!("testdata/older-state.yml").replace("ssh_port: !int 22", "ssh_port: !text \"22\"");
        let state: crate::State = serde_yaml::from_str(&text).unwrap();
        let problems = state.check_imported().unwrap_err();
        assert_eq!(problems, ["`host.10.0.0.2`: `host` attribute `ssh_port` is text, expected an integer"]);
    }

    /// A read or a completion writes what it changed into the record, and adds no key it did not set.
    #[test]
    fn a_patch_writes_only_what_changed() {
        let mut record = Attributes::from([("name".to_string(), Value::text("old"))]);
        let original = Hostname::from_attributes(&record).unwrap();
        let read = Hostname { name: Known::Is("new".into()), ..original.clone() };
        patch(&mut record, &original, &read);
        assert_eq!(record, Attributes::from([("name".to_string(), Value::text("new"))]), "no `original` added");
        let mut app = Attributes::from([("image".to_string(), Value::text("redis:5"))]);
        assert!(complete_older_record(Kind::App, &mut app, "10.0.0.2"));
        assert_eq!(app.len(), 2, "only `first_master` added: {app:?}");
        assert!(!complete_older_record(Kind::App, &mut app, "10.0.0.9"), "a recorded first master stays");
        assert!(!complete_older_record(Kind::Host, &mut app.clone(), "10.0.0.2"), "a host has none");
        // `sealer gen`'s record of a member whose /etc/hosts has no registry name: the apply sets it.
        let mut taken_over = Attributes::from([("first_master".to_string(), Value::text(""))]);
        assert!(!complete_older_record(Kind::KubeadmJoin, &mut taken_over, "10.0.0.2"));
    }

    /// A record written before an attribute existed reads it as its default.
    #[test]
    fn an_older_record_without_an_attribute_reads_its_default() {
        let image = Image::from_attributes(&Attributes::from([("image".to_string(), Value::text("k:v1"))])).unwrap();
        assert_eq!(image.image, "k:v1");
        assert!(image.mirrors.is_empty() && image.digest == Known::Unknown && image.templates.is_none());
    }
}

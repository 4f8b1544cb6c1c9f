//! The operations' typed error: what went wrong below (state, plan, providers, images) kept as its own
//! type, an operation's own refusal as a message, and the context an operation adds around either. The
//! binary renders it (`error: what: why`); callers that must tell one failure from another match on it.

use sealer_engine::{GraphError, PlanError, StateError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plan that removes the first master or more than half of the masters: refused without `force`.
    #[error("refusing to apply without --force: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// What the operation says itself: bad input, a refusal, a precondition that does not hold.
    #[error("{0}")]
    Message(String),
    /// `what` was being done when `source` happened.
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Schema(#[from] sealer_engine::schema::SchemaError),
    #[error(transparent)]
    Provider(#[from] sealer_providers::ProviderError),
    #[error(transparent)]
    Image(#[from] sealer_providers::image::store::ImageError),
    #[error(transparent)]
    RegistryConfig(#[from] sealer_providers::image::registry_config::RegistryConfigError),
    #[error(transparent)]
    Mirror(#[from] sealer_providers::image::mirrors::MirrorError),
    #[error(transparent)]
    Login(#[from] sealer_providers::image::login::LoginError),
    #[error(transparent)]
    Sealing(#[from] sealer_state::SealingError),
    #[error(transparent)]
    PlanFile(#[from] sealer_state::PlanFileError),
    #[error(transparent)]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error and every cause beneath it, as `error: ` prints them: `what: why: ...`.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(&format!(": {e}"));
            cause = e.source();
        }
        text
    }

    /// The error beneath any context added around it.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

/// `err!("...", args)`: an [`Error::Message`].
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::ops::Error::Message(format!($($arg)*))
    };
}
pub(crate) use err;

/// `bail!("...", args)`: returns an [`Error::Message`].
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::ops::error::err!($($arg)*))
    };
}
pub(crate) use bail;

/// Context around a failure, as `anyhow::Context` gives it, kept typed.
pub trait Context<T> {
    fn context<C: std::fmt::Display>(self, what: C) -> Result<T>;
    fn with_context<C: std::fmt::Display, F: FnOnce() -> C>(self, what: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: std::fmt::Display>(self, what: C) -> Result<T> {
        self.map_err(|e| Error::Context { what: what.to_string(), source: Box::new(e.into()) })
    }
    fn with_context<C: std::fmt::Display, F: FnOnce() -> C>(self, what: F) -> Result<T> {
        self.map_err(|e| Error::Context { what: what().to_string(), source: Box::new(e.into()) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: std::fmt::Display>(self, what: C) -> Result<T> {
        self.ok_or_else(|| Error::Message(what.to_string()))
    }
    fn with_context<C: std::fmt::Display, F: FnOnce() -> C>(self, what: F) -> Result<T> {
        self.ok_or_else(|| Error::Message(what().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Context reads as anyhow's did (`what: why` in the chain), and the root is still the typed error.
    #[test]
    fn context_keeps_the_typed_error_beneath() {
        let locked: Result<()> = Err(StateError::Backend { message: "x".into(), source: None }.into());
        let e = locked.context("reading state").context("planning").unwrap_err();
        assert_eq!(e.to_string(), "planning");
        assert!(matches!(e.root(), Error::State(StateError::Backend { .. })));
        let chain: Vec<String> = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
        assert_eq!(chain[..2], ["planning".to_string(), "reading state".to_string()]);
        assert_eq!(e.chain(), "planning: reading state: state backend: x");
    }
}

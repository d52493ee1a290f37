//! Errors raised while building Ember's shared configuration.

use datafusion::error::DataFusionError;

/// The result type of `ember-core`.
pub type Result<T, E = EmberError> = std::result::Result<T, E>;

/// An error raised while configuring Ember.
#[derive(Debug, thiserror::Error)]
pub enum EmberError {
    /// A setting has a value Ember cannot use.
    #[error("invalid setting `{key}`: {reason}")]
    InvalidSetting {
        /// The setting's key, for example `ember.client.connect_timeout_secs`.
        key: String,
        /// Why the value was rejected.
        reason: String,
    },
    /// DataFusion refused to build part of the session.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl From<EmberError> for DataFusionError {
    fn from(err: EmberError) -> Self {
        match err {
            EmberError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

//! The session configuration shared by every Ember process.
//!
//! Settings travel from the client to the scheduler and the executors as
//! key/value pairs, and Ballista rejects keys it does not know. Every process
//! therefore starts from [`session_config`] (or [`distributed_session_config`]
//! on the cluster side), which registers Ballista's settings and Ember's own
//! `ember.*` extension, and installs Ember's codecs.

use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;
use datafusion::prelude::SessionConfig;

use crate::codec::{EmberLogicalCodec, EmberPhysicalCodec};

extensions_options! {
    /// Ember's own settings, under the `ember.` prefix.
    ///
    /// They can be changed per session with `SET ember.<key> = <value>`; on a
    /// cluster they travel with every query to the scheduler and executors.
    pub struct EmberConfig {
        /// Seconds the client waits to reach the scheduler before giving up.
        pub client_connect_timeout_secs: u64, default = 5
        /// Seconds the client waits for at least one executor to be registered
        /// with the scheduler before it fails a query. 0 fails at once.
        pub client_executor_wait_secs: u64, default = 10
    }
}

impl ConfigExtension for EmberConfig {
    const PREFIX: &'static str = "ember";
}

impl EmberConfig {
    /// Reads Ember's settings from a session configuration, or the defaults
    /// when the extension is not registered.
    pub fn from_session_config(config: &SessionConfig) -> Self {
        config
            .options()
            .extensions
            .get::<EmberConfig>()
            .cloned()
            .unwrap_or_default()
    }
}

/// The base session configuration of every Ember session.
///
/// It keeps DataFusion's own defaults (so an embedded Ember plans exactly as
/// DataFusion does), enables `information_schema` (for `SHOW TABLES`),
/// registers Ember's `ember.*` settings and installs Ember's extension codecs.
///
/// Ballista's `ballista.*` settings are not registered here: registering them
/// marks a configuration as already prepared for Ballista, and
/// [`distributed_session_config`] (or `SessionStateExt::upgrade_for_ballista`
/// on a remote client) would then skip Ballista's distributed defaults, among
/// them turning off dynamic filter pushdown, which cannot cross stages.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .with_option_extension(EmberConfig::default())
        .with_ballista_logical_extension_codec(Arc::new(EmberLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(EmberPhysicalCodec::default()))
}

/// The session configuration of the cluster side: [`session_config`] with
/// Ballista's settings registered and its distributed defaults applied (no
/// round-robin repartitioning, view types off for Flight, sort-merge joins,
/// no dynamic filter pushdown across stages, broadcast-join thresholds).
///
/// The scheduler and the executors produce their configuration with this
/// function; a remote client gets the same through
/// `SessionStateExt::upgrade_for_ballista`.
pub fn distributed_session_config() -> SessionConfig {
    session_config().upgrade_for_ballista()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ember_settings_have_defaults_and_can_be_set() {
        let mut config = session_config();
        assert_eq!(
            EmberConfig::from_session_config(&config).client_executor_wait_secs,
            10
        );
        config
            .options_mut()
            .set("ember.client_executor_wait_secs", "3")
            .expect("ember.* is registered");
        assert_eq!(
            EmberConfig::from_session_config(&config).client_executor_wait_secs,
            3
        );
    }

    #[test]
    fn unknown_ember_setting_is_rejected() {
        let mut config = session_config();
        let err = config
            .options_mut()
            .set("ember.no_such_setting", "1")
            .expect_err("unknown keys are refused");
        assert!(err.to_string().contains("no_such_setting"), "{err}");
    }

    #[test]
    fn distributed_config_registers_ballista_settings() {
        let mut config = distributed_session_config();
        config
            .options_mut()
            .set("ballista.job.name", "nightly")
            .expect("ballista.* is registered");
    }

    #[test]
    fn distributed_config_applies_ballista_defaults_but_keeps_ember_settings() {
        let config = distributed_session_config();
        let optimizer = &config.options().optimizer;
        assert!(!optimizer.enable_round_robin_repartition);
        assert!(!optimizer.enable_dynamic_filter_pushdown);
        assert!(config.options().extensions.get::<EmberConfig>().is_some());
        // The embedded configuration keeps DataFusion's defaults.
        let embedded = session_config();
        assert!(embedded.options().optimizer.enable_round_robin_repartition);
        assert!(embedded.options().optimizer.enable_dynamic_filter_pushdown);
    }
}

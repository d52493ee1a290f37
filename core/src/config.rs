//! The session configuration shared by every Ember process.
//!
//! Settings travel from the client to the scheduler and the executors as
//! key/value pairs, and Ballista rejects keys it does not know. Every process
//! therefore starts from [`session_config`] (or [`distributed_session_config`]
//! on the cluster side), which registers Ballista's settings and Ember's own
//! `ember.*` extension, and installs Ember's codecs.

use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use std::any::Any;

use datafusion::common::config_err;
use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::Result as DFResult;
use datafusion::prelude::SessionConfig;

use ember_gpu::GpuMode;

use crate::codec::{EmberLogicalCodec, EmberPhysicalCodec};
use crate::s3::S3Settings;

/// A value an `ember.*` setting can hold: how it is parsed from `SET` and
/// shown by `SHOW` (and sent to the cluster).
trait SettingValue: Sized {
    /// Parses `value`, set under `ember.{key}`.
    fn parse_setting(key: &str, value: &str) -> DFResult<Self>;
    /// The value as `SET` takes it back.
    fn show(&self) -> String;
}

impl SettingValue for u64 {
    fn parse_setting(key: &str, value: &str) -> DFResult<Self> {
        value
            .trim()
            .parse()
            .or_else(|_| config_err!("`ember.{key}` must be a whole number, not `{value}`"))
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for bool {
    fn parse_setting(key: &str, value: &str) -> DFResult<Self> {
        match parse_flag(value) {
            Some(flag) => Ok(flag),
            None => config_err!("`ember.{key}` must be true or false, not `{value}`"),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    fn parse_setting(_key: &str, value: &str) -> DFResult<Self> {
        Ok(value.trim().to_string())
    }

    fn show(&self) -> String {
        self.clone()
    }
}

/// Settings whose values are one of a few words: parsed by their `FromStr`
/// (whose error names the choices), shown by their `Display`.
macro_rules! setting_value_of_words {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse_setting(_key: &str, value: &str) -> DFResult<Self> {
                value
                    .parse()
                    .map_err(|e: String| datafusion::error::DataFusionError::Configuration(e))
            }

            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

setting_value_of_words!(GpuMode, crate::dialect::Dialect);

/// The id of a distributed write's staging directory: letters, digits, `-`
/// and `_` only, since it becomes a path segment. Empty means "pick one".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteId(pub String);

impl WriteId {
    /// The id as text (empty when none is set).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SettingValue for WriteId {
    fn parse_setting(key: &str, value: &str) -> DFResult<Self> {
        let id = value.trim();
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return config_err!("`ember.{key}` may hold only letters, digits, - and _");
        }
        Ok(WriteId(id.to_string()))
    }

    fn show(&self) -> String {
        self.0.clone()
    }
}

/// Declares Ember's `ember.*` settings once: each setting's documentation,
/// name, type (which parses and shows it), default and the one-line
/// description `SHOW ALL` prints. The struct, its defaults, `SET` and the
/// entries sent to the cluster all derive from the declaration.
macro_rules! ember_settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty = $default:expr, $description:literal;
    )*) => {
        /// Ember's own settings, under the `ember.` prefix.
        ///
        /// They can be changed per session with `SET ember.<key> = <value>`; on a
        /// cluster they travel with every query to the scheduler and executors.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct EmberConfig {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for EmberConfig {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// The names of [`EmberConfig`]'s settings, without the prefix.
        const EMBER_KEYS: &[&str] = &[$( stringify!($name) ),*];

        impl EmberConfig {
            fn set_by_key(&mut self, key: &str, value: &str) -> DFResult<bool> {
                match key {
                    $( stringify!($name) => {
                        self.$name = <$ty as SettingValue>::parse_setting(key, value)?;
                    } )*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Entries carry their full `ember.` key, so that they survive the
            /// trip to the scheduler and executors (which set them back by key).
            fn config_entries(&self) -> Vec<ConfigEntry> {
                vec![$( ConfigEntry {
                    key: concat!("ember.", stringify!($name)).to_string(),
                    value: Some(SettingValue::show(&self.$name)),
                    description: $description,
                } ),*]
            }
        }
    };
}

ember_settings! {
    /// Seconds the client waits to reach the scheduler before giving up.
    client_connect_timeout_secs: u64 = 5,
        "Seconds the client waits to reach the scheduler";
    /// The most memory, in MiB, a WebAssembly function's module may hold
    /// (its linear memory) while it works on a batch; a module that asks
    /// for more fails the query, naming the function and this limit. Taken
    /// when the library is loaded (`CREATE FUNCTION … LANGUAGE wasm`) and
    /// sent with it to the cluster.
    wasm_memory_limit_mib: u64 = 256,
        "MiB of memory a WebAssembly function may hold while it works on a batch";
    /// The longest, in milliseconds, a WebAssembly function may work on one
    /// batch of rows before the query fails, naming the function and this
    /// limit. Taken when the library is loaded, like the memory limit.
    wasm_time_limit_ms: u64 = 10_000,
        "Milliseconds a WebAssembly function may work on one batch of rows";
    /// Seconds the client waits for at least one executor to be registered
    /// with the scheduler before it fails a query. 0 fails at once.
    client_executor_wait_secs: u64 = 10,
        "Seconds the client waits for an executor to register";
    /// The id of the write the next statement performs: its files are
    /// staged under `<destination>/_temporary/<write_id>/` until the job
    /// commits. The client sets it per statement, so that it can remove the
    /// staged files of a job that fails; empty means "pick one".
    write_id: WriteId = WriteId::default(),
        "Id of the next write's staging directory";
    /// Whether operators run on a GPU: `off`, `auto` (where a GPU is present
    /// and the operator is supported) or `force` (a missing GPU is an
    /// error).
    gpu: GpuMode = GpuMode::Auto,
        "Run supported operators on a GPU: off, auto or force";
    /// Fewest input rows for which a partition's operator runs on the GPU;
    /// below it the CPU is quicker than the copy to the device.
    gpu_min_rows: u64 = 1_000_000,
        "Fewest rows of a partition for which an operator runs on the GPU";
    /// Tables whose columns GPU operators keep in device memory between
    /// queries: comma-separated locations (path or URL prefixes), or `*`.
    /// Empty keeps none.
    gpu_cache_tables: String = String::new(),
        "Table locations (or *) whose columns stay in GPU memory between queries";
    /// Whether Ember's semi-join rules rewrite plans where that can only
    /// save work: a semi join (`IN (subquery)`, `EXISTS`) applied below the
    /// inner joins it sits on ([`crate::semi_join::PushDownSemiJoin`]), and a
    /// grouped aggregate's input filtered to the keys its join can match
    /// ([`crate::semi_join::FilterAggregateByJoinKeys`]).
    push_down_semi_joins: bool = true,
        "Filter with semi joins early where that saves work: IN and EXISTS below the joins \
         they sit on, and a grouped aggregate's input to the keys its join can match";
    /// Whether partitioned hash joins adapt to memory: a partition whose
    /// build side does not fit runs as a grace hash join that spills,
    /// instead of failing the query ([`ember_memory::AdaptiveJoinExec`]).
    adaptive_joins: bool = true,
        "A hash join partition whose build side does not fit in memory runs as a \
         grace hash join that spills instead of failing";
    /// The percentage of a task's memory pool that the build sides of one
    /// hash join (all its partitions together) may hold; a larger build side
    /// makes its partition a grace hash join, leaving the rest of the pool to
    /// the operators that spill.
    hash_join_memory_percent: u64 = 50,
        "Percent of the memory pool one hash join's build sides may hold before they spill";
    /// Whether integer and decimal arithmetic is checked: an operation,
    /// cast or `sum` whose result does not fit its type fails with one line
    /// naming the expression and the type, instead of wrapping around
    /// ([`crate::checked_arithmetic`]). Off, arithmetic wraps as in
    /// DataFusion.
    checked_arithmetic: bool = true,
        "Fail on integer and decimal overflow (+ - * / %, unary minus, casts, sum) \
         instead of wrapping around";
    /// Whose semantics answers follow: `datafusion` (PostgreSQL-like) or
    /// `spark` (integer `/` is fractional, NULLs sort first in ascending
    /// order; [`crate::dialect`]).
    dialect: crate::dialect::Dialect = crate::dialect::Dialect::DataFusion,
        "Whose semantics answers follow: datafusion (integer / truncates, NULLs sort last \
         ascending) or spark (integer / is fractional, NULLs sort first ascending)";
    /// The deepest a statement's expressions may nest; the client refuses
    /// a deeper statement before planning it. A chain of operators such as
    /// `1 + 1 + … + 1` nests a level per operator, and planning recurses
    /// through it: far deeper chains overflowed the stack.
    max_expression_depth: u64 = 1000,
        "Deepest a statement's expressions may nest (a level per operator in a chain \
         like 1 + 1 + ...); deeper statements are refused";
    /// Whether, on a cluster, each task's hash joins, top-k sorts and
    /// `min`/`max` aggregates filter the scans and shuffle reads that run in
    /// the same task with what they have seen (DataFusion's dynamic
    /// filters), as they do embedded.
    /// DataFusion's own switch (`datafusion.optimizer.
    /// enable_dynamic_filter_pushdown`) stays off on clusters: a filter
    /// cannot reach from one stage into another, so executors add them to
    /// each stage's plan themselves.
    stage_dynamic_filters: bool = true,
        "On a cluster, hash joins, top-k sorts and min/max aggregates filter the scans in the same task with \
         what they have seen (dynamic filters), as embedded";
    /// Whether the dynamic filters of hash joins, top-k sorts and
    /// `min`/`max` aggregates drop the rows they reject right above the
    /// scans they reach, rather than only letting those scans skip row
    /// groups by their statistics ([`crate::scan_dynamic_filters`]). A
    /// filter that drops almost nothing is only sampled.
    dynamic_filters_in_scans: bool = true,
        "Hash joins', top-k sorts' and min/max aggregates' dynamic filters drop the rows they \
         reject right above the scans they reach, not only whole row groups";
    /// Whether a hash join's own dynamic filter is left out of the
    /// [`crate::scan_dynamic_filters::DynamicRowFilterExec`] right below its
    /// probe side (nothing between but projections and round-robin
    /// exchanges): the filter looks every row up in the join's hash table,
    /// which the join does again for the rows it keeps, and saves nothing on
    /// the way. The scan still prunes row groups with it.
    dynamic_filters_skip_direct_probes: bool = true,
        "A hash join's own dynamic filter is not evaluated right above the scan the join probes \
         directly (the join looks those rows up anyway); the scan still prunes with it";
    /// Whether a chain of three or more inner equi-joins is put in the
    /// order its inputs' statistics say makes the fewest intermediate rows
    /// ([`crate::join_order`]), rather than the order the query names its
    /// tables in. Plans whose estimated cost the new order does not at
    /// least halve are kept as written.
    join_reordering: bool = true,
        "Order chains of three or more inner joins by their inputs' statistics (fewest \
         intermediate rows) instead of the order the query names the tables";
    /// Whether a filter whose predicate DataFusion's interval analysis
    /// cannot read (string equality, `LIKE`, a comparison of two columns)
    /// gets Ember's estimate of the rows it keeps
    /// ([`crate::selectivity`]) instead of
    /// `datafusion.optimizer.default_filter_selectivity`, so that the join
    /// order and the choice of broadcast joins see it.
    filter_selectivity_estimates: bool = true,
        "Estimate the rows a filter keeps from its predicate and its input's statistics where \
         DataFusion cannot (strings, LIKE, column comparisons), for join order and broadcasts";
    /// Embedded, a partitioned hash join broadcasts its build side instead
    /// ([`crate::broadcast_joins`]) where its probe side is estimated at
    /// this many rows per build row for each thread past the first, or
    /// more: one hash table, built in one thread, that every partition
    /// probes, sparing the hash exchange of the probe side. DataFusion's
    /// size limits (`datafusion.optimizer.hash_join_single_partition_threshold*`)
    /// still broadcast any build side under them. `0` leaves the choice to
    /// those limits alone.
    broadcast_join_probe_ratio: u64 = 8,
        "Embedded: broadcast a hash join's build side when the probe side has this many rows \
         per build row for each thread past the first (0: only DataFusion's size limits)";
    /// Embedded, a grouped aggregate whose grouping columns' statistics
    /// estimate at least 100,000 groups and this many groups per hundred
    /// input rows runs in one step after the hash exchange, without the partial aggregate
    /// before it ([`crate::one_step_aggregates`]): where most groups have a
    /// few rows, the partial step hashes nearly every row twice and holds
    /// a second table as large as the final one. `0` keeps both steps.
    one_step_aggregate_groups_percent: u64 = 50,
        "Embedded: aggregate in one step, without the partial aggregate before the exchange, \
         where the statistics estimate this many groups per 100 input rows or more (0: never)";
    /// Whether a partial aggregate over grouping sets (`ROLLUP`, `CUBE`,
    /// `GROUPING SETS`) first aggregates its rows by all the sets' columns,
    /// once, then expands each of those groups into every set
    /// ([`crate::grouping_sets`]), rather than hashing every row once per
    /// set.
    aggregate_before_grouping_sets: bool = true,
        "Aggregate ROLLUP, CUBE and GROUPING SETS by all their columns first, then expand each \
         group into every set, instead of hashing every row once per set";
    /// Whether a partitioned hash join whose side is an aggregate
    /// estimates that side by its groups rather than its input's rows, and
    /// builds on it where it is the smaller ([`crate::aggregated_join_sides`]):
    /// `INTERSECT`, `EXCEPT` and joins with grouped subqueries.
    join_sides_by_group_estimates: bool = true,
        "Estimate an aggregated join side by its groups (from its grouping columns' statistics) \
         and build the hash join on it where that makes it the smaller side";
    /// Whether a subplan a query repeats (a view or common table
    /// expression read twice, a repeated subquery) that aggregates, joins
    /// or computes a window is computed once embedded, its result held in
    /// memory (spilled to disk where the memory pool is full) for every use
    /// ([`crate::common_subplans`]). Clusters compute each use.
    reuse_common_subplans: bool = true,
        "Compute a subquery the query repeats (a view or CTE read twice) once and let every \
         use read its result, held in memory or spilled; embedded only";
    /// Whether each filter of two or more conjuncts evaluates them most
    /// selective first (by the input's statistics), each on the rows the
    /// ones before kept ([`crate::conjunctions`]), rather than in the order
    /// the query wrote them.
    ordered_conjunctions: bool = true,
        "Evaluate a filter's conjuncts (a AND b AND ...) most selective first, each on the rows \
         the ones before it kept, instead of in the written order";
    /// Whether a cluster client sends the session's S3 credentials
    /// (`s3.access_key_id`, `s3.secret_access_key`, `s3.session_token`,
    /// also per bucket) with each query. Off, they stay in the client,
    /// which still uses them to plan, and the scheduler and executors reach
    /// S3 with their own (environment, instance or pod roles).
    ship_credentials: bool = true,
        "On a cluster, send the session's S3 credentials with each query; false keeps them \
         in the client and the cluster uses its own";
    /// Whether a cluster session shares its catalog with the cluster: the
    /// tables, views and schemas it declares go to the scheduler's catalog,
    /// and it sees those other clients (Flight SQL among them) declared.
    /// Off, its declarations stay in the session.
    shared_catalog: bool = true,
        "On a cluster, declare tables, views and schemas in the scheduler's shared catalog and \
         see those others declared; false keeps declarations in the session";
    /// The SQL text of the statement a cluster job runs: the client sends
    /// it with the job (secret values masked) so that the scheduler's web
    /// UI can show it. Set by the client for each statement.
    statement_text: String = String::new(),
        "The SQL text a cluster job runs, sent by the client (secrets masked) for the \
         scheduler's web UI";
}

impl ConfigExtension for EmberConfig {
    const PREFIX: &'static str = "ember";
}

impl ExtensionOptions for EmberConfig {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> DFResult<()> {
        let key = key.strip_prefix("ember.").unwrap_or(key);
        if self.set_by_key(key, value)? {
            return Ok(());
        }
        config_err!(
            "unknown setting `ember.{key}`; known settings: {}",
            EMBER_KEYS.join(", ")
        )
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        self.config_entries()
    }
}

impl EmberConfig {
    /// Reads Ember's settings from a session configuration, or the defaults
    /// when the extension is not registered.
    pub fn from_session_config(config: &SessionConfig) -> Self {
        Self::from_options(config.options())
    }

    /// Reads Ember's settings from a session's options (as optimizer and
    /// analyzer rules are given them), or the defaults when the extension is
    /// not registered.
    pub fn from_options(options: &datafusion::config::ConfigOptions) -> Self {
        options
            .extensions
            .get::<EmberConfig>()
            .cloned()
            .unwrap_or_default()
    }
}

/// The base session configuration of every Ember session.
///
/// It keeps DataFusion's own defaults (an embedded Ember plans as DataFusion
/// does, but for the one optimizer rule [`crate::session::session_state`]
/// adds), enables `information_schema` (for `SHOW TABLES`),
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
        .with_option_extension(S3Settings::default())
        .with_ballista_logical_extension_codec(Arc::new(EmberLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(EmberPhysicalCodec::default()))
}

/// The session configuration of the cluster side: [`session_config`] with
/// Ballista's settings registered and its distributed defaults applied (no
/// round-robin repartitioning, view types off for Flight, sort-merge joins,
/// no dynamic filter pushdown across stages, broadcast-join thresholds),
/// then Ember's own cluster defaults ([`apply_cluster_defaults`]).
///
/// The scheduler and the executors produce their configuration with this
/// function; a remote client gets the same through
/// `SessionStateExt::upgrade_for_ballista` followed by
/// [`apply_cluster_defaults`].
pub fn distributed_session_config() -> SessionConfig {
    let mut config = session_config().upgrade_for_ballista();
    apply_cluster_defaults(&mut config);
    config
}

/// The Ballista setting that chooses the adaptive (AQE) stage planner.
pub const ADAPTIVE_PLANNER_SETTING: &str = "ballista.planner.adaptive.enabled";

/// DataFusion's choice between hash joins and sort-merge joins.
pub const PREFER_HASH_JOIN_SETTING: &str = "datafusion.optimizer.prefer_hash_join";

/// Ember's defaults for Ballista settings where Ballista's own default is
/// not what Ember can stand behind. Applied once, when a configuration is
/// upgraded for a cluster; a later `SET` still overrides them.
///
/// * [`ADAPTIVE_PLANNER_SETTING`] is `false`: Ballista 55's adaptive planner
///   loses track of a job when an executor holding finished shuffle output
///   dies mid-job (the job stays `Running` for ever: its status update for
///   the rolled-back stage is refused with "Can't find active stage").
///   The static stage planner reruns the lost map stage and the job
///   completes with the right answer; `deploy/test-compose.sh` and the
///   executor-loss test under `tests/` check exactly that.
/// * [`PREFER_HASH_JOIN_SETTING`] is `true`, as embedded and in DataFusion:
///   Ballista turns it off, which plans every equi-join as a sort-merge
///   join over two shuffles, and so also rules out broadcasting a small
///   side (`CollectLeft`), which only hash joins do. On TPC-H that made a
///   cluster several times slower than the same query embedded (see
///   `bench/results/`). A hash join's build side is held in memory, within
///   the executor's memory pool: a build partition too large for it fails
///   the query with a resources-exhausted error, and
///   `SET datafusion.optimizer.prefer_hash_join = false` brings back the
///   sort-merge join, which spills.
pub fn apply_cluster_defaults(config: &mut SessionConfig) {
    // Both are registered settings; setting them cannot fail.
    for (key, value) in [
        (ADAPTIVE_PLANNER_SETTING, "false"),
        (PREFER_HASH_JOIN_SETTING, "true"),
    ] {
        if let Err(e) = config.options_mut().set(key, value) {
            tracing::warn!("cannot set {key} = {value} for clusters: {e}");
        }
    }
}

/// A boolean setting's value: `true`, `1`, `yes` or `on`, and `false`, `0`,
/// `no` or `off`, in any case and with surrounding spaces; `None` for
/// anything else.
pub(crate) fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Whether the session setting `key` holds a secret (S3 credentials) whose
/// value must not be shown: not in logs, errors, `EXPLAIN` or the
/// scheduler's REST API. Such settings still travel to the cluster, which
/// needs them.
pub fn is_secret_setting(key: &str) -> bool {
    S3Settings::is_secret_key(key)
}

/// The configuration a query is sent to a cluster with: `config` itself,
/// or, when `ember.ship_credentials` is off, a copy without S3
/// credentials (see [`EmberConfig::ship_credentials`]).
pub fn config_to_ship(config: &SessionConfig) -> Option<SessionConfig> {
    if EmberConfig::from_session_config(config).ship_credentials {
        return None;
    }
    let mut stripped = config.clone();
    let settings = S3Settings::from_session_config(config).without_credentials();
    stripped.options_mut().extensions.insert(settings);
    Some(stripped)
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
    fn cluster_configs_use_the_static_stage_planner_and_hash_joins() {
        use ballista_core::extension::SessionConfigExt;
        let config = distributed_session_config();
        assert!(!config.ballista_config().adaptive_query_planner_enabled());
        assert!(config.options().optimizer.prefer_hash_join);
        // A plain Ballista upgrade would have left the adaptive planner on
        // and hash joins off.
        let plain = session_config().upgrade_for_ballista();
        assert!(plain.ballista_config().adaptive_query_planner_enabled());
        assert!(!plain.options().optimizer.prefer_hash_join);
    }

    #[test]
    fn boolean_settings_take_the_usual_spellings() {
        let mut config = session_config();
        for (value, expected) in [("off", false), ("ON", true), ("0", false), (" true ", true)] {
            config
                .options_mut()
                .set("ember.push_down_semi_joins", value)
                .expect("a boolean spelling");
            let actual = EmberConfig::from_session_config(&config).push_down_semi_joins;
            assert_eq!(actual, expected, "{value:?}");
        }
        let err = config
            .options_mut()
            .set("ember.push_down_semi_joins", "maybe")
            .expect_err("not a boolean");
        assert!(err.to_string().contains("`maybe`"), "{err}");
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
    fn settings_survive_the_trip_to_the_cluster() {
        use ballista_core::extension::SessionConfigHelperExt;
        let mut client = session_config();
        client.options_mut().set("ember.write_id", "w-1").unwrap();
        client
            .options_mut()
            .set("s3.bucket.lake.endpoint", "http://127.0.0.1:9000")
            .unwrap();
        let pairs = client.to_key_value_pairs();
        let executor = distributed_session_config().update_from_key_value_pair(&pairs);
        assert_eq!(
            EmberConfig::from_session_config(&executor)
                .write_id
                .as_str(),
            "w-1"
        );
        assert_eq!(
            S3Settings::from_session_config(&executor)
                .for_bucket("lake")
                .endpoint
                .as_deref(),
            Some("http://127.0.0.1:9000")
        );
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

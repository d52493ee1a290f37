//! Session settings for Ember's engines in a benchmark run: fixed ones
//! (`--set`) and one compared side by side (`--alternate`).

use crate::measure::measure;
use crate::{BenchEngine, QueryRecord, summarize};

/// The settings flags the suite runners share.
#[derive(Debug, Default, clap::Args)]
pub struct SettingFlags {
    /// A session setting for Ember's engines, as KEY=VALUE (may be
    /// repeated), such as `ember.adaptive_joins=false`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// A session setting to compare, as KEY=VALUE1,VALUE2,...: each run of
    /// each query is made once under every value in turn, in the same
    /// process, and each value gets its own records, named
    /// `<engine>[KEY=VALUE]`. Side by side like this, the values' ratios
    /// are not blurred by drift between processes.
    #[arg(long, value_name = "KEY=VALUES")]
    pub alternate: Option<String>,
}

/// A setting `--alternate` compares, and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternate {
    /// The setting's name.
    pub key: String,
    /// Its values, two or more.
    pub values: Vec<String>,
}

impl SettingFlags {
    /// The setting `--alternate` names, if any.
    pub fn alternate(&self) -> Result<Option<Alternate>, String> {
        self.alternate.as_deref().map(parse_alternate).transpose()
    }

    /// Sets each `--set` setting on `engine`.
    pub fn apply(&self, engine: &BenchEngine) -> Result<(), String> {
        for setting in &self.settings {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("--set {setting}: expected KEY=VALUE"))?;
            engine
                .set(key.trim(), value.trim())
                .map_err(|e| format!("--set {setting}: {e}"))?;
        }
        Ok(())
    }
}

fn parse_alternate(text: &str) -> Result<Alternate, String> {
    let (key, values) = text
        .split_once('=')
        .ok_or_else(|| format!("--alternate {text}: expected KEY=VALUE1,VALUE2"))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.len() < 2 || values.iter().any(String::is_empty) {
        return Err(format!("--alternate {text}: expected two values or more"));
    }
    Ok(Alternate {
        key: key.trim().to_string(),
        values,
    })
}

/// Query `query` (its `statements`) run `runs` times under each of the
/// alternate setting's values in turn, one record per value (its time the
/// median of its runs).
pub async fn measure_alternating(
    engine: &BenchEngine,
    query: usize,
    statements: &[String],
    runs: usize,
    alternate: &Alternate,
) -> Result<Vec<QueryRecord>, String> {
    let Alternate { key, values } = alternate;
    let mut records: Vec<Option<QueryRecord>> = vec![None; values.len()];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); values.len()];
    for round in 0..runs.max(1) {
        // Each round starts at the next value, so that none is always the
        // first to read a query's data.
        for step in 0..values.len() {
            let at = (round + step) % values.len();
            let value = &values[at];
            engine
                .set(key, value)
                .map_err(|e| format!("--alternate {key}={value}: {e}"))?;
            let record = measure(engine, query, statements, 1, None).await;
            if let Some(seconds) = record.median {
                times[at].push(seconds);
            }
            records[at] = Some(record);
        }
    }
    Ok(records
        .into_iter()
        .zip(times)
        .zip(values)
        .filter_map(|((record, times), value)| {
            let mut record = record?;
            record.engine = format!("{}[{key}={value}]", record.engine);
            if record.error.is_none() && !times.is_empty() {
                let (median, min, max) = summarize(&times);
                (record.median, record.min, record.max) = (Some(median), Some(min), Some(max));
            }
            Some(record)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alternate_needs_a_key_and_two_values() {
        assert_eq!(
            parse_alternate("ember.join_reordering=false, true"),
            Ok(Alternate {
                key: "ember.join_reordering".into(),
                values: vec!["false".into(), "true".into()],
            })
        );
        assert!(parse_alternate("ember.join_reordering").is_err());
        assert!(parse_alternate("ember.join_reordering=true").is_err());
        assert!(parse_alternate("ember.join_reordering=true,").is_err());
    }
}

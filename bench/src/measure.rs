//! Timing one query on one engine.

use std::path::Path;
use std::time::Instant;

use crate::{BenchEngine, QueryRecord, result_answer, result_digest, rss, summarize};

/// Runs query `query` (its `statements`, one after the other: TPC-DS
/// queries 14, 23, 24 and 39 have two) `runs` times on `engine` and
/// records the median time, the peak memory of the engine's processes, the
/// rows and the digest of the last run's results, and, with `answers`, the
/// results themselves as `<engine>-q<N>.json` there.
pub async fn measure(
    engine: &BenchEngine,
    query: usize,
    statements: &[String],
    runs: usize,
    answers: Option<&Path>,
) -> QueryRecord {
    let mut record = QueryRecord {
        engine: engine.name(),
        version: engine.version(),
        query,
        median: None,
        min: None,
        max: None,
        rows: None,
        digest: None,
        peak_rss: Vec::new(),
        spilled_bytes: None,
        error: None,
    };
    for (_, pid) in engine.processes() {
        rss::reset_peak(*pid);
    }
    let mut times = Vec::new();
    let mut last = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let mut batches = Vec::new();
        for sql in statements {
            match engine.run(sql).await {
                Ok(result) => batches.extend(result),
                Err(e) => {
                    record.error = Some(e.to_string());
                    return record;
                }
            }
        }
        times.push(started.elapsed().as_secs_f64());
        last = batches;
    }
    let (median, min, max) = summarize(&times);
    record.median = Some(median);
    record.min = Some(min);
    record.max = Some(max);
    record.rows = Some(last.iter().map(|b| b.num_rows()).sum());
    match result_digest(&last) {
        Ok(digest) => record.digest = Some(digest),
        Err(e) => record.error = Some(format!("cannot digest the result: {e}")),
    }
    if let Some(dir) = answers {
        let path = dir.join(format!("{}-q{query}.json", record.engine));
        let written = result_answer(&last)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(&path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            record.error = Some(format!("cannot write {}: {e}", path.display()));
        }
    }
    record.spilled_bytes = engine.last_spilled_bytes().await;
    record.peak_rss = engine
        .processes()
        .iter()
        .filter_map(|(name, pid)| rss::peak(*pid).map(|bytes| (name.clone(), bytes)))
        .collect();
    record
}

//! The fuzzing loop: each kept regression and generated query on Ember embedded, on a local
//! cluster and on DuckDB, with every disagreement recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ember_bench::{BenchEngine, EngineKind, Suite};

use crate::FuzzError;
use crate::answer::{Rows, compare, rows_of_batches};
use crate::duckdb::DuckDb;
use crate::query::{Query, QueryGenerator, Shape};
use crate::regressions::regressions;

/// What a run does.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// The generator's seed.
    pub seed: u64,
    /// How many queries to run.
    pub queries: usize,
    /// TPC-H scale factor of the data.
    pub scale_factor: f64,
    /// Where the data is (generated there when missing).
    pub data: PathBuf,
    /// Executors of the local cluster.
    pub executors: usize,
    /// Cores for each engine.
    pub threads: usize,
    /// Directory of `ember-scheduler` and `ember-executor`.
    pub bin_dir: PathBuf,
    /// The Python that has DuckDB.
    pub python: PathBuf,
    /// How long one query may take on one engine.
    pub timeout: Duration,
}

/// How one engine answered.
type EngineAnswer = Result<Rows, String>;

/// The kinds of disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DifferenceKind {
    /// Ember on a cluster answered differently from Ember embedded.
    ClusterDiffers,
    /// Ember failed where DuckDB answered.
    EmberFails,
    /// DuckDB failed where Ember answered.
    DuckDbFails,
    /// Both answered, differently.
    AnswersDiffer,
}

impl DifferenceKind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            DifferenceKind::ClusterDiffers => "cluster differs from embedded",
            DifferenceKind::EmberFails => "Ember fails, DuckDB answers",
            DifferenceKind::DuckDbFails => "DuckDB fails, Ember answers",
            DifferenceKind::AnswersDiffer => "answers differ",
        }
    }
}

/// One disagreement.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The query's number in the run (from 0).
    pub index: usize,
    /// Its shape.
    pub shape: Shape,
    /// Its text.
    pub sql: String,
    /// What disagreed.
    pub kind: DifferenceKind,
    /// How.
    pub detail: String,
}

/// Counts for one shape.
#[derive(Debug, Clone, Default)]
pub struct ShapeCounts {
    /// Queries generated.
    pub queries: usize,
    /// Queries every engine answered alike.
    pub agreed: usize,
    /// Queries every engine rejected.
    pub rejected: usize,
    /// Queries with a disagreement.
    pub differed: usize,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    /// What was run.
    pub options: FuzzOptions,
    /// Counts by shape.
    pub shapes: BTreeMap<Shape, ShapeCounts>,
    /// Every disagreement.
    pub differences: Vec<Difference>,
    /// Queries every engine rejected, with DuckDB's and Ember's errors (the
    /// generator's own mistakes, or errors both engines agree on).
    pub rejected: Vec<(usize, String, String, String)>,
    /// Rows returned by the queries every engine answered alike.
    pub rows_compared: usize,
    /// How long the run took.
    pub elapsed: Duration,
}

impl FuzzReport {
    /// Generated queries run (kept regressions not counted).
    pub fn queries(&self) -> usize {
        self.generated().map(|c| c.queries).sum()
    }

    /// Generated queries every engine answered alike.
    pub fn agreed(&self) -> usize {
        self.generated().map(|c| c.agreed).sum()
    }

    /// Kept regressions run.
    pub fn regressions(&self) -> usize {
        self.shapes.get(&Shape::Regression).map_or(0, |c| c.queries)
    }

    fn generated(&self) -> impl Iterator<Item = &ShapeCounts> {
        self.shapes
            .iter()
            .filter(|(shape, _)| **shape != Shape::Regression)
            .map(|(_, counts)| counts)
    }
}

async fn run_ember(engine: &BenchEngine, sql: &str, timeout: Duration) -> EngineAnswer {
    match tokio::time::timeout(timeout, engine.run(sql)).await {
        Ok(Ok(batches)) => Ok(rows_of_batches(&batches)),
        Ok(Err(e)) => Err(e.to_string().lines().next().unwrap_or_default().to_string()),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// The verdict on one query's three answers.
fn judge(
    query: &Query,
    embedded: &EngineAnswer,
    cluster: &EngineAnswer,
    duckdb: &EngineAnswer,
) -> Result<Option<usize>, (DifferenceKind, String)> {
    let cluster_vs_embedded = match (embedded, cluster) {
        (Ok(e), Ok(c)) => compare(e, c, query.ordered).err(),
        (Err(_), Err(_)) => None,
        (Ok(_), Err(c)) => Some(format!("the cluster fails: {c}")),
        (Err(e), Ok(_)) => Some(format!("embedded fails: {e}")),
    };
    if let Some(detail) = cluster_vs_embedded {
        return Err((DifferenceKind::ClusterDiffers, detail));
    }
    match (duckdb, embedded) {
        (Ok(d), Ok(e)) => match compare(d, e, query.ordered) {
            Ok(()) => Ok(Some(d.len())),
            Err(detail) => Err((
                DifferenceKind::AnswersDiffer,
                format!("DuckDB against Ember, {detail}"),
            )),
        },
        (Err(_), Err(_)) => Ok(None),
        (Ok(_), Err(e)) => Err((DifferenceKind::EmberFails, e.clone())),
        (Err(d), Ok(_)) => Err((DifferenceKind::DuckDbFails, d.clone())),
    }
}

/// The three engines a query runs on.
struct Engines<'a> {
    duckdb: &'a mut DuckDb,
    embedded: &'a BenchEngine,
    cluster: &'a BenchEngine,
    timeout: Duration,
}

impl Engines<'_> {
    /// Runs `query` on every engine and records the verdict in `report`.
    async fn judge(
        &mut self,
        report: &mut FuzzReport,
        index: usize,
        query: &Query,
    ) -> Result<(), FuzzError> {
        let duckdb_answer = self.duckdb.run(&query.sql)?;
        let embedded_answer = run_ember(self.embedded, &query.sql, self.timeout).await;
        let cluster_answer = run_ember(self.cluster, &query.sql, self.timeout).await;
        let counts = report.shapes.entry(query.shape).or_default();
        counts.queries += 1;
        match judge(query, &embedded_answer, &cluster_answer, &duckdb_answer) {
            Ok(Some(rows)) => {
                counts.agreed += 1;
                report.rows_compared += rows;
            }
            Ok(None) => {
                counts.rejected += 1;
                report.rejected.push((
                    index,
                    query.sql.clone(),
                    duckdb_answer.err().unwrap_or_default(),
                    embedded_answer.err().unwrap_or_default(),
                ));
            }
            Err((kind, detail)) => {
                counts.differed += 1;
                report.differences.push(Difference {
                    index,
                    shape: query.shape,
                    sql: query.sql.clone(),
                    kind,
                    detail,
                });
            }
        }
        Ok(())
    }
}

/// Runs the kept regressions (`fuzz/regressions.sql`), then
/// `options.queries` generated queries, on Ember embedded, a local cluster
/// and DuckDB. `progress` is called after each query with the
/// number run so far.
pub async fn run(
    options: &FuzzOptions,
    mut progress: impl FnMut(usize, &FuzzReport),
) -> Result<FuzzReport, FuzzError> {
    let started = Instant::now();
    Suite::Tpch.generate(&options.data, options.scale_factor, 1)?;
    let mut duckdb = DuckDb::start(&options.python, &options.data)?;
    let start = |kind| {
        BenchEngine::start(
            kind,
            Suite::Tpch,
            &options.data,
            options.threads,
            &options.bin_dir,
            None,
        )
    };
    let embedded = start(EngineKind::Embedded).await?;
    let cluster = start(EngineKind::Cluster {
        executors: options.executors,
    })
    .await?;
    let mut report = FuzzReport {
        options: options.clone(),
        shapes: BTreeMap::new(),
        differences: Vec::new(),
        rejected: Vec::new(),
        rows_compared: 0,
        elapsed: Duration::ZERO,
    };
    let mut engines = Engines {
        duckdb: &mut duckdb,
        embedded: &embedded,
        cluster: &cluster,
        timeout: options.timeout,
    };
    for (index, regression) in regressions().into_iter().enumerate() {
        engines.judge(&mut report, index, &regression.query).await?;
    }
    let mut generator = QueryGenerator::new(options.seed);
    for index in 0..options.queries {
        let query = generator.next_query();
        engines.judge(&mut report, index, &query).await?;
        progress(index + 1, &report);
    }
    // The cluster must still answer after all of it.
    cluster.run("SELECT 1").await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

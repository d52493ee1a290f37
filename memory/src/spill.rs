//! What a query spilled: the sum of the spill metrics of every operator of
//! its physical plan.

use std::fmt;
use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};

use crate::size::ByteSize;

/// Spill totals of one plan or job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillTotals {
    /// Spill files written.
    pub files: usize,
    /// Bytes written to them.
    pub bytes: usize,
    /// Rows written to them.
    pub rows: usize,
}

impl SpillTotals {
    /// The totals of every operator of `plan`, after it ran.
    pub fn of_plan(plan: &Arc<dyn ExecutionPlan>) -> Self {
        let mut totals = Self::default();
        totals.add_plan(plan);
        totals
    }

    /// The totals of operator metrics already collected (a stage's, from
    /// its tasks).
    pub fn of_metrics(metrics: &[MetricsSet]) -> Self {
        let mut totals = Self::default();
        for set in metrics {
            for metric in set.iter() {
                totals.add_metric(metric.value());
            }
        }
        totals
    }

    fn add_plan(&mut self, plan: &Arc<dyn ExecutionPlan>) {
        if let Some(metrics) = plan.metrics() {
            for metric in metrics.iter() {
                self.add_metric(metric.value());
            }
        }
        for child in plan.children() {
            self.add_plan(child);
        }
    }

    /// Adds one metric, when it is a spill metric: DataFusion's spill
    /// metrics, or a counter named like them (Ballista's shuffle writer
    /// counts its spills in `spill_count` and `spill_bytes`).
    pub fn add_metric(&mut self, value: &MetricValue) {
        match value {
            MetricValue::SpillCount(count) => self.files += count.value(),
            MetricValue::SpilledBytes(count) => self.bytes += count.value(),
            MetricValue::SpilledRows(count) => self.rows += count.value(),
            MetricValue::Count { name, count } => self.add_named(name, count.value()),
            _ => {}
        }
    }

    /// Adds a counter by its name: `spill_count`, `spilled_bytes` (or
    /// `spill_bytes`) and `spilled_rows`; others are ignored.
    pub fn add_named(&mut self, name: &str, value: usize) {
        match name {
            "spill_count" => self.files += value,
            "spilled_bytes" | "spill_bytes" => self.bytes += value,
            "spilled_rows" => self.rows += value,
            _ => {}
        }
    }

    /// Whether anything was spilled.
    pub fn spilled(&self) -> bool {
        self.files > 0 || self.bytes > 0
    }
}

impl std::ops::AddAssign for SpillTotals {
    fn add_assign(&mut self, other: Self) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.rows += other.rows;
    }
}

/// `spilled 1.2 GiB (3000000 rows) in 14 files`.
impl fmt::Display for SpillTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = if self.files == 1 { "file" } else { "files" };
        write!(
            f,
            "spilled {} ({} rows) in {} {files}",
            ByteSize::new(self.bytes as u64),
            self.rows,
            self.files
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::metrics::Count;

    fn count(n: usize) -> Count {
        let count = Count::new();
        count.add(n);
        count
    }

    #[test]
    fn spill_metrics_of_datafusion_and_of_named_counters_add_up() {
        let mut totals = SpillTotals::default();
        totals.add_metric(&MetricValue::SpillCount(count(2)));
        totals.add_metric(&MetricValue::SpilledBytes(count(1000)));
        totals.add_metric(&MetricValue::SpilledRows(count(10)));
        totals.add_metric(&MetricValue::Count {
            name: "spill_bytes".into(),
            count: count(24),
        });
        totals.add_metric(&MetricValue::Count {
            name: "output_batches".into(),
            count: count(99),
        });
        totals.add_metric(&MetricValue::OutputRows(count(7)));
        assert_eq!(
            totals,
            SpillTotals {
                files: 2,
                bytes: 1024,
                rows: 10
            }
        );
        assert!(totals.spilled());
        assert_eq!(totals.to_string(), "spilled 1.0 KiB (10 rows) in 2 files");
        assert!(!SpillTotals::default().spilled());
    }
}

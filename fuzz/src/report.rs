//! The run's report in Markdown, as committed under `fuzz/results/`.

use std::fmt::Write;

use crate::query::Shape;
use crate::run::FuzzReport;

/// Text cut to `max` characters, on one line.
fn clip(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        line
    } else {
        format!("{}…", line.chars().take(max).collect::<String>())
    }
}

impl FuzzReport {
    /// The report in Markdown; `machine` describes where it ran.
    pub fn to_markdown(&self, machine: &str) -> String {
        let o = &self.options;
        let mut out = String::new();
        let _ = writeln!(out, "# Differential SQL fuzzing: Ember against DuckDB\n");
        let _ = writeln!(
            out,
            "{} queries from seed {} (and {} kept regressions, `fuzz/regressions.sql`), over \
             TPC-H at scale factor {}, each run on Ember embedded, on a local cluster of {} \
             executors and on DuckDB; {} s in all.\n",
            self.queries(),
            o.seed,
            self.regressions(),
            o.scale_factor,
            o.executors,
            self.elapsed.as_secs()
        );
        if self.queries() < o.queries {
            let _ = writeln!(
                out,
                "This report was written while the run went on: {} of the {} queries asked for had run.\n",
                self.queries(),
                o.queries
            );
        }
        let _ = writeln!(out, "Machine: {machine}\n");
        let _ = writeln!(
            out,
            "Every engine agreed on {} generated queries ({} rows compared); every engine rejected {}; \
             {} differed.\n",
            self.agreed(),
            self.rows_compared,
            self.rejected.len(),
            self.differences.len()
        );
        let _ = writeln!(
            out,
            "| shape | queries | agreed | all rejected | differed |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        for (shape, c) in &self.shapes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                shape.name(),
                c.queries,
                c.agreed,
                c.rejected,
                c.differed
            );
        }
        let _ = writeln!(out, "\n## Differences\n");
        if self.differences.is_empty() {
            let _ = writeln!(out, "None.");
        }
        for d in &self.differences {
            let _ = writeln!(
                out,
                "- {} {} ({}), {}: {}\n\n  ```sql\n  {}\n  ```\n",
                if d.shape == Shape::Regression {
                    "kept regression"
                } else {
                    "query"
                },
                d.index,
                d.shape.name(),
                d.kind.name(),
                clip(&d.detail, 300),
                clip(&d.sql, 2000)
            );
        }
        let _ = writeln!(out, "## Rejected by every engine\n");
        if self.rejected.is_empty() {
            let _ = writeln!(out, "None.");
        }
        for (index, sql, duckdb, ember) in self.rejected.iter().take(20) {
            let _ = writeln!(
                out,
                "- query {index}: DuckDB: {}; Ember: {}\n\n  ```sql\n  {}\n  ```\n",
                clip(duckdb, 200),
                clip(ember, 200),
                clip(sql, 600)
            );
        }
        out
    }
}

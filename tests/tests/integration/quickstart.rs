//! The README's first command: `ember sql -f examples/quickstart.sql` from the
//! repository root, over the sample data the repository brings.

use std::path::Path;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember::tpch::{TABLES, TpchGenerator};
use ember_tests::{compare, repo_root, run_ember_in, start_cluster};

async fn table_rows(
    ctx: &SessionContext,
    dir: &Path,
    table: &str,
) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    let location = format!("{}/", dir.join(table).display());
    ctx.read_parquet(location, ParquetReadOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_data_is_what_the_generator_makes() {
    let committed = repo_root().join("examples/data/tpch-sf0.01");
    let fresh = tempfile::tempdir().unwrap();
    TpchGenerator {
        scale_factor: 0.01,
        ..TpchGenerator::default()
    }
    .write_all(fresh.path())
    .unwrap();
    let ctx = SessionContext::new();
    for table in TABLES {
        let expected = table_rows(&ctx, fresh.path(), table).await;
        let actual = table_rows(&ctx, &committed, table).await;
        compare(&expected, &actual, false).unwrap_or_else(|diff| panic!("{table}: {diff}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_gives_the_same_answers_embedded_and_on_a_cluster() {
    let root = repo_root();
    let (code, embedded, stderr) = tokio::task::spawn_blocking({
        let root = root.clone();
        move || run_ember_in(&root, &["sql", "-f", "examples/quickstart.sql"], None)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    // Known answers from the sample data.
    assert!(
        embedded.contains("| 60175      | 15000  | 1500      |"),
        "{embedded}"
    );
    assert!(
        embedded.contains("| ASIA        | Customer#000001489 | 5408941.28 |"),
        "{embedded}"
    );
    assert!(
        embedded.contains("| 1995-12-01T00:00:00 | 217    | 2204          |"),
        "{embedded}"
    );
    // Six result tables, each drawn with three border lines.
    let borders = embedded
        .lines()
        .filter(|line| line.starts_with("+-"))
        .count();
    assert_eq!(borders, 18, "six result tables: {embedded}");

    let cluster = start_cluster(2).await;
    let addr = cluster.address().to_string();
    let (code, distributed, stderr) = tokio::task::spawn_blocking(move || {
        run_ember_in(
            &root,
            &["sql", "--scheduler", &addr, "-f", "examples/quickstart.sql"],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(distributed, embedded);
}

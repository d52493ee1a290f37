use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};

use crate::test_support::{
    int64, parquet_file, physical_plan, printed_result, session_with_setting, shown,
};

/// Rows of `sales`.
const ROWS: i64 = 30_000;

/// `sales` as a Parquet file in `dir`: `region` one of four names, `shop`
/// = row % 12 (three shops a region), `item` = row % 50, `qty` = row % 7,
/// `price` = row, null where row % 11 = 0.
async fn sales_file(dir: &tempfile::TempDir) -> String {
    let regions = ["north", "east", "south", "west"];
    let region: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..ROWS).map(|row| regions[(row % 12 / 3) as usize]),
    ));
    let price: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from_iter(
        (0..ROWS).map(|row| (row % 11 != 0).then_some(row)),
    ));
    let batch = RecordBatch::try_from_iter(vec![
        ("region", region),
        ("shop", int64((0..ROWS).map(|row| row % 12))),
        ("item", int64((0..ROWS).map(|row| row % 50))),
        ("qty", int64((0..ROWS).map(|row| row % 7))),
        ("price", price),
    ])
    .unwrap();
    parquet_file(dir, "sales.parquet", batch).await
}

/// A session reading `sales` from `file` on four partitions: Ember's with
/// `ember.aggregate_before_grouping_sets` as `on` (on a cluster's
/// configuration with `cluster`), or DataFusion's own with `ember` false.
async fn context(file: &str, ember: bool, on: bool, cluster: bool) -> SessionContext {
    let setting = (
        "ember.aggregate_before_grouping_sets",
        if on { "true" } else { "false" },
    );
    let ctx = session_with_setting(ember, cluster, 4, setting);
    ctx.register_parquet("sales", file, ParquetReadOptions::default())
        .await
        .unwrap();
    ctx
}

/// What DataFusion alone answers to `sql`, printed.
async fn datafusion_answer(file: &str, sql: &str) -> String {
    let ctx = context(file, false, false, false).await;
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// Queries over grouping sets, each ordered by every output column.
const GROUPING_SET_QUERIES: [&str; 6] = [
    // ROLLUP with every kind of state: one value (sum, min, max, count),
    // two (avg), a list (count distinct), and GROUPING().
    "SELECT region, shop, item, sum(price) AS total, count(price) AS n, count(*) AS all_rows, \
     avg(qty) AS mean_qty, min(price) AS low, max(price) AS high, \
     count(DISTINCT qty) AS quantities, grouping(shop) AS no_shop \
     FROM sales GROUP BY ROLLUP (region, shop, item) \
     ORDER BY region NULLS FIRST, shop NULLS FIRST, item NULLS FIRST",
    // CUBE over two columns, with an aggregate filter.
    "SELECT region, qty, sum(price) FILTER (WHERE item < 10) AS small_items, count(*) AS n \
     FROM sales GROUP BY CUBE (region, qty) ORDER BY region NULLS FIRST, qty NULLS FIRST",
    // A set repeated: two rows for each region, told apart by their
    // grouping id.
    "SELECT region, sum(qty) AS total, grouping(region) AS g FROM sales \
     GROUP BY GROUPING SETS ((region), (region), ()) \
     ORDER BY region NULLS FIRST, total",
    // An expression as a grouping column, and a filter below.
    "SELECT item % 5 AS bucket, region, sum(qty) AS total FROM sales WHERE shop < 6 \
     GROUP BY ROLLUP (item % 5, region) ORDER BY bucket NULLS FIRST, region NULLS FIRST",
    // Grouping sets without an aggregate function.
    "SELECT region, shop FROM sales GROUP BY ROLLUP (region, shop) \
     ORDER BY region NULLS FIRST, shop NULLS FIRST",
    // No row reaches the aggregate: the grand total still answers one row.
    "SELECT region, shop, sum(price) AS total, count(*) AS n FROM sales WHERE qty > 100 \
     GROUP BY ROLLUP (region, shop) ORDER BY region NULLS FIRST, shop NULLS FIRST",
];

/// Every query answers as DataFusion does with the rule on and off, and
/// with it on its plan expands a partial aggregate by all the columns
/// into the sets (a `PartialReduce` aggregate above the expansion).
#[tokio::test]
async fn grouping_sets_aggregated_first_answer_as_datafusion_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = sales_file(&dir).await;
    for sql in GROUPING_SET_QUERIES {
        let want = datafusion_answer(&file, sql).await;
        for on in [true, false] {
            let ctx = context(&file, true, on, false).await;
            let plan = physical_plan(&ctx, sql).await;
            let plan_shown = shown(&plan);
            assert_eq!(
                plan_shown.contains("ExpandGroupingSetsExec")
                    && plan_shown.contains("mode=PartialReduce"),
                on,
                "on {on}: {sql}\n{plan_shown}"
            );
            assert_eq!(printed_result(&ctx, plan).await, want, "on {on}: {sql}");
        }
    }
}

/// The rollup of the first query, checked against values worked out from
/// the rows, so that the reference itself is checked: the grand total and
/// one region's.
#[tokio::test]
async fn a_rollup_totals_what_the_rows_say() {
    let dir = tempfile::tempdir().unwrap();
    let file = sales_file(&dir).await;
    let ctx = context(&file, true, true, false).await;
    let sql = "SELECT region, shop, sum(price) AS total, count(*) AS n FROM sales \
               GROUP BY ROLLUP (region, shop) HAVING shop IS NULL \
               ORDER BY region NULLS FIRST";
    let plan = physical_plan(&ctx, sql).await;
    assert!(shown(&plan).contains("ExpandGroupingSetsExec"));
    let priced = |keep: &dyn Fn(i64) -> bool| -> i64 {
        (0..ROWS).filter(|row| row % 11 != 0 && keep(*row)).sum()
    };
    let regions = ["east", "north", "south", "west"];
    let region_of = |row: i64| ["north", "east", "south", "west"][(row % 12 / 3) as usize];
    let mut rows = vec![(None, priced(&|_| true), ROWS)];
    for region in regions {
        rows.push((
            Some(region),
            priced(&|row| region_of(row) == region),
            ROWS / 4,
        ));
    }
    let want = RecordBatch::try_from_iter(vec![
        (
            "region",
            Arc::new(StringArray::from_iter(rows.iter().map(|row| row.0))) as ArrayRef,
        ),
        (
            "shop",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![None; 5])) as ArrayRef,
        ),
        ("total", int64(rows.iter().map(|row| row.1))),
        ("n", int64(rows.iter().map(|row| row.2))),
    ])
    .unwrap();
    assert_eq!(
        printed_result(&ctx, plan).await,
        pretty_format_batches(&[want]).unwrap().to_string()
    );
}

/// A plan with the expansion travels through Ember's codec, as a stage
/// does to an executor, and answers the same; a cluster's session plans it
/// too.
#[tokio::test]
async fn the_expansion_travels_to_executors() {
    let dir = tempfile::tempdir().unwrap();
    let file = sales_file(&dir).await;
    let codec = crate::EmberPhysicalCodec::default();
    for sql in GROUPING_SET_QUERIES {
        let want = datafusion_answer(&file, sql).await;
        let ctx = context(&file, true, true, true).await;
        let plan = physical_plan(&ctx, sql).await;
        assert!(shown(&plan).contains("ExpandGroupingSetsExec"), "{sql}");
        let bytes = physical_plan_to_bytes_with_extension_codec(plan, &codec).unwrap();
        let decoded: Arc<dyn ExecutionPlan> =
            physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        assert!(shown(&decoded).contains("ExpandGroupingSetsExec"), "{sql}");
        assert_eq!(printed_result(&ctx, decoded).await, want, "{sql}");
    }
}

/// Aggregates the rule leaves alone: one grouping set, a plain GROUP BY,
/// and an aggregate function that needs its input ordered.
#[tokio::test]
async fn aggregates_it_cannot_split_stay_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let file = sales_file(&dir).await;
    let ctx = context(&file, true, true, false).await;
    for sql in [
        "SELECT region, sum(qty) AS total FROM sales GROUP BY region ORDER BY region",
        "SELECT region, sum(qty) AS total FROM sales GROUP BY GROUPING SETS ((region)) \
         ORDER BY region",
        "SELECT region, array_agg(qty ORDER BY qty DESC) AS qs FROM sales \
         WHERE item = 3 GROUP BY ROLLUP (region) ORDER BY region NULLS FIRST",
    ] {
        let plan = physical_plan(&ctx, sql).await;
        let plan_shown = shown(&plan);
        assert!(
            !plan_shown.contains("ExpandGroupingSetsExec"),
            "{sql}\n{plan_shown}"
        );
        let want = datafusion_answer(&file, sql).await;
        assert_eq!(printed_result(&ctx, plan).await, want, "{sql}");
    }
}

/// DataFusion's numbering of grouping sets, which the expansion must
/// repeat: a bit per column, the first column's highest, set where the set
/// leaves it out, and the ordinal of a repeated set above them.
#[test]
fn grouping_ids_number_the_sets_as_datafusion_does() {
    use super::{grouping_id, grouping_id_type};
    use datafusion::arrow::datatypes::DataType;
    assert_eq!(grouping_id(&[false, false, false], 0), 0);
    assert_eq!(grouping_id(&[false, true, true], 0), 0b011);
    assert_eq!(grouping_id(&[true, true, true], 0), 0b111);
    assert_eq!(grouping_id(&[true, false], 1), 0b110);
    assert_eq!(grouping_id_type(3, 0).unwrap(), DataType::UInt8);
    assert_eq!(grouping_id_type(8, 1).unwrap(), DataType::UInt16);
    assert_eq!(grouping_id_type(30, 3).unwrap(), DataType::UInt32);
    assert_eq!(grouping_id_type(40, 0).unwrap(), DataType::UInt64);
    assert!(grouping_id_type(64, 1).is_err());
}

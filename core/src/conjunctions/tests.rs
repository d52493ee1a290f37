use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, IsNotNullExpr, LikeExpr, binary, col, lit,
};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::prelude::SessionConfig;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};

use super::{OrderedConjunction, evaluation_order};
use crate::config::session_config;
use crate::test_support::{ember_context, memory_table, physical_plan, printed_result};

const ROWS: usize = 1_000;

/// `a` = row, null where row % 7 = 0; `b` cycles through "x", "y", "z".
fn batch() -> RecordBatch {
    let a: ArrayRef = Arc::new(Int64Array::from_iter(
        (0..ROWS as i64).map(|row| (row % 7 != 0).then_some(row)),
    ));
    let b: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..ROWS).map(|row| ["x", "y", "z"][row % 3]),
    ));
    RecordBatch::try_from_iter(vec![("a", a), ("b", b)]).unwrap()
}

fn compare(
    schema: &Schema,
    column: &str,
    op: Operator,
    value: ScalarValue,
) -> Arc<dyn PhysicalExpr> {
    binary(col(column, schema).unwrap(), op, lit(value), schema).unwrap()
}

/// The rows `conjunction` keeps in `batch`.
fn kept_rows(conjunction: &OrderedConjunction, batch: &RecordBatch) -> Vec<usize> {
    let kept = conjunction
        .evaluate(batch)
        .unwrap()
        .into_array(batch.num_rows())
        .unwrap();
    assert_eq!(kept.null_count(), 0);
    let kept = kept.as_boolean();
    (0..kept.len()).filter(|&row| kept.value(row)).collect()
}

#[test]
fn an_ordered_conjunction_keeps_the_rows_every_conjunct_is_true_for() {
    let batch = batch();
    let schema = batch.schema();
    let b_is_x = compare(&schema, "b", Operator::Eq, ScalarValue::from("x"));
    let a_above_100 = compare(&schema, "a", Operator::Gt, ScalarValue::Int64(Some(100)));
    let a_below_900 = compare(&schema, "a", Operator::Lt, ScalarValue::Int64(Some(900)));
    let expected = |rows: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..ROWS).filter(|&row| rows(row)).collect()
    };
    let in_range = |row: usize| !row.is_multiple_of(7) && row > 100 && row < 900;

    // `b = 'x'` keeps a third: the later conjuncts read the kept rows only.
    let selective_first = OrderedConjunction::try_new(vec![
        Arc::clone(&b_is_x),
        Arc::clone(&a_above_100),
        Arc::clone(&a_below_900),
    ])
    .unwrap();
    assert_eq!(
        kept_rows(&selective_first, &batch),
        expected(&|row| row.is_multiple_of(3) && in_range(row))
    );

    // `a > 100` keeps most rows: `a < 900` reads the whole batch, then
    // `b = 'x'` the rows left.
    let broad_first = OrderedConjunction::try_new(vec![a_above_100, a_below_900, b_is_x]).unwrap();
    assert_eq!(
        kept_rows(&broad_first, &batch),
        expected(&|row| row.is_multiple_of(3) && in_range(row))
    );

    // A conjunct that reads no column, on the kept rows only.
    let constant = binary(lit(1i64), Operator::Eq, lit(1i64), &schema).unwrap();
    let b_is_y = compare(&schema, "b", Operator::Eq, ScalarValue::from("y"));
    let without_columns = OrderedConjunction::try_new(vec![b_is_y, constant]).unwrap();
    assert_eq!(
        kept_rows(&without_columns, &batch),
        expected(&|row| row % 3 == 1)
    );

    // A conjunct that keeps nothing ends the evaluation.
    let nothing = compare(&schema, "b", Operator::Eq, ScalarValue::from("w"));
    let a_is_null = Arc::new(IsNotNullExpr::new(col("a", &schema).unwrap()));
    let none = OrderedConjunction::try_new(vec![nothing, a_is_null]).unwrap();
    assert_eq!(kept_rows(&none, &batch), Vec::<usize>::new());
}

/// Statistics for the columns `d` (0 to 1000) and `x` (0 to 100), 10,000
/// rows, no distinct counts.
fn statistics() -> Statistics {
    let column = |min: i64, max: i64| ColumnStatistics {
        min_value: Precision::Exact(ScalarValue::Int64(Some(min))),
        max_value: Precision::Exact(ScalarValue::Int64(Some(max))),
        null_count: Precision::Exact(0),
        ..ColumnStatistics::new_unknown()
    };
    Statistics {
        num_rows: Precision::Exact(10_000),
        total_byte_size: Precision::Absent,
        column_statistics: vec![
            column(0, 1000),
            column(0, 100),
            ColumnStatistics::new_unknown(),
        ],
    }
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("d", DataType::Int64, false),
        Field::new("x", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ])
}

fn shown_order(order: &[Arc<dyn PhysicalExpr>]) -> Vec<String> {
    order.iter().map(ToString::to_string).collect()
}

#[test]
fn conjuncts_on_one_column_are_estimated_together_as_a_range() {
    let schema = schema();
    let x_below_30 = compare(&schema, "x", Operator::Lt, ScalarValue::Int64(Some(30)));
    let d_from_100 = compare(&schema, "d", Operator::GtEq, ScalarValue::Int64(Some(100)));
    let d_below_200 = compare(&schema, "d", Operator::Lt, ScalarValue::Int64(Some(200)));
    // Alone, `d >= 100` keeps 90% and `x < 30` 30%; together with
    // `d < 200` (20%) the range on `d` keeps 10%, so both go first.
    let order = evaluation_order(
        &[&x_below_30, &d_from_100, &d_below_200],
        Some(&statistics()),
    );
    assert_eq!(shown_order(&order), ["d@0 < 200", "d@0 >= 100", "x@1 < 30"]);
    // An empty range comes first of all.
    let x_above_200 = compare(&schema, "x", Operator::Gt, ScalarValue::Int64(Some(200)));
    let order = evaluation_order(&[&d_below_200, &x_above_200], Some(&statistics()));
    assert_eq!(shown_order(&order), ["x@1 > 200", "d@0 < 200"]);
}

#[test]
fn conjuncts_statistics_cannot_read_get_fixed_shares() {
    let schema = schema();
    let columns_compared = binary(
        col("d", &schema).unwrap(),
        Operator::Lt,
        col("x", &schema).unwrap(),
        &schema,
    )
    .unwrap();
    let not_null: Arc<dyn PhysicalExpr> = Arc::new(IsNotNullExpr::new(col("s", &schema).unwrap()));
    let like: Arc<dyn PhysicalExpr> = Arc::new(LikeExpr::new(
        false,
        false,
        col("s", &schema).unwrap(),
        lit("a%"),
    ));
    let equal_either: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
        compare(&schema, "s", Operator::Eq, ScalarValue::from("a")),
        Operator::Or,
        compare(&schema, "s", Operator::Eq, ScalarValue::from("b")),
    ));
    // Without statistics: IS NOT NULL 95%, d < x 1/3, either of two
    // values 19%, LIKE 10%; the written order among equals.
    let order = evaluation_order(&[&not_null, &columns_compared, &equal_either, &like], None);
    assert_eq!(
        shown_order(&order),
        [
            "s@2 LIKE a%",
            "s@2 = a OR s@2 = b",
            "d@0 < x@1",
            "s@2 IS NOT NULL"
        ]
    );
}

fn config(ordered: bool) -> SessionConfig {
    let mut config = session_config();
    config
        .options_mut()
        .set("ember.ordered_conjunctions", &ordered.to_string())
        .unwrap();
    config
}

/// `t`: `a` 0 to 999 and `b` cycling through "x", "y", "z".
fn context(ordered: bool) -> datafusion::prelude::SessionContext {
    let batch = batch();
    let ctx = ember_context(config(ordered));
    ctx.register_table(
        "t",
        memory_table(vec![
            (
                "a",
                Arc::new(Int64Array::from_iter_values(0..ROWS as i64)) as ArrayRef,
            ),
            ("b", Arc::clone(batch.column(1))),
        ]),
    )
    .unwrap();
    ctx
}

/// The predicate of the one filter in `plan`, shown, and whether it holds
/// an [`OrderedConjunction`].
fn filter_predicate(plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> (String, bool) {
    let mut predicates = Vec::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if let Some(filter) = node.downcast_ref::<FilterExec>() {
            let predicate = filter.predicate();
            let ordered = predicate
                .exists(|expr| Ok(expr.downcast_ref::<OrderedConjunction>().is_some()))
                .unwrap();
            predicates.push((predicate.to_string(), ordered));
        }
        stack.extend(node.children().into_iter().cloned());
    }
    assert_eq!(predicates.len(), 1, "{predicates:?}");
    predicates.remove(0)
}

const QUERY: &str = "SELECT count(*) AS n, sum(a) AS total FROM t \
     WHERE a <> 500 AND a % 2 = 0 AND b LIKE 'x%'";

/// Rows with a = 0, 6, 12, … 996 (b = 'x' and a even) but 500: 167 rows
/// summing to 6 · (0 + … + 166) = 83,166.
const EXPECTED: &str = "\
+-----+-------+
| n   | total |
+-----+-------+
| 167 | 83166 |
+-----+-------+";

#[tokio::test]
async fn a_filter_evaluates_its_most_selective_conjuncts_first_and_crosses_processes() {
    let ctx = context(true);
    let plan = physical_plan(&ctx, QUERY).await;
    // The equality `a % 2 = 0` stays in front; `b LIKE 'x%'` is estimated
    // to keep a tenth, `a <> 500` nine tenths.
    assert_eq!(
        filter_predicate(&plan),
        (
            "a@0 % 2 = 0 AND b@1 LIKE x% AND a@0 != 500".to_string(),
            true
        )
    );
    assert_eq!(printed_result(&ctx, Arc::clone(&plan)).await, EXPECTED);

    // Through Ember's codec, as a stage travels to an executor.
    let codec = crate::EmberPhysicalCodec::default();
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &codec).unwrap();
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    assert_eq!(
        filter_predicate(&decoded),
        (
            "a@0 % 2 = 0 AND b@1 LIKE x% AND a@0 != 500".to_string(),
            true
        )
    );
    assert_eq!(printed_result(&ctx, decoded).await, EXPECTED);

    // Already in order (the equality in front, then the rest, which no
    // statistics tell apart, as written): the order stays, the rest still
    // evaluated in sequence. Even a from 6 to 898: 447 rows summing to
    // 447 · 452 = 202,044.
    let sql = "SELECT count(*) AS n, sum(a) AS total FROM t WHERE a % 2 = 0 AND a > 5 AND a < 900";
    let plan = physical_plan(&ctx, sql).await;
    assert_eq!(
        filter_predicate(&plan),
        ("a@0 % 2 = 0 AND a@0 > 5 AND a@0 < 900".to_string(), true)
    );
    assert_eq!(
        printed_result(&ctx, plan).await,
        "+-----+--------+\n| n   | total  |\n+-----+--------+\n| 447 | 202044 |\n+-----+--------+"
    );

    // Off, the written order and the same answer.
    let ctx = context(false);
    let plan = physical_plan(&ctx, QUERY).await;
    assert_eq!(
        filter_predicate(&plan),
        (
            "a@0 != 500 AND a@0 % 2 = 0 AND b@1 LIKE x%".to_string(),
            false
        )
    );
    assert_eq!(printed_result(&ctx, plan).await, EXPECTED);
}

#[tokio::test]
async fn filters_the_rule_must_leave_as_written_stay_so() {
    let ctx = context(true);
    // One conjunct, and a volatile one: as written, no ordered conjunction.
    for (sql, shown) in [
        ("SELECT a FROM t WHERE b LIKE 'x%'", "b@1 LIKE x%"),
        (
            "SELECT a FROM t WHERE a <> 500 AND random() < 2.0 AND b LIKE 'x%'",
            "a@0 != 500 AND random() < 2 AND b@1 LIKE x%",
        ),
    ] {
        let plan = physical_plan(&ctx, sql).await;
        assert_eq!(filter_predicate(&plan), (shown.to_string(), false), "{sql}");
    }

    // `b = 'x'` makes `b` a constant the sort below relies on: the equality
    // stays a plain conjunct in front, the plan passes DataFusion's sanity
    // check, and the answer is the rows the filter keeps, in order.
    let sql = "SELECT a FROM t WHERE a % 5 = 1 AND a <> 6 AND b LIKE 'x%' AND b = 'x' \
               ORDER BY b, a LIMIT 3";
    let plan = physical_plan(&ctx, sql).await;
    assert_eq!(
        filter_predicate(&plan),
        (
            "a@0 % 5 = 1 AND b@1 = x AND b@1 LIKE x% AND a@0 != 6".to_string(),
            true
        )
    );
    // a = 1 mod 5 and 0 mod 3: 6 (left out), 21, 36, 51.
    assert_eq!(
        printed_result(&ctx, plan).await,
        "+----+\n| a  |\n+----+\n| 21 |\n| 36 |\n| 51 |\n+----+"
    );
}

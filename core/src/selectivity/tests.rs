use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, LikeExpr, binary, col, lit};
use datafusion::physical_expr::utils::conjunction;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::prelude::SessionContext;

use super::{SelectivityEstimate, like_selectivity};
use crate::config::session_config;
use crate::test_support::{
    ember_context, int64, memory_table, physical_plan, printed_count_and_total, printed_result,
    shown,
};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("d", DataType::Int64, false),
        Field::new("x", DataType::Decimal128(15, 2), false),
        Field::new("s", DataType::Utf8, true),
    ])
}

/// 1,000 rows: `d` from 0 to 999 (distinct count unknown), `x` from 0.00
/// to 10.00, `s` without statistics.
fn statistics() -> Statistics {
    let column = |min: ScalarValue, max: ScalarValue| ColumnStatistics {
        min_value: Precision::Exact(min),
        max_value: Precision::Exact(max),
        ..ColumnStatistics::new_unknown()
    };
    Statistics {
        num_rows: Precision::Exact(1000),
        total_byte_size: Precision::Absent,
        column_statistics: vec![
            column(ScalarValue::Int64(Some(0)), ScalarValue::Int64(Some(999))),
            column(
                ScalarValue::Decimal128(Some(0), 15, 2),
                ScalarValue::Decimal128(Some(1000), 15, 2),
            ),
            ColumnStatistics::new_unknown(),
        ],
    }
}

fn compare(name: &str, op: Operator, value: ScalarValue) -> Arc<dyn PhysicalExpr> {
    let schema = schema();
    binary(col(name, &schema).unwrap(), op, lit(value), &schema).unwrap()
}

fn like(pattern: &str) -> Arc<dyn PhysicalExpr> {
    Arc::new(LikeExpr::new(
        false,
        false,
        col("s", &schema()).unwrap(),
        lit(pattern),
    ))
}

fn assert_share(estimated: f64, expected: f64) {
    assert!(
        (estimated - expected).abs() < 1e-9,
        "estimated {estimated}, expected {expected}"
    );
}

#[test]
fn like_patterns_keep_fewer_rows_the_more_literal_characters_they_have() {
    for (pattern, share) in [
        ("a%", 0.1),
        ("abc%", 0.1),
        ("%abcd", 0.05),
        ("%green%", 0.025),
        ("forest%", 0.0125),
        // An escaped wildcard is a literal character.
        ("a\\%bcd%", 0.025),
        // No wildcard: an equality; only wildcards: every row.
        ("forest", 0.1),
        ("%", 1.0),
        ("_%", 1.0),
    ] {
        let pattern: Arc<dyn PhysicalExpr> = lit(pattern);
        assert_share(like_selectivity(&pattern), share);
    }
    // A pattern that is no literal string.
    assert_share(like_selectivity(&col("s", &schema()).unwrap()), 0.1);
}

#[test]
fn equality_keeps_one_value_of_the_column_s_span_or_distinct_count() {
    let statistics = statistics();
    let estimate = SelectivityEstimate::new(Some(&statistics), 0.2);
    let d_is_5 = compare("d", Operator::Eq, ScalarValue::Int64(Some(5)));
    // Whole numbers from 0 to 999: at most 1,000 values.
    assert_share(estimate.of(&d_is_5), 0.001);
    // Outside the column's range: nothing.
    let d_is_5000 = compare("d", Operator::Eq, ScalarValue::Int64(Some(5000)));
    assert_share(estimate.of(&d_is_5000), 0.0);
    // A decimal's span says nothing of its distinct values; nor does a
    // string without statistics.
    let x_is_1 = compare("x", Operator::Eq, ScalarValue::Decimal128(Some(100), 15, 2));
    assert_share(estimate.of(&x_is_1), 0.1);
    let s_is_a = compare("s", Operator::Eq, ScalarValue::from("a"));
    assert_share(estimate.of(&s_is_a), 0.1);
    // A known distinct count decides.
    let mut counted = statistics.clone();
    counted.column_statistics[0].distinct_count = Precision::Inexact(50);
    let estimate = SelectivityEstimate::new(Some(&counted), 0.2);
    assert_share(estimate.of(&d_is_5), 0.02);
}

#[test]
fn a_predicate_multiplies_its_conjuncts_and_its_ranges() {
    let statistics = statistics();
    let estimate = SelectivityEstimate::new(Some(&statistics), 0.2);
    let d_from_100 = compare("d", Operator::GtEq, ScalarValue::Int64(Some(100)));
    let d_below_200 = compare("d", Operator::Lt, ScalarValue::Int64(Some(200)));
    let either = Arc::new(BinaryExpr::new(
        like("forest%"),
        Operator::Or,
        compare("s", Operator::Eq, ScalarValue::from("b")),
    )) as Arc<dyn PhysicalExpr>;
    let predicate = conjunction([Arc::clone(&d_from_100), Arc::clone(&either), d_below_200]);
    // The range on `d` keeps 100 of 999; the disjunction 0.0125 + 0.1
    // less their overlap.
    let range = 100.0 / 999.0;
    let disjunction = 0.0125 + 0.1 - 0.0125 * 0.1;
    assert_share(estimate.of_predicate(&predicate), range * disjunction);
    // What nothing is known of keeps the caller's share, alone and
    // negated.
    let unknown = col("s", &schema()).unwrap();
    assert_share(estimate.of(&unknown), 0.2);
    assert_share(
        SelectivityEstimate::new(None, 0.5).of(&d_from_100),
        1.0 / 3.0,
    );
}

const PARTS: i64 = 10_000;
const FACTS: i64 = 40_000;

/// A session with Ember's state, `ember.filter_selectivity_estimates` as
/// `estimates`, four partitions, over `parts` (`id` 0..10,000, `name`
/// "forest{id}" for every 100th part, else "other{id}") and `facts`
/// (`part` = row % 10,000, `v` = row); joins broadcast a side estimated
/// below 5% of `parts`' bytes.
fn context(estimates: bool) -> SessionContext {
    let names: Vec<String> = (0..PARTS)
        .map(|id| {
            if id % 100 == 0 {
                format!("forest{id}")
            } else {
                format!("other{id}")
            }
        })
        .collect();
    let (ids, names) = (
        int64(0..PARTS),
        Arc::new(StringArray::from(names)) as ArrayRef,
    );
    let parts_bytes = ids.get_array_memory_size() + names.get_array_memory_size();
    let mut config = session_config().with_target_partitions(4);
    let options = config.options_mut();
    options
        .set("ember.filter_selectivity_estimates", &estimates.to_string())
        .unwrap();
    // Only the size limit decides broadcasts here, not the rows' ratio.
    options
        .set("ember.broadcast_join_probe_ratio", "0")
        .unwrap();
    options.optimizer.hash_join_single_partition_threshold = parts_bytes / 20;
    let ctx = ember_context(config);
    let parts = memory_table(vec![("id", ids), ("name", names)]);
    let facts = memory_table(vec![
        ("part", int64((0..FACTS).map(|row| row % PARTS))),
        ("v", int64(0..FACTS)),
    ]);
    ctx.register_table("parts", parts).unwrap();
    ctx.register_table("facts", facts).unwrap();
    ctx
}

/// The default selectivity of each filter in `plan`, top down.
fn filter_selectivities(plan: &Arc<dyn ExecutionPlan>) -> Vec<u8> {
    let mut found = Vec::new();
    plan.apply(|node| {
        if let Some(filter) = node.downcast_ref::<FilterExec>() {
            found.push(filter.default_selectivity());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    found
}

/// `parts` filtered by a long `LIKE` prefix (1% of its rows) is estimated
/// at 1% rather than DataFusion's 20%, which puts it under the broadcast
/// limit: the join broadcasts it instead of repartitioning both sides, and
/// the answer stays.
#[tokio::test]
async fn a_long_like_prefix_makes_its_table_small_enough_to_broadcast() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total FROM facts f JOIN parts p \
               ON f.part = p.id WHERE p.name LIKE 'forest%'";
    let rows: Vec<i64> = (0..FACTS).filter(|row| (row % PARTS) % 100 == 0).collect();
    let want = printed_count_and_total(rows.len(), rows.iter().sum());
    for (estimates, selectivity, mode) in [(false, 20, "Partitioned"), (true, 1, "CollectLeft")] {
        let ctx = context(estimates);
        let plan = physical_plan(&ctx, sql).await;
        let shown = shown(&plan);
        assert_eq!(filter_selectivities(&plan), [selectivity], "{shown}");
        assert!(
            shown.contains(&format!("HashJoinExec: mode={mode}")),
            "estimates {estimates}:\n{shown}"
        );
        assert_eq!(printed_result(&ctx, plan).await, want, "{shown}");
    }
}

/// Filters DataFusion's interval analysis reads, and predicates nothing is
/// known of, keep DataFusion's estimate.
#[tokio::test]
async fn filters_datafusion_can_estimate_or_nothing_is_known_of_are_left_alone() {
    let ctx = context(true);
    for sql in [
        "SELECT count(*) FROM parts WHERE id < 100",
        "SELECT count(*) FROM parts WHERE regexp_like(name, '^fo+rest')",
    ] {
        let plan = physical_plan(&ctx, sql).await;
        let shown = shown(&plan);
        assert_eq!(filter_selectivities(&plan), [20], "{sql}:\n{shown}");
        let answer = printed_result(&ctx, plan).await;
        assert!(answer.contains("| 100 "), "{sql}: {answer}");
    }
}

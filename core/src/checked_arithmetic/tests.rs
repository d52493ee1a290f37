use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::{object_store::runtime_env, session_config, session_state};

/// A context as an embedded session has it, with table `t`:
/// `big` BIGINT, `small` INT, `k` INT.
fn context() -> SessionContext {
    let config = session_config();
    let runtime = runtime_env(&config, None).unwrap();
    let state = session_state(config, runtime).unwrap();
    let context = SessionContext::new_with_state(state);
    let schema = Arc::new(Schema::new(vec![
        Field::new("big", DataType::Int64, true),
        Field::new("small", DataType::Int32, true),
        Field::new("k", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(vec![i64::MAX, i64::MAX, 1, i64::MIN])),
            Arc::new(Int32Array::from(vec![i32::MAX, 1, 2, i32::MIN])),
            Arc::new(Int32Array::from(vec![1, 1, 2, 3])),
        ],
    )
    .unwrap();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    context.register_table("t", Arc::new(table)).unwrap();
    context
}

async fn error_of(context: &SessionContext, sql: &str) -> String {
    let result = match context.sql(sql).await {
        Ok(frame) => frame.collect().await,
        Err(error) => Err(error),
    };
    match result {
        Ok(batches) => panic!("`{sql}` answered {batches:?} instead of failing"),
        Err(error) => error.to_string(),
    }
}

async fn one_i64(context: &SessionContext, sql: &str) -> Vec<Option<i64>> {
    let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
    let mut values = Vec::new();
    for batch in batches {
        let column = batch.column(0);
        assert_eq!(column.data_type(), &DataType::Int64, "{sql}");
        let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
        values.extend((0..column.len()).map(|i| column.is_valid(i).then(|| column.value(i))));
    }
    values
}

#[tokio::test]
async fn constant_arithmetic_that_overflows_fails_at_planning() {
    let context = context();
    for (sql, type_name) in [
        ("SELECT 9223372036854775807 + 1", "BIGINT"),
        ("SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)", "INT"),
        ("SELECT -(-9223372036854775807 - 1) - 1", "BIGINT"),
        ("SELECT 4611686018427387904 * 2", "BIGINT"),
        (
            "SELECT CASE WHEN big > 0 THEN 1 ELSE 9223372036854775807 + 1 END FROM t",
            "BIGINT",
        ),
    ] {
        let error = error_of(&context, sql).await;
        assert!(
            error.contains("numeric overflow") && error.contains(&format!("fit in {type_name}")),
            "{sql}: {error}"
        );
    }
    assert!(
        error_of(&context, "SELECT 9223372036854775807 + 1")
            .await
            .contains("9223372036854775807 + 1")
    );
    assert_eq!(
        one_i64(&context, "SELECT 9223372036854775806 + 1").await,
        vec![Some(i64::MAX)]
    );
}

#[tokio::test]
async fn column_arithmetic_that_overflows_fails_naming_the_expression() {
    let context = context();
    for (sql, named) in [
        ("SELECT big + 1 FROM t", "big + 1"),
        (
            "SELECT big - k FROM t WHERE k = 3",
            "big - CAST(k AS Int64)",
        ),
        ("SELECT small + small FROM t", "small + small"),
        ("SELECT big * k FROM t", "big * "),
        ("SELECT -big FROM t", "big"),
        ("SELECT k FROM t WHERE big + k > 0", "big + "),
        ("SELECT CAST(big AS INT) FROM t", "CAST(big AS Int32)"),
        ("SELECT k, max(big + k) FROM t GROUP BY k", "big + "),
        // Checked operands keep their parentheses.
        (
            "SELECT big * (1 - big) FROM t WHERE k = 1",
            "`big * (1 - big)`",
        ),
        (
            "SELECT (big - k) * 2 FROM t WHERE k = 1",
            "`(big - CAST(k AS Int64)) * 2`",
        ),
    ] {
        let error = error_of(&context, sql).await;
        assert!(error.contains("numeric overflow"), "{sql}: {error}");
        assert!(error.contains(named), "{sql}: {error}");
    }
    assert_eq!(
        one_i64(&context, "SELECT big - 1 FROM t WHERE k = 1 LIMIT 1").await,
        vec![Some(i64::MAX - 1)]
    );
}

#[tokio::test]
async fn a_decimal_beyond_its_precision_fails() {
    let context = context();
    // `big` squared (about 8.5e37) fits DECIMAL(38, 0); twice that fits 128
    // bits but not 38 digits.
    let square = "CAST(big AS DECIMAL(38, 0)) * CAST(big AS DECIMAL(38, 0))";
    let sql = format!("SELECT {square} + {square} FROM t WHERE k = 1");
    let error = error_of(&context, &sql).await;
    assert!(
        error.contains("numeric overflow") && error.contains("DECIMAL(38, 0)"),
        "{error}"
    );
    // A product whose operands' precisions allow more than 38 digits is
    // checked against 38 (about 1.28e38 fits 128 bits).
    let sql = "SELECT CAST(big AS DECIMAL(20, 0)) * CAST(13835058055282163712 AS DECIMAL(20, 0)) \
               FROM t WHERE k = 1";
    let error = error_of(&context, sql).await;
    assert!(
        error.contains("numeric overflow") && error.contains("DECIMAL(38, 0)"),
        "{error}"
    );
    let sql = format!("SELECT CAST({square} AS VARCHAR) FROM t WHERE k = 1 LIMIT 1");
    let batches = context.sql(&sql).await.unwrap().collect().await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap();
    assert!(
        text.to_string()
            .contains("85070591730234615847396907784232501249"),
        "{text}"
    );
}

#[tokio::test]
async fn constants_that_meet_only_after_optimization_are_checked_too() {
    let context = context();
    let error = error_of(
        &context,
        "SELECT d + 1 FROM (SELECT 9223372036854775807 AS d)",
    )
    .await;
    assert!(
        error.contains("numeric overflow") && error.contains("BIGINT"),
        "{error}"
    );
}

#[tokio::test]
async fn sum_over_integers_is_exact_or_fails() {
    let context = context();
    let error = error_of(&context, "SELECT sum(big) FROM t WHERE big > 0").await;
    assert!(
        error.contains("numeric overflow") && error.contains("BIGINT"),
        "{error}"
    );
    let error = error_of(&context, "SELECT k, sum(big) FROM t GROUP BY k").await;
    assert!(error.contains("numeric overflow"), "{error}");
    let error = error_of(&context, "SELECT sum(big) OVER (ORDER BY k) FROM t").await;
    assert!(error.contains("numeric overflow"), "{error}");
    // A sum that fits is exact, whatever its partial sums were, and keeps
    // the type `sum` has.
    assert_eq!(
        one_i64(&context, "SELECT sum(big) FROM t WHERE k <> 2").await,
        vec![Some(i64::MAX - 1)]
    );
    assert_eq!(
        one_i64(&context, "SELECT sum(small) FROM t").await,
        vec![Some(2)]
    );
    assert_eq!(
        one_i64(
            &context,
            "SELECT sum(small) AS s FROM t GROUP BY k HAVING sum(small) > 2 ORDER BY s"
        )
        .await,
        vec![Some(i64::from(i32::MAX) + 1)]
    );
}

#[tokio::test]
async fn window_operands_and_sort_keys_that_overflow_fail() {
    let context = context();
    for sql in [
        "SELECT sum(big + 1) OVER (PARTITION BY k) FROM t",
        "SELECT sum(small) OVER (PARTITION BY k ORDER BY big * 2) FROM t",
        "SELECT lag(small + small) OVER (ORDER BY k) FROM t",
        "SELECT max(k) OVER (PARTITION BY -big) FROM t",
        "SELECT k FROM t ORDER BY big + 1",
        "SELECT k FROM t ORDER BY small * CAST(2 AS INT) LIMIT 1",
    ] {
        let error = error_of(&context, sql).await;
        assert!(error.contains("numeric overflow"), "{sql}: {error}");
    }
}

#[tokio::test]
async fn computed_window_operands_and_sort_keys_keep_answers_and_names() {
    let unchecked = context();
    let context = context();
    let sql = "SELECT k, sum(k + 1) OVER (PARTITION BY k % 2 ORDER BY k * 10 \
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t ORDER BY k * 3, 2";
    let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
    unchecked
        .sql("SET ember.checked_arithmetic = false")
        .await
        .unwrap();
    let unchecked_schema = unchecked
        .sql(sql)
        .await
        .unwrap()
        .schema()
        .as_arrow()
        .clone();
    assert_eq!(
        batches[0].schema().as_ref(),
        &unchecked_schema,
        "the computed operands stay hidden and the window keeps its name"
    );
    let sums: Vec<i64> = batches
        .iter()
        .flat_map(|batch| {
            let column = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            column.values().to_vec()
        })
        .collect();
    // k = 1, 1, 2, 3: odd k run 2, 4, 8; even k runs 3.
    assert_eq!(sums, vec![2, 4, 3, 8]);
    assert_eq!(
        one_i64(
            &context,
            "SELECT big FROM t WHERE k < 3 ORDER BY k * -1, big LIMIT 2"
        )
        .await,
        vec![Some(1), Some(i64::MAX)]
    );
}

#[tokio::test]
async fn checks_can_be_turned_off_to_wrap_around() {
    let context = context();
    context
        .sql("SET ember.checked_arithmetic = false")
        .await
        .unwrap();
    assert_eq!(
        one_i64(&context, "SELECT 9223372036854775807 + 1").await,
        vec![Some(i64::MIN)]
    );
    assert_eq!(
        one_i64(&context, "SELECT big + 1 FROM t WHERE k = 1 LIMIT 1").await,
        vec![Some(i64::MIN)]
    );
}

/// `sql` planned, sent through Ember's physical codec as the scheduler
/// sends stages to executors, and run.
async fn run_decoded(
    context: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    use datafusion_proto::bytes::{
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };
    let codec = crate::EmberPhysicalCodec::default();
    let plan = context.sql(sql).await?.create_physical_plan().await?;
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &codec)?;
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &context.task_ctx(), &codec)?;
    datafusion::physical_plan::collect(decoded, context.task_ctx()).await
}

fn first_i64(batches: &[RecordBatch]) -> i64 {
    let column = batches[0].column(0);
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test]
async fn checked_plans_cross_processes_checked_and_long_chains_stay_flat() {
    let context = context();
    // 120 operands nest 120 deep: past the decoder's nesting limit (100
    // messages, two per level), unless the chain travels flat. With `k` as
    // one operand (2 where `big` is 1) and `big` as the others, it
    // overflows where `big` is large and fits where it is 1.
    let chain = vec!["big"; 119].join(" + ");
    let sql = format!("SELECT {chain} + k AS total FROM t WHERE k = 2");
    assert_eq!(
        first_i64(&run_decoded(&context, &sql).await.unwrap()),
        119 + 2
    );
    let sql = format!("SELECT {chain} + k AS total FROM t WHERE k = 1");
    let error = run_decoded(&context, &sql).await.unwrap_err().to_string();
    assert!(
        error.contains("numeric overflow") && error.contains("BIGINT"),
        "{error}"
    );
    // Casts and negations travel through the codec too.
    let sql = "SELECT -CAST(small AS BIGINT) FROM t WHERE k = 3";
    assert_eq!(
        first_i64(&run_decoded(&context, sql).await.unwrap()),
        -i64::from(i32::MIN)
    );
    let error = run_decoded(&context, "SELECT -big FROM t WHERE k = 3")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("numeric overflow"), "{error}");
}

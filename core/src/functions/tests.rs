//! Named functions through SQL, against the same Rust functions called
//! directly.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::*;

fn context(library: &FunctionLibrary) -> SessionContext {
    let ctx = SessionContext::new();
    for f in library
        .scalar_functions()
        .iter()
        .chain(standard_library().scalar_functions())
    {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in library
        .aggregate_functions()
        .iter()
        .chain(standard_library().aggregate_functions())
    {
        ctx.register_udaf(f.as_ref().clone());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let batch = |k: Vec<Option<i32>>, text: Vec<Option<&str>>, n: Vec<Option<i64>>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::Int32Array::from(k)),
                Arc::new(StringArray::from(text)),
                Arc::new(Int64Array::from(n)),
            ],
        )
        .unwrap()
    };
    let table = MemTable::try_new(
        schema.clone(),
        vec![
            vec![batch(
                vec![Some(1), Some(2), None],
                vec![Some("The cat's hat"), None, Some("a-b c")],
                vec![Some(5), Some(7), None],
            )],
            vec![batch(
                vec![Some(1), Some(2)],
                vec![Some("Hat, the END"), Some("")],
                vec![Some(-2), Some(i64::MAX)],
            )],
        ],
    )
    .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

#[tokio::test]
async fn scalar_functions_apply_per_row_with_nulls_passing_through() {
    let library = FunctionLibrary::new("test")
        .scalar1("twice", |x: i64| x * 2)
        .scalar2("repeat_n", |s: String, n: i64| {
            s.repeat(n.clamp(0, 3) as usize)
        });
    let ctx = context(&library);
    // k is INT: it is cast to the declared BIGINT.
    let batches = query(
        &ctx,
        "SELECT twice(k) AS t, repeat_n(text, k) AS r FROM t ORDER BY k, text",
    )
    .await;
    let twice: Vec<Option<i64>> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(twice, vec![Some(2), Some(2), Some(4), Some(4), None]);
    let repeated: Vec<Option<String>> = batches
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        repeated,
        vec![
            Some("Hat, the END".to_string()),
            Some("The cat's hat".to_string()),
            Some(String::new()),
            None,
            None
        ]
    );
    let err = ctx
        .sql("SELECT twice(k, k) FROM t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("function `twice` takes 1 argument(s), not 2"),
        "{err}"
    );
}

#[tokio::test]
async fn table_functions_produce_rows_through_unnest() {
    let ctx = context(&FunctionLibrary::new("test"));
    let batches = query(
        &ctx,
        "SELECT w FROM (SELECT unnest(words(text)) AS w FROM t) ORDER BY w",
    )
    .await;
    let words: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<String> = ["the", "cat's", "hat", "a", "b", "c", "hat", "the", "end"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(words, expected);
}

#[tokio::test]
async fn reduce_functions_fold_per_group_across_partitions() {
    let ctx = context(&FunctionLibrary::new("test"));
    let batches = query(
        &ctx,
        "SELECT k, plus(n) AS total, longest(text) AS l FROM t WHERE k = 1 GROUP BY k",
    )
    .await;
    let batch = &batches[0];
    assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(batch.column(2).as_string::<i32>().value(0), "The cat's hat");
    // No non-NULL input: NULL.
    let batches = query(&ctx, "SELECT plus(n) FROM t WHERE k IS NULL").await;
    assert!(batches[0].column(0).is_null(0));
    // Overflow fails the query with the function's name.
    let err = ctx
        .sql("SELECT plus(n) FROM t WHERE k = 2")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("function `plus`") && err.contains("overflows BIGINT"),
        "{err}"
    );
}

#[test]
fn registered_libraries_include_the_standard_one_and_replace_by_name() {
    register_library(FunctionLibrary::new("registry-test").scalar1("x_plus_one", |x: i64| x + 1));
    register_library(FunctionLibrary::new("registry-test").scalar1("x_plus_two", |x: i64| x + 2));
    let (scalars, aggregates) = registered_functions();
    let names: Vec<&str> = scalars.iter().map(|f| f.name()).collect();
    assert!(
        names.contains(&"words") && names.contains(&"x_plus_two"),
        "{names:?}"
    );
    assert!(!names.contains(&"x_plus_one"), "{names:?}");
    assert!(aggregates.iter().any(|f| f.name() == "plus"));
}

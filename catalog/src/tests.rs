use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;

use super::*;

/// A session whose default catalog is `catalog`.
fn session(catalog: &SharedCatalog) -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_catalog("datafusion", Arc::new(catalog.clone()));
    ctx
}

async fn answer(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// A CSV table of three rows in `dir`.
fn csv_table(dir: &std::path::Path) -> String {
    let path = dir.join("points.csv");
    std::fs::write(&path, "id,score\n1,10\n2,20\n3,30\n").unwrap();
    format!(
        "CREATE EXTERNAL TABLE points STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        path.display()
    )
}

#[tokio::test]
async fn sessions_share_tables_and_views() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SharedCatalog::in_memory();
    let (one, other) = (session(&catalog), session(&catalog));
    one.sql(&csv_table(dir.path())).await.unwrap();
    one.sql("CREATE VIEW high AS SELECT id FROM points WHERE score > 15")
        .await
        .unwrap();
    assert_eq!(
        answer(&other, "SELECT sum(score) AS s FROM points").await,
        answer(&one, "SELECT sum(score) AS s FROM points").await
    );
    let high = answer(&other, "SELECT count(*) AS n FROM high").await;
    assert!(high.contains("| 2 |"), "{high}");
    other.sql("DROP VIEW high").await.unwrap();
    assert!(one.sql("SELECT * FROM high").await.is_err());
}

#[tokio::test]
async fn tables_views_and_schemas_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state/catalog.json");
    {
        let catalog = SharedCatalog::open(&file).unwrap();
        let ctx = session(&catalog);
        ctx.sql(&csv_table(dir.path())).await.unwrap();
        ctx.sql("CREATE VIEW doubled AS SELECT id, score * 2 AS twice FROM points")
            .await
            .unwrap();
        ctx.sql("CREATE SCHEMA sales").await.unwrap();
        ctx.sql("CREATE VIEW sales.ids AS SELECT id FROM public.points")
            .await
            .unwrap();
        ctx.sql("CREATE VIEW dropped AS SELECT 1").await.unwrap();
        ctx.sql("DROP VIEW dropped").await.unwrap();
    }
    let reopened = SharedCatalog::open(&file).unwrap();
    assert_eq!(reopened.schema_names(), ["public", "sales"]);
    let ctx = session(&reopened);
    let total = answer(&ctx, "SELECT sum(twice) AS s FROM doubled").await;
    assert!(total.contains("| 120 |"), "{total}");
    let ids = answer(&ctx, "SELECT count(*) AS n FROM sales.ids").await;
    assert!(ids.contains("| 3 |"), "{ids}");
    assert!(ctx.sql("SELECT * FROM dropped").await.is_err());
    let mut names = reopened.schema("public").unwrap().table_names();
    names.sort();
    assert_eq!(names, ["doubled", "points"]);
}

#[test]
fn a_corrupt_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.json");
    std::fs::write(&file, "{ not json").unwrap();
    let err = SharedCatalog::open(&file).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("catalog file {} is unreadable: ", file.display())),
        "{err}"
    );
}

#[tokio::test]
async fn a_schema_with_tables_is_dropped_only_with_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SharedCatalog::in_memory();
    let ctx = session(&catalog);
    ctx.sql("CREATE SCHEMA s").await.unwrap();
    ctx.sql(&csv_table(dir.path()).replace("TABLE points", "TABLE s.points"))
        .await
        .unwrap();
    assert!(ctx.sql("DROP SCHEMA s").await.is_err());
    ctx.sql("DROP SCHEMA s CASCADE").await.unwrap();
    assert_eq!(catalog.schema_names(), ["public"]);
}

#[tokio::test]
async fn a_catalog_file_is_read_by_others_and_changed_only_when_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.json");
    let outside = CatalogFile::new(&path);
    {
        let catalog = SharedCatalog::open(&path).unwrap();
        let ctx = session(&catalog);
        ctx.sql(&csv_table(dir.path())).await.unwrap();
        // While the owner runs, others read what it declared...
        let tables = outside.tables().unwrap();
        assert_eq!(tables.len(), 1);
        assert_eq!(
            (tables[0].0.as_str(), tables[0].1.as_str()),
            ("public", "points")
        );
        // ...and cannot change it, nor open it as owners.
        let busy = outside.create_schema("mine").unwrap_err().to_string();
        assert!(busy.contains("held by another process"), "{busy}");
        assert!(matches!(
            SharedCatalog::open(&path),
            Err(CatalogError::InUse { .. })
        ));
    }
    // Once it is gone, changes are made on what the file holds.
    let encoded = outside.tables().unwrap().remove(0).2;
    outside.put_table("sales", "copy", encoded).unwrap();
    outside.drop_table("public", "points").unwrap();
    let reopened = SharedCatalog::open(&path).unwrap();
    assert_eq!(reopened.schema_names(), ["public", "sales"]);
    let ctx = session(&reopened);
    let total = answer(&ctx, "SELECT sum(score) AS s FROM sales.copy").await;
    assert!(total.contains("| 60 |"), "{total}");
    assert!(ctx.sql("SELECT * FROM points").await.is_err());
}

//! WebAssembly libraries built from real guest sources, run through
//! DataFusion's SQL and compared with the same computation done natively.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use ember_core::functions::FunctionLibrary;
use ember_wasm::guest::build_guest;
use ember_wasm::{Limits, ModuleStore, WasmError};

/// The guest modules of `tests/guests`, built once per test process.
fn module(stem: &str) -> Vec<u8> {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{stem}.rs"));
    let path = dir.path().join(format!("{stem}.wasm"));
    if !path.exists() {
        let built = build_guest(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(built, path);
    }
    std::fs::read(&path).expect("the built module")
}

fn context_with(library: &FunctionLibrary) -> SessionContext {
    let ctx = SessionContext::new();
    for f in library.scalar_functions() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in library.aggregate_functions() {
        ctx.register_udaf(f.as_ref().clone());
    }
    ctx
}

async fn rows(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    let frame = ctx.sql(sql).await;
    match frame {
        Err(e) => e.to_string(),
        Ok(frame) => match frame.collect().await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{sql} should have failed"),
        },
    }
}

const VALUES: &str = "(VALUES \
    (1, 2.5, 'ab1c', DATE '2024-02-28', CAST(12.34 AS DECIMAL(15,2)), true), \
    (NULL, -4.0, '', DATE '2024-12-31', CAST(-0.01 AS DECIMAL(15,2)), false), \
    (7, NULL, ' 42 ', NULL, NULL, NULL), \
    (-3, 0.0, NULL, DATE '1970-01-01', CAST(0 AS DECIMAL(15,2)), true)) \
    AS t(i, f, s, d, m, b)";

#[tokio::test]
async fn scalar_functions_of_every_type_match_the_native_answers() {
    let store = ModuleStore::in_memory();
    let library = store
        .load("kinds", &module("kinds"), Limits::default())
        .expect("the library loads");
    let ctx = context_with(&library);
    let wasm = rows(
        &ctx,
        &format!(
            "SELECT add(i, 10) AS a, half(f) AS h, shrink(CAST(f AS REAL)) AS r, negate(b) AS n, \
             twice(CAST(i AS INT)) AS w, shout(s) AS u, next_day(d) AS nd, add_cent(m) AS c, \
             parse_int(s) AS p FROM {VALUES}"
        ),
    )
    .await;
    let native = rows(
        &ctx,
        &format!(
            "SELECT CAST(i AS BIGINT) + 10 AS a, f / 2.0 AS h, CAST(f AS REAL) * CAST(0.5 AS REAL) AS r, \
             NOT b AS n, CAST(i AS INT) * 2 AS w, upper(s) AS u, d + INTERVAL '1 day' AS nd, \
             CAST(m + CAST(0.01 AS DECIMAL(15,2)) AS DECIMAL(15,2)) AS c, \
             TRY_CAST(trim(s) AS BIGINT) AS p FROM {VALUES}"
        ),
    )
    .await;
    assert_eq!(wasm, native);
}

#[tokio::test]
async fn flat_and_reduce_functions_match_the_native_library() {
    let store = ModuleStore::in_memory();
    let library = store
        .load("kinds", &module("kinds"), Limits::default())
        .expect("the library loads");
    let ctx = context_with(&library);
    let native = FunctionLibrary::new("native")
        .flat("native_letters", |s: String| {
            s.chars()
                .filter(|c| c.is_alphabetic())
                .map(|c| c.to_string())
                .collect()
        })
        .reduce("native_longest", |a: String, b: String| {
            if b.len() > a.len() || (b.len() == a.len() && b < a) {
                b
            } else {
                a
            }
        });
    for f in native.scalar_functions() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in native.aggregate_functions() {
        ctx.register_udaf(f.as_ref().clone());
    }
    let words = "(SELECT column1 AS w, column2 AS g FROM (VALUES ('tree', 1), ('ox', 1), \
                 ('bee', 2), (NULL, 2), ('ant', 2), ('x9y', 3)))";
    assert_eq!(
        rows(
            &ctx,
            &format!("SELECT g, letters(w) AS l FROM {words} ORDER BY g, w")
        )
        .await,
        rows(
            &ctx,
            &format!("SELECT g, native_letters(w) AS l FROM {words} ORDER BY g, w")
        )
        .await
    );
    assert_eq!(
        rows(
            &ctx,
            &format!(
                "SELECT g, longest(w) AS l, biggest(CAST(g AS BIGINT) * 10) AS b FROM {words} \
                 GROUP BY g ORDER BY g"
            )
        )
        .await,
        rows(
            &ctx,
            &format!(
                "SELECT g, native_longest(w) AS l, max(CAST(g AS BIGINT) * 10) AS b FROM {words} \
                 GROUP BY g ORDER BY g"
            )
        )
        .await
    );
    // Many batches and partitions: the partial results are folded again.
    let big = "(SELECT value AS v FROM generate_series(1, 200000))";
    let ctx = {
        let config = ctx
            .copied_config()
            .with_batch_size(1000)
            .with_target_partitions(4);
        let fresh = SessionContext::new_with_config(config);
        for f in library.aggregate_functions() {
            fresh.register_udaf(f.as_ref().clone());
        }
        fresh
    };
    assert_eq!(
        rows(&ctx, &format!("SELECT biggest(v) AS m FROM {big}")).await,
        rows(&ctx, &format!("SELECT max(v) AS m FROM {big}")).await
    );
}

#[tokio::test]
async fn a_panic_fails_the_query_with_its_message_and_the_function() {
    let store = ModuleStore::in_memory();
    let library = store
        .load("bad", &module("misbehaving"), Limits::default())
        .expect("the library loads");
    let ctx = context_with(&library);
    let message = error(&ctx, "SELECT explode(column1) FROM (VALUES (1), (3))").await;
    assert!(message.contains("`explode`"), "{message}");
    assert!(message.contains("three is not allowed"), "{message}");
    // The module still answers the next query (a fresh instance).
    assert_eq!(
        rows(&ctx, "SELECT explode(column1) AS x FROM (VALUES (1))").await,
        "+---+\n| x |\n+---+\n| 1 |\n+---+"
    );
}

#[tokio::test]
async fn a_function_that_runs_too_long_is_stopped_at_its_limit() {
    let store = ModuleStore::in_memory();
    let limits = Limits {
        memory_mib: 64,
        time_ms: 200,
    };
    let library = store
        .load("bad", &module("misbehaving"), limits)
        .expect("the library loads");
    let ctx = context_with(&library);
    let started = std::time::Instant::now();
    let message = error(&ctx, "SELECT spin(column1) FROM (VALUES (1))").await;
    assert!(
        message.contains("`spin` ran past its time limit of 200 ms"),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn a_function_that_wants_too_much_memory_is_refused_it() {
    let store = ModuleStore::in_memory();
    let limits = Limits {
        memory_mib: 64,
        time_ms: 10_000,
    };
    let library = store
        .load("bad", &module("misbehaving"), limits)
        .expect("the library loads");
    let ctx = context_with(&library);
    let message = error(&ctx, "SELECT hog(column1) FROM (VALUES (1))").await;
    assert!(
        message.contains("`hog` asked for more than its memory limit of 64 MiB"),
        "{message}"
    );
}

#[test]
fn a_module_whose_hash_does_not_match_is_refused() {
    let store = ModuleStore::in_memory();
    let bytes = module("kinds");
    let wrong = "0".repeat(64);
    let error = store.put(&bytes, Some(&wrong)).unwrap_err();
    assert!(matches!(error, WasmError::HashMismatch { .. }), "{error}");
    assert!(!store.holds(&wrong));
}

#[test]
fn modules_that_are_not_libraries_are_refused_with_the_reason() {
    let store = ModuleStore::in_memory();
    let garbage = store.load("x", b"not wasm at all", Limits::default());
    assert!(
        matches!(garbage, Err(WasmError::InvalidModule { .. })),
        "{garbage:?}"
    );
    let importer =
        wat::parse_str(r#"(module (import "env" "clock" (func)) (memory (export "memory") 1))"#)
            .unwrap();
    let error = store.load("x", &importer, Limits::default()).unwrap_err();
    assert!(
        error.to_string().contains("imports `env::clock`"),
        "{error}"
    );
    let bare = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let error = store.load("x", &bare, Limits::default()).unwrap_err();
    assert!(error.to_string().contains("ember_alloc"), "{error}");
    let future = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "ember_abi_version") (result i32) i32.const 2)
            (func (export "ember_alloc") (param i32) (result i32) i32.const 0)
            (func (export "ember_free") (param i32 i32))
            (func (export "ember_call") (param i32 i32 i32) (result i64) i64.const 0)
            (func (export "ember_manifest") (result i64) i64.const 0))"#,
    )
    .unwrap();
    let error = store.load("x", &future, Limits::default()).unwrap_err();
    assert!(
        error.to_string().contains("version 2 of the boundary"),
        "{error}"
    );
}

#[test]
fn a_store_in_a_directory_keeps_modules_by_hash_and_fetches_what_it_lacks() {
    struct FromMemory(Vec<u8>);
    impl ember_wasm::ModuleFetcher for FromMemory {
        fn fetch(&self, _sha256: &str) -> Result<Vec<u8>, String> {
            Ok(self.0.clone())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bytes = module("kinds");
    let hash = ember_wasm::sha256_hex(&bytes);
    let fetching = ModuleStore::in_dir(dir.path())
        .unwrap()
        .with_fetcher(Arc::new(FromMemory(bytes.clone())));
    assert!(!fetching.holds(&hash));
    assert_eq!(&*fetching.get(&hash).unwrap(), bytes.as_slice());
    assert!(dir.path().join(format!("{hash}.wasm")).exists());
    // A second store over the same directory finds it without fetching.
    let reopened = ModuleStore::in_dir(dir.path()).unwrap();
    assert!(reopened.holds(&hash));
    // A fetcher that answers other bytes is refused.
    let lying = ModuleStore::in_memory().with_fetcher(Arc::new(FromMemory(b"other".to_vec())));
    assert!(matches!(
        lying.get(&hash),
        Err(WasmError::HashMismatch { .. })
    ));
}

//! Support for Ember's cross-process tests: building and locating the real
//! binaries, TPC-H data, a single-process DataFusion reference, and exact
//! result comparison.
//!
//! Every cluster these tests use is made of real `ember-scheduler` and
//! `ember-executor` processes on 127.0.0.1 (see
//! [`ember::local_cluster::LocalCluster`]), stopped when the test ends, also
//! when it fails.

pub mod browser;
pub mod malformed;
pub mod s3_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use ember::local_cluster::{LocalCluster, LocalClusterOptions};
use ember::tpcds::{TpcdsGenerator, TpcdsQuery};
use ember::tpch::TpchGenerator;

/// The directory holding the `ember`, `ember-scheduler` and `ember-executor`
/// binaries of this build, built first if needed.
///
/// `EMBER_BIN_DIR` names a directory of prebuilt binaries; otherwise the
/// binaries are (re)built with cargo, with the profile of this test binary,
/// once per test process.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("EMBER_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/<test binary> -> target/<profile>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut command = Command::new(cargo);
        // Build as a shell would: the variables cargo and nextest set for a
        // running test change some build scripts' fingerprints, which would
        // rebuild half of DataFusion. Same package set as the test build
        // (`--workspace`), so features, and artifacts, are shared.
        command.env_clear();
        for (key, value) in std::env::vars_os() {
            let keep = key.to_str().is_some_and(|k| {
                matches!(
                    k,
                    "PATH"
                        | "HOME"
                        | "USER"
                        | "TMPDIR"
                        | "CARGO_HOME"
                        | "RUSTUP_HOME"
                        | "RUSTUP_TOOLCHAIN"
                        | "CARGO_TARGET_DIR"
                        | "RUSTFLAGS"
                        | "CARGO_BUILD_JOBS"
                )
            });
            if keep {
                command.env(key, value);
            }
        }
        command
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the Ember binaries failed");
        profile_dir
    })
}

/// A local cluster for a test, with the temporary directory holding its
/// logs and work dirs. Dropping it stops the processes, then removes the
/// directory (fields drop in declaration order).
pub struct TestCluster {
    /// The running cluster.
    pub cluster: LocalCluster,
    _state: tempfile::TempDir,
}

impl TestCluster {
    /// The directory under which each executor has its work dir
    /// (`executor-N`).
    pub fn work_dir(&self) -> PathBuf {
        self._state.path().join("work")
    }
}

impl std::ops::Deref for TestCluster {
    type Target = LocalCluster;

    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

/// Starts a scheduler and `executors` executors from this build's binaries
/// and waits until every executor has registered.
pub async fn start_cluster(executors: usize) -> TestCluster {
    start_cluster_with_env(executors, Vec::new()).await
}

/// [`start_cluster`], with extra environment variables for every process.
pub async fn start_cluster_with_env(executors: usize, env: Vec<(String, String)>) -> TestCluster {
    start_cluster_with(executors, |options| options.env = env).await
}

/// [`start_cluster`], with its options changed by `configure` first.
pub async fn start_cluster_with(
    executors: usize,
    configure: impl FnOnce(&mut LocalClusterOptions),
) -> TestCluster {
    let state = tempfile::tempdir().expect("state dir");
    let mut options = LocalClusterOptions::new(bin_dir(), executors, state.path());
    configure(&mut options);
    let cluster = LocalCluster::start(&options)
        .await
        .expect("local cluster starts");
    TestCluster {
        cluster,
        _state: state,
    }
}

/// The Python of the benchmark virtualenv that `scripts/test` fills
/// (`bench/peers/setup-venv …`), or the one the environment variable
/// `override_var` names; panics, naming `packages` and how to install
/// them, when there is none.
pub fn bench_venv_python(override_var: &str, packages: &str) -> PathBuf {
    if let Some(python) = std::env::var_os(override_var) {
        return PathBuf::from(python);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    let python = Path::new(&home).join(".cache/ember/bench-venv/bin/python");
    assert!(
        python.exists(),
        "no Python with {packages} at {}: run scripts/test, which installs them \
         (bench/peers/setup-venv {packages}), or set {override_var}",
        python.display()
    );
    python
}

/// Path of one of the binaries.
pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Generates TPC-H at `scale_factor` as Parquet under `dir` (two files per
/// table, so scans have more than one file to split).
pub fn generate_tpch(dir: &Path, scale_factor: f64) -> TpchGenerator {
    let generator = TpchGenerator {
        scale_factor,
        parts: 2,
        ..TpchGenerator::default()
    };
    generator.write_all(dir).expect("TPC-H data generates");
    generator
}

/// TPC-DS at `scale_factor` as Parquet (two files per fact table), generated
/// once per build into the target directory and shared by every test that
/// asks for the same scale. Generation writes into a private directory and
/// renames it into place, so concurrent tests never see a partial data set.
pub fn tpcds_data(scale_factor: f64) -> (TpcdsGenerator, PathBuf) {
    let generator = TpcdsGenerator {
        scale_factor,
        parts: 2,
    };
    // target/<profile>/deps/<test binary> -> target/tmp
    let exe = std::env::current_exe().expect("test binary path");
    let tmp = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps")
        .join("tmp");
    std::fs::create_dir_all(&tmp).expect("target/tmp");
    let dir = tmp.join(format!("tpcds-sf{scale_factor}"));
    if !dir.join("web_site").is_dir() {
        let staging = tempfile::tempdir_in(&tmp).expect("staging dir");
        generator
            .write_all(staging.path())
            .expect("TPC-DS data generates");
        let staged = staging.keep();
        if std::fs::rename(&staged, &dir).is_err() {
            // Another test put the same data in place first.
            let _ = std::fs::remove_dir_all(&staged);
        }
    }
    (generator, dir)
}

/// The 99 TPC-DS queries from [`ember::tpcds::default_query_dir`], fetched
/// by `scripts/fetch-tpcds-queries` (which `scripts/test` runs).
pub fn tpcds_queries() -> Vec<TpcdsQuery> {
    let dir = ember::tpcds::default_query_dir();
    ember::tpcds::load_queries(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A plain single-process DataFusion session with the TPC-H tables under
/// `dir` registered: the reference Ember's answers are compared with.
pub async fn reference_context(generator: &TpchGenerator, dir: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for statement in generator.create_table_statements(dir) {
        ctx.sql(&statement).await.expect("reference DDL");
    }
    ctx
}

/// One result cell, in a form that compares across engines: floats as
/// numbers (compared with a tight relative tolerance), everything else as
/// its display string (so `Utf8` and `Utf8View` compare equal).
#[derive(Debug, Clone)]
pub enum Cell {
    /// A floating-point value.
    Float(f64),
    /// Any other value, displayed; `None` is SQL NULL.
    Text(Option<String>),
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Cell::Float(a), Cell::Float(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// The rows of a result as cells.
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Cell>> = batch
            .columns()
            .iter()
            .map(|column| {
                if matches!(column.data_type(), DataType::Float32 | DataType::Float64) {
                    let floats = datafusion::arrow::compute::cast(column, &DataType::Float64)
                        .expect("float cast");
                    let floats = floats.as_primitive::<Float64Type>();
                    (0..floats.len())
                        .map(|i| {
                            if floats.is_null(i) {
                                Cell::Text(None)
                            } else {
                                Cell::Float(floats.value(i))
                            }
                        })
                        .collect()
                } else {
                    let formatter =
                        ArrayFormatter::try_new(column.as_ref(), &options).expect("formatter");
                    (0..column.len())
                        .map(|i| {
                            Cell::Text(if column.is_null(i) {
                                None
                            } else {
                                Some(formatter.value(i).to_string())
                            })
                        })
                        .collect()
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[row].clone()).collect());
        }
    }
    rows
}

fn sort_key(row: &[Cell]) -> String {
    row.iter()
        .map(|cell| match cell {
            Cell::Float(f) => format!("{f:.6e}"),
            Cell::Text(t) => format!("{t:?}"),
        })
        .collect::<Vec<_>>()
        .join("\u{1}")
}

/// Compares two results: same column count, same rows, in order when
/// `ordered`, else as multisets. Returns a description of the first
/// difference.
pub fn compare(
    expected: &[RecordBatch],
    actual: &[RecordBatch],
    ordered: bool,
) -> Result<usize, String> {
    let mut expected_rows = rows(expected);
    let mut actual_rows = rows(actual);
    let expected_columns = expected.first().map(|b| b.num_columns());
    let actual_columns = actual.first().map(|b| b.num_columns());
    if expected_rows.len() != actual_rows.len() {
        return Err(format!(
            "expected {} rows, got {}",
            expected_rows.len(),
            actual_rows.len()
        ));
    }
    if !expected_rows.is_empty() && expected_columns != actual_columns {
        return Err(format!(
            "expected {expected_columns:?} columns, got {actual_columns:?}"
        ));
    }
    if !ordered {
        expected_rows.sort_by_key(|r| sort_key(r));
        actual_rows.sort_by_key(|r| sort_key(r));
    }
    for (i, (e, a)) in expected_rows.iter().zip(&actual_rows).enumerate() {
        if e != a {
            return Err(format!("row {i} differs: expected {e:?}, got {a:?}"));
        }
    }
    Ok(expected_rows.len())
}

/// Whether a query's result order is defined. A plain text test: it holds for
/// the TPC-H queries, where every `ORDER BY` orders the final result.
pub fn is_ordered(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains("order by")
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Asserts that the cluster whose scheduler listens at `address` still
/// answers a query, through the `ember` CLI.
pub fn assert_cluster_answers(address: &str) {
    let args = [
        "sql",
        "--scheduler",
        address,
        "--format",
        "csv",
        "-c",
        "SELECT 1 + 1 AS two",
    ];
    let (code, stdout, stderr) = run_ember(&args, None);
    assert_eq!((code, stdout.as_str()), (0, "two\n2\n"), "{stderr}");
}

/// Runs `ember` with `args` and returns (exit code, stdout, stderr).
pub fn run_ember(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    run_ember_in(&std::env::temp_dir(), args, stdin)
}

/// Runs `ember` in directory `dir` with `args` and returns (exit code,
/// stdout, stderr).
pub fn run_ember_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    run_ember_with_env(dir, args, stdin, &[])
}

/// Runs `ember` in directory `dir` with `args` and the environment
/// variables `env` (besides this process's own, less any `EMBER_TOKEN`),
/// and returns (exit code, stdout, stderr).
pub fn run_ember_with_env(
    dir: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(binary("ember"))
        .current_dir(dir)
        .args(args)
        .env_remove("EMBER_SCHEDULER")
        .env_remove("EMBER_TOKEN")
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ember starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin written");
    }
    let output = child.wait_with_output().expect("ember finishes");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every file below `dir` (recursively), as paths relative to it, sorted;
/// empty when `dir` does not exist.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if let Ok(relative) = path.strip_prefix(base) {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// A plain HTTP/1.0 GET of `path` from `addr` (`host:port`); returns the
/// status code (0 when none could be read) and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The WebAssembly library built from `wasm/guest/examples/{stem}.rs` (or,
/// failing that, the test guest `wasm/host/tests/guests/{stem}.rs`), built
/// once per test process with the guest toolchain
/// (`scripts/install-wasm-guest-toolchain`); panics, saying how to install
/// it, where there is none.
pub fn guest_module(stem: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let path = dir.path().join(format!("{stem}.wasm"));
    if !path.exists() {
        let example = ember_wasm::guest::example_source(stem);
        let source = if example.exists() {
            example
        } else {
            repo_root().join(format!("wasm/host/tests/guests/{stem}.rs"))
        };
        ember_wasm::guest::build_guest(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    }
    path
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(strings: Arc<dyn Array>, floats: Vec<f64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", strings.data_type().clone(), true),
            Field::new("f", DataType::Float64, true),
        ]));
        RecordBatch::try_new(schema, vec![strings, Arc::new(Float64Array::from(floats))]).unwrap()
    }

    #[test]
    fn compare_accepts_view_strings_and_tiny_float_noise() {
        let a = batch(Arc::new(StringArray::from(vec!["x", "y"])), vec![1.0, 2.0]);
        let b = batch(
            Arc::new(StringViewArray::from(vec!["x", "y"])),
            vec![1.0, 2.0 + 1e-13],
        );
        assert_eq!(compare(&[a], &[b], true), Ok(2));
    }

    #[test]
    fn compare_catches_differences() {
        let a = batch(Arc::new(StringArray::from(vec!["x", "y"])), vec![1.0, 2.0]);
        let swapped = batch(Arc::new(StringArray::from(vec!["y", "x"])), vec![2.0, 1.0]);
        let off = batch(
            Arc::new(StringArray::from(vec!["x", "y"])),
            vec![1.0, 2.001],
        );
        let expected = std::slice::from_ref(&a);
        assert!(compare(expected, std::slice::from_ref(&swapped), true).is_err());
        assert_eq!(compare(expected, &[swapped], false), Ok(2));
        assert!(compare(expected, &[off], false).is_err());
        assert!(compare(expected, &[a.slice(0, 1)], false).is_err());
    }
}

//! The `ember` Python package's pytest suite (`python/tests`): its API
//! embedded and on a real two-executor cluster against DuckDB and pandas,
//! TPC-H through `ctx.sql`, driver data on a remote cluster, Ctrl-C, and
//! the notebook example on the S3 test server. The extension module is
//! the workspace build's `lib_ember.so` (`cargo build --workspace`), put
//! beside the package's Python files in a temporary directory, as
//! `maturin develop` would install it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_tests::{bin_dir, repo_root};

/// The Python with pytest, pyarrow, pandas, Polars and DuckDB:
/// `EMBER_PYTHON_TEST_PYTHON`, else the benchmark virtualenv.
fn test_python() -> PathBuf {
    ember_tests::bench_venv_python(
        "EMBER_PYTHON_TEST_PYTHON",
        "pytest pyarrow pandas polars duckdb",
    )
}

/// The package's Python files with the extension module beside them.
fn installed_package(dir: &Path) -> PathBuf {
    let module = bin_dir().join("lib_ember.so");
    assert!(
        module.is_file(),
        "no {}: build it with `cargo build --workspace --lib` (scripts/test does)",
        module.display()
    );
    let sources = repo_root().join("python/python/ember");
    let package = dir.join("ember");
    std::fs::create_dir_all(&package).unwrap();
    for entry in std::fs::read_dir(&sources).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), package.join(entry.file_name())).unwrap();
    }
    std::fs::copy(&module, package.join("_ember.abi3.so")).unwrap();
    dir.to_path_buf()
}

#[test]
fn the_python_package_passes_its_pytest_suite() {
    let site = tempfile::tempdir().unwrap();
    let path = installed_package(site.path());
    let output = Command::new(test_python())
        .args([
            "-m",
            "pytest",
            "python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
        ])
        .current_dir(repo_root())
        .env("PYTHONPATH", &path)
        .env("EMBER_BIN_DIR", bin_dir())
        .env_remove("EMBER_MASTER")
        .output()
        .expect("pytest runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "pytest failed:\n{text}");
    // The summary names what ran: nothing may be skipped silently.
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    assert!(
        !summary.contains("skipped"),
        "pytest skipped tests:\n{text}"
    );
    println!("{summary}");
}

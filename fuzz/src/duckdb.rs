//! DuckDB, the fuzzer's reference: a Python process (`duckdb_runner.py`)
//! that answers one query per line over the same Parquet files.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::FuzzError;
use crate::answer::{Rows, rows_of_json};

/// The runner script, next to this crate's manifest.
pub fn runner_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb_runner.py")
}

/// The Python that has DuckDB: `EMBER_DUCKDB_PYTHON`, else the benchmark
/// venv's (`bench/peers/setup-venv duckdb` creates it).
pub fn default_python() -> PathBuf {
    if let Some(python) = std::env::var_os("EMBER_DUCKDB_PYTHON") {
        return PathBuf::from(python);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/ember/bench-venv/bin/python")
}

/// A running DuckDB runner.
pub struct DuckDb {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl DuckDb {
    /// Starts the runner with `python` over the tables under `data`.
    pub fn start(python: &Path, data: &Path) -> Result<Self, FuzzError> {
        if !python.exists() {
            return Err(FuzzError::NoDuckDb {
                python: python.to_path_buf(),
                reason: "no such file".into(),
            });
        }
        let mut child = Command::new(python)
            .arg("-u")
            .arg(runner_script())
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| FuzzError::NoDuckDb {
                python: python.to_path_buf(),
                reason: e.to_string(),
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| FuzzError::DuckDbDied("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| FuzzError::DuckDbDied("no stdout".into()))?;
        let mut duckdb = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        // The first answer shows DuckDB imported and the views exist.
        duckdb
            .run("SELECT count(*) FROM region")?
            .map_err(|e| FuzzError::NoDuckDb {
                python: python.to_path_buf(),
                reason: e,
            })?;
        Ok(duckdb)
    }

    /// Runs `sql`: its rows, or DuckDB's error message.
    pub fn run(&mut self, sql: &str) -> Result<Result<Rows, String>, FuzzError> {
        let request = serde_json::json!({ "sql": sql });
        writeln!(self.stdin, "{request}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| FuzzError::DuckDbDied(e.to_string()))?;
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| FuzzError::DuckDbDied(e.to_string()))?;
        if read == 0 {
            let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(FuzzError::DuckDbDied(format!(
                "the runner exited ({status})"
            )));
        }
        let answer: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| FuzzError::DuckDbDied(format!("unreadable answer: {e}")))?;
        if let Some(error) = answer.get("error").and_then(|e| e.as_str()) {
            return Ok(Err(error.to_string()));
        }
        let rows = answer
            .get("rows")
            .and_then(|r| r.as_array())
            .ok_or_else(|| FuzzError::DuckDbDied(format!("unexpected answer: {line}")))?;
        Ok(Ok(rows_of_json(rows).map_err(FuzzError::DuckDbDied)?))
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

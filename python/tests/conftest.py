"""Fixtures: TPC-H data, an Ember cluster of two executors, an S3 test
server, and DuckDB as the reference. The Ember binaries come from
EMBER_BIN_DIR (the Rust test that runs this suite sets it to the build's)."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TPCH_QUERIES = REPO / "client" / "src" / "tpch" / "queries"
TPCH_TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]


def bin_dir() -> Path:
    configured = os.environ.get("EMBER_BIN_DIR")
    if configured:
        return Path(configured)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug"


def binary(name: str) -> str:
    path = bin_dir() / name
    if not path.exists():
        raise RuntimeError(f"no {path}: build the workspace first (cargo build --workspace)")
    return str(path)


@pytest.fixture(scope="session")
def tpch_dir(tmp_path_factory) -> Path:
    """TPC-H at scale factor 0.01 as Parquet, from `ember datagen`."""
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run(
        [binary("ember"), "datagen", "tpch", "--scale-factor", "0.01", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def tpch_query(n: int) -> str:
    return (TPCH_QUERIES / f"q{n}.sql").read_text()


class Process:
    """A child process started with its output read line by line."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise RuntimeError(f"never printed {pattern!r}:\n{''.join(seen)}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="session")
def s3_server():
    """The S3 test server: its environment (AWS_* variables)."""
    server = Process([binary("ember-s3-test-server"), "--bucket", "ember"])
    server.wait_for(r"listening on")
    env = {}
    for _ in range(5):
        match = server.wait_for(r"^export (\w+)=(.*)$")
        env[match.group(1)] = match.group(2).strip()
    yield env
    server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, s3_server):
    """A local cluster of two executors (no token), with the S3 server's
    environment: its scheduler's address."""
    state = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ)
    env.update(s3_server)
    proc = Process(
        [
            binary("ember"),
            "cluster",
            "local",
            "--executors",
            "2",
            "--port",
            "0",
            "--no-token",
            "--state-dir",
            str(state),
        ],
        env=env,
    )
    match = proc.wait_for(r"scheduler at (\S+?),", timeout=120)
    yield match.group(1)
    proc.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(params=["embedded", "cluster"])
def ctx(request, s3_server, monkeypatch):
    """An Ember context, embedded and on the cluster."""
    import ember

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    if request.param == "embedded":
        return ember.connect()
    return ember.connect(request.getfixturevalue("cluster"))


@pytest.fixture
def duck(tpch_dir):
    """DuckDB with the same TPC-H tables, as the reference."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET integer_division = true")
    for table in TPCH_TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{tpch_dir}/{table}/*.parquet')")
    return con


def create_tpch_tables(ctx, tpch_dir: Path):
    for table in TPCH_TABLES:
        ctx.sql(f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} STORED AS PARQUET LOCATION '{tpch_dir}/{table}/'")

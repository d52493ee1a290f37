#!/usr/bin/env python3
"""Runs the 22 TPC-H queries on Ember's peer engines over the same Parquet
data, and writes one JSON record per engine and query.

Engines: DuckDB, Polars (its SQL interface), DataFusion (the Python
package), PySpark (local[N]) and Dask (the queries written with its
dataframe API, where they are). Every engine gets the same number of
threads. Each query is run --runs times; the record keeps the median, the
minimum and the maximum wall time, the rows returned and a digest of the
result (rows sorted, numbers rounded to 2 decimals). With --answers, each
result is also written unrounded, for answers.py to compare with DuckDB's
within a tolerance.

    tpch_peers.py --data DIR --queries DIR --scale-factor SF --out FILE.json
                  [--engines duckdb,polars,datafusion,pyspark,dask]
                  [--runs 3] [--threads 2] [--answers DIR] [--query-timeout SECONDS]

An engine that cannot run a query (unsupported SQL, an error, or no Dask
version of it) gets a record with its error instead of times. With
--query-timeout, each query runs in a process of its own, started afresh
(its start is not timed), and one that takes longer than that for all its
runs is stopped and recorded as skipped, with the limit as the reason.

The query texts carry the validation parameters of scale factor 1; Q11's
FRACTION is set to 0.0001 / SF for the data's scale factor, as Ember's
benchmark sets it (`ember::tpch::query_at_scale`).
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import queue
import statistics
import sys
import time
from datetime import date, datetime
from decimal import Decimal

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]

# Q11's FRACTION in the query text: the specification's value at scale factor 1.
Q11_FRACTION_AT_SF1 = "* 0.0001"


def q11_fraction(scale_factor):
    """Q11's FRACTION, 0.0001 / SF, as a decimal literal rounded to 12
    decimals with no trailing zeros (as Ember's benchmark writes it)."""
    return f"{0.0001 / scale_factor:.12f}".rstrip("0").rstrip(".")


def at_scale(number, sql, scale_factor):
    """The text of query `number` with the parameters for `scale_factor`."""
    if number != 11:
        return sql
    if Q11_FRACTION_AT_SF1 not in sql:
        raise ValueError(f"q11's text has no {Q11_FRACTION_AT_SF1!r} to set FRACTION in")
    return sql.replace(Q11_FRACTION_AT_SF1, f"* {q11_fraction(scale_factor)}", 1)


def exact(value):
    """A value as answers are written: numbers as floats, dates as ISO
    text, strings stripped."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()[:10]
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10]
    if hasattr(value, "item"):  # a NumPy scalar
        return exact(value.item())
    return str(value).strip()


def normalize(value):
    """A value as the digest sees it: numbers rounded to 2 decimals, the
    rest as `exact` writes it."""
    value = exact(value)
    if isinstance(value, float) and not isinstance(value, bool):
        return round(value, 2)
    return value


def digest(rows):
    """A digest of a result's rows, independent of their order."""
    canonical = sorted(json.dumps([normalize(v) for v in row], default=str) for row in rows)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()[:16]


class DuckDB:
    name = "duckdb"

    def __init__(self, data, threads, tables=TABLES):
        import duckdb

        self.version = duckdb.__version__
        self.con = duckdb.connect()
        self.con.execute(f"SET threads TO {threads}")
        for t in tables:
            self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/*.parquet')")

    def run(self, number, sql):
        return self.con.execute(sql).fetchall()


class Polars:
    name = "polars"

    def __init__(self, data, threads):
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        import polars as pl

        self.pl = pl
        self.version = pl.__version__
        self.ctx = pl.SQLContext()
        for t in TABLES:
            self.ctx.register(t, pl.scan_parquet(f"{data}/{t}/*.parquet"))

    def run(self, number, sql):
        return self.ctx.execute(sql, eager=True).rows()


class DataFusion:
    name = "datafusion-python"

    def __init__(self, data, threads):
        import datafusion

        self.version = datafusion.__version__
        config = datafusion.SessionConfig().with_target_partitions(threads)
        self.ctx = datafusion.SessionContext(config)
        for t in TABLES:
            self.ctx.register_parquet(t, f"{data}/{t}/")

    def run(self, number, sql):
        table = self.ctx.sql(sql).to_arrow_table()
        return [tuple(r.values()) for r in table.to_pylist()]


class PySpark:
    name = "pyspark"

    def __init__(self, data, threads, tables=TABLES):
        from pyspark.sql import SparkSession

        self.spark = (
            SparkSession.builder.master(f"local[{threads}]")
            .appName("ember-bench")
            .config("spark.sql.shuffle.partitions", str(threads * 2))
            .config("spark.driver.memory", "8g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        self.version = self.spark.version
        for t in tables:
            self.spark.read.parquet(f"{data}/{t}/").createOrReplaceTempView(t)

    def run(self, number, sql):
        return [tuple(r) for r in self.spark.sql(sql).collect()]


def numpy_types(frame):
    """Decimal columns as float64 and date columns as datetime64[ns], as
    pandas users read them: Dask's arithmetic on Arrow decimals overflows
    their precision. Each cast goes through the Arrow type first, which is
    ten times faster than pandas's own cast (that one goes through a Python
    object per value) and still lets Dask read only the columns a query
    uses."""
    through, to = {}, {}
    for column, dtype in frame.dtypes.items():
        if "decimal" in str(dtype):
            through[column], to[column] = "double[pyarrow]", "float64"
        elif str(dtype).startswith("date32"):
            through[column], to[column] = "timestamp[ns][pyarrow]", "datetime64[ns]"
    return frame.astype(through).astype(to) if to else frame


class Dask:
    name = "dask"

    def __init__(self, data, threads):
        import dask
        import dask.dataframe as dd

        from dask_queries import QUERIES

        dask.config.set(scheduler="threads", num_workers=threads)
        self.version = dask.__version__
        self.queries = QUERIES
        self.tables = {t: numpy_types(dd.read_parquet(f"{data}/{t}/")) for t in TABLES}

    def run(self, number, sql):
        query = self.queries.get(number)
        if query is None:
            raise NotImplementedError("no Dask dataframe version of this query")
        frame = query(self.tables)
        return list(frame.itertuples(index=False, name=None))


ENGINES = {e.name: e for e in [DuckDB, Polars, DataFusion, PySpark, Dask]}
ENGINES["datafusion"] = DataFusion


def measure(engine, number, sql, runs):
    """Runs one query `runs` times: the wall time of each run, and the rows
    of the last."""
    times = []
    rows = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = engine.run(number, sql)
        times.append(time.perf_counter() - started)
    return times, rows


# How long a fresh process may take to start an engine, with
# --query-timeout (not counted in the query's limit).
ENGINE_START_LIMIT = 300


def _measure_child(engine_name, data, threads, number, sql, runs, results):
    try:
        engine = ENGINES[engine_name](data, threads)
        results.put(("started",))
        times, rows = measure(engine, number, sql, runs)
        results.put(("ok", times, [tuple(exact(v) for v in row) for row in rows]))
    except Exception as e:
        results.put(("error", " ".join(str(e).split())[:300], None))


def measure_in_own_process(engine_name, args, number, sql):
    """`measure` in a fresh process, stopped after --query-timeout seconds."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_measure_child,
        args=(engine_name, args.data, args.threads, number, sql, args.runs, results),
    )
    child.start()
    try:
        outcome = results.get(timeout=ENGINE_START_LIMIT)
        if outcome[0] == "started":
            outcome = results.get(timeout=args.query_timeout)
    except queue.Empty:
        child.kill()
        child.join()
        raise TimeoutError(
            f"skipped: {args.runs} run(s) took longer than the {args.query_timeout:g} s limit per query")
    child.join()
    if outcome[0] == "error":
        raise RuntimeError(outcome[1])
    return outcome[1], outcome[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--scale-factor", type=float, required=True,
                        help="the data's TPC-H scale factor (sets Q11's FRACTION)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--engines", default="duckdb,polars,datafusion,pyspark,dask")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--answers", help="directory to write each result to (see answers.py)")
    parser.add_argument("--query-timeout", type=float,
                        help="run each query in its own process and skip it after this many seconds")
    args = parser.parse_args()
    if args.answers:
        os.makedirs(args.answers, exist_ok=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import answers

    queries = {}
    for n in range(1, 23):
        with open(os.path.join(args.queries, f"q{n}.sql")) as f:
            queries[n] = at_scale(n, f.read().strip().rstrip(";"), args.scale_factor)

    records = []
    for engine_name in args.engines.split(","):
        engine_class = ENGINES.get(engine_name)
        if engine_class is None:
            sys.exit(f"unknown engine {engine_name!r}: one of {', '.join(sorted(ENGINES))}")
        try:
            engine = engine_class(args.data, args.threads)
        except Exception as e:  # an engine that does not start is reported, not fatal
            print(f"{engine_name}: cannot start: {e}", file=sys.stderr)
            records.append({"engine": engine_class.name, "error": f"cannot start: {e}"})
            continue
        for n, sql in queries.items():
            record = {"engine": engine.name, "version": engine.version, "query": n}
            try:
                if args.query_timeout:
                    times, rows = measure_in_own_process(engine_name, args, n, sql)
                else:
                    times, rows = measure(engine, n, sql, args.runs)
                record.update(
                    median=statistics.median(times),
                    min=min(times),
                    max=max(times),
                    rows=len(rows),
                    digest=digest(rows),
                )
                if args.answers:
                    answers.write(args.answers, engine.name, n, rows, exact)
            except Exception as e:
                record["error"] = " ".join(str(e).split())[:300]
            print(json.dumps(record), file=sys.stderr)
            records.append(record)
    with open(args.out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs the 99 TPC-DS queries on DuckDB and PySpark over the same Parquet
data as Ember's runner (`ember-tpcds-bench`), and writes one JSON record
per engine and query, as tpch_peers.py does for TPC-H.

The query texts are the ones `scripts/fetch-tpcds-queries` unpacks (Spark's
dialect); they get the two adjustments Ember makes when it loads them
(`ember::tpcds::normalize`): unquoted interval literals are quoted, and
`c_last_review_date` is read as `c_last_review_date_sk`. Queries 14, 23,
24 and 39 have two statements (files `q14a.sql` and `q14b.sql`), timed
together, their rows together.

    tpcds_peers.py --data DIR --queries DIR --out FILE.json
                   [--engines duckdb,pyspark] [--runs 1] [--threads 2] [--answers DIR]
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import answers  # noqa: E402
from tpch_peers import PySpark, DuckDB, digest, exact  # noqa: E402

TABLES = [
    "call_center", "catalog_page", "catalog_returns", "catalog_sales", "customer",
    "customer_address", "customer_demographics", "date_dim", "household_demographics",
    "income_band", "inventory", "item", "promotion", "reason", "ship_mode", "store",
    "store_returns", "store_sales", "time_dim", "warehouse", "web_page", "web_returns",
    "web_sales", "web_site",
]
TWO_STATEMENTS = {14, 23, 24, 39}
ENGINES = {"duckdb": DuckDB, "pyspark": PySpark}


def normalize(sql):
    """As `ember::tpcds::normalize`: comments and the final `;` dropped,
    interval literals quoted, Q30's column renamed."""
    sql = "\n".join(line.split("--")[0] for line in sql.splitlines()).strip().rstrip(";")
    sql = re.sub(r"(?i)\binterval\s+(\d+)\s+([a-z]+)", r"INTERVAL '\1 \2'", sql)
    return re.sub(r"(?i)\bc_last_review_date\b", "c_last_review_date_sk", sql)


def load(directory, number):
    names = [f"q{number}a.sql", f"q{number}b.sql"] if number in TWO_STATEMENTS else [f"q{number}.sql"]
    statements = []
    for name in names:
        with open(os.path.join(directory, name)) as f:
            statements.append(normalize(f.read()))
    return statements


def measure(engine, number, statements, runs):
    times, rows = [], []
    for _ in range(runs):
        started = time.perf_counter()
        rows = []
        for sql in statements:
            rows.extend(engine.run(number, sql))
        times.append(time.perf_counter() - started)
    return times, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--engines", default="duckdb,pyspark")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--answers", help="directory to write each result to (see answers.py)")
    args = parser.parse_args()
    if args.answers:
        os.makedirs(args.answers, exist_ok=True)
    queries = {n: load(args.queries, n) for n in range(1, 100)}
    records = []
    for engine_name in args.engines.split(","):
        engine_class = ENGINES.get(engine_name)
        if engine_class is None:
            sys.exit(f"unknown engine {engine_name!r}: one of {', '.join(sorted(ENGINES))}")
        try:
            engine = engine_class(args.data, args.threads, TABLES)
        except Exception as e:  # an engine that does not start is reported, not fatal
            print(f"{engine_name}: cannot start: {e}", file=sys.stderr)
            records.append({"engine": engine_class.name, "error": f"cannot start: {e}"})
            continue
        for n, statements in queries.items():
            record = {"engine": engine.name, "version": engine.version, "query": n}
            try:
                times, rows = measure(engine, n, statements, args.runs)
                record.update(median=statistics.median(times), min=min(times), max=max(times),
                              rows=len(rows), digest=digest(rows))
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

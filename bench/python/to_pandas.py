"""Times reading TPC-H `lineitem` from Parquet into pandas through Ember's
Python package, DataFusion's (`datafusion` on PyPI) and plain pyarrow, in
one process, side by side.

    python bench/python/to_pandas.py --data DIR [--runs 3]

DIR holds `lineitem/` as Parquet (`ember datagen tpch --output DIR`). It
prints one line per engine with the best and median of the runs, and the
row count each returned (they must agree).
"""

import argparse
import statistics
import time


def timed(runs, action):
    times, rows = [], None
    for _ in range(runs):
        started = time.perf_counter()
        frame = action()
        times.append(time.perf_counter() - started)
        rows = len(frame)
        del frame
    return min(times), statistics.median(times), rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = f"{args.data.rstrip('/')}/lineitem/"

    import datafusion
    import pyarrow.parquet as pq

    import ember

    ctx = ember.connect("local")
    engines = {
        "ember": lambda: ctx.read_parquet(path).to_pandas(),
        "datafusion": lambda: datafusion.SessionContext().read_parquet(path).to_pandas(),
        "pyarrow": lambda: pq.read_table(path).to_pandas(),
    }
    results = {}
    for name, action in engines.items():
        results[name] = timed(args.runs, action)
    rows = {r[2] for r in results.values()}
    assert len(rows) == 1, f"the engines disagree on the row count: {results}"
    print(f"lineitem rows: {rows.pop()}, runs: {args.runs}")
    for name, (best, median, _) in results.items():
        print(f"{name:>10}: best {best:.2f} s, median {median:.2f} s")


if __name__ == "__main__":
    main()

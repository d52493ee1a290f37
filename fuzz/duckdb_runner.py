"""DuckDB's side of Ember's differential SQL fuzzer.

Reads requests from standard input, one JSON object per line
({"sql": "..."}), runs each on DuckDB over the TPC-H Parquet tables under
the directory given as the first argument, and answers each with one JSON
line: {"rows": [[...], ...]} or {"error": "..."}.

Values are written so that Ember's side can compare them exactly where
they are exact: integers as JSON integers (beyond 64 bits as
{"int": "..."}), DECIMALs and doubles as JSON numbers (NaN and infinities
as {"float": "..."}), dates as YYYY-MM-DD, timestamps as
YYYY-MM-DD HH:MM:SS with a midnight time of day dropped, everything else
as its text.
"""

import datetime
import decimal
import json
import math
import sys

import duckdb

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def value(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**64 else {"int": str(v)}
    if isinstance(v, decimal.Decimal):
        if v == v.to_integral_value() and v.as_tuple().exponent >= 0:
            return value(int(v))
        return value(float(v))
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v).replace("inf", "Infinity").replace("nan", "NaN")}
    if isinstance(v, datetime.datetime):
        text = v.isoformat(sep=" ")
        return text[: -len(" 00:00:00")] if text.endswith(" 00:00:00") else text
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def main():
    data = sys.argv[1]
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data}/{table}/*.parquet')")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            rows = con.execute(request["sql"]).fetchall()
            answer = {"rows": [[value(v) for v in row] for row in rows]}
        except Exception as e:  # every DuckDB error is an answer to compare
            answer = {"error": " ".join(str(e).split())}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

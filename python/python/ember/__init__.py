"""Ember from Python: SQL and a lazy DataFrame API, embedded or on a cluster.

    import ember
    from ember import col, sum

    ctx = ember.connect()                       # embedded; "df://host:50050" for a cluster
    trips = ctx.read_parquet("s3://bucket/trips/")
    fares = trips.group_by("vendor").agg(sum(col("fare")).alias("fares"))
    print(fares.to_pandas())

Transformations build a plan and run nothing; actions (``collect``,
``count``, ``to_arrow``, ``to_pandas``, ``to_polars``, ``show``,
``write_parquet``, ...) run it. Results reach pyarrow, pandas, Polars and
DuckDB through the Arrow PyCapsule interface without copying. Ctrl-C stops
the running action (and cancels its job on a cluster). Errors are raised
as ``ember.EmberError`` with Ember's one-line message.
"""

from ember._ember import (
    Context,
    DataFrame,
    EmberError,
    Expr,
    GroupedDataFrame,
    SortExpr,
    UserFunction,
    __version__,
    avg,
    col,
    connect,
    count,
    count_distinct,
    func,
    lit,
    max,
    min,
    sum,
)

mean = avg

__all__ = [
    "Context",
    "DataFrame",
    "EmberError",
    "Expr",
    "GroupedDataFrame",
    "SortExpr",
    "UserFunction",
    "__version__",
    "avg",
    "col",
    "connect",
    "count",
    "count_distinct",
    "func",
    "lit",
    "max",
    "mean",
    "min",
    "sum",
]

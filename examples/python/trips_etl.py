"""A notebook-style job with Ember: trips read from S3, cleaned and
summed per day, written back to S3 as Parquet partitioned by day, and the
summary printed as a pandas frame.

    python examples/python/trips_etl.py [BASE]

It runs embedded, or on a cluster when EMBER_MASTER names one
(``df://host:50050``); the AWS_* variables point it at the object store
(``ember-s3-test-server`` prints them for a local one). It first writes a
small set of trips to ``BASE/trips/`` (``BASE`` defaults to ``s3://ember/etl``),
as a notebook would find them, and the summary to ``BASE/daily/``.
"""

import sys

import pandas as pd

import ember
from ember import col

base = (sys.argv[1] if len(sys.argv) > 1 else "s3://ember/etl").rstrip("/")
ctx = ember.connect()

# The raw trips, as they would already sit in the bucket.
days = ["2026-11-01", "2026-11-02", "2026-11-03"]
raw = pd.DataFrame(
    {
        "day": [days[i % 3] for i in range(300)],
        "fare": [float((i * 37) % 50) - 2.0 for i in range(300)],
        "tip": [float((i * 11) % 7) for i in range(300)],
    }
)
ctx.from_pandas(raw, partitions=3).write_parquet(f"{base}/trips/")

trips = ctx.read_parquet(f"{base}/trips/")
daily = (
    trips.filter(col("fare") > 0)
    .with_column("tip_share", col("tip") / col("fare"))
    .group_by("day")
    .agg(
        ember.count().alias("trips"),
        ember.sum(col("fare")).alias("fares"),
        ember.avg(col("tip_share")).alias("tip_share"),
    )
    .sort("day")
)
daily.write_parquet(f"{base}/daily/", partition_by=["day"])
print(daily.to_pandas().to_string(index=False))

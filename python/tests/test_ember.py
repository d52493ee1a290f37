"""The ember package against embedded Ember and a real two-executor
cluster, compared with DuckDB, pandas and plain Python."""

import decimal
import threading
import _thread
import json
import time
import urllib.request

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

import ember
from ember import col, lit

from conftest import create_tpch_tables, tpch_query


def normalized(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimals and dates as floats and strings, so that Ember's and
    DuckDB's types compare by value."""
    out = frame.copy()
    for name in out.columns:
        sample = out[name].dropna()
        if len(sample) and isinstance(sample.iloc[0], decimal.Decimal):
            out[name] = out[name].astype(float)
        elif pd.api.types.is_datetime64_any_dtype(out[name]) or (
            len(sample) and hasattr(sample.iloc[0], "isoformat")
        ):
            out[name] = out[name].astype(str)
    return out.reset_index(drop=True)


def assert_same(ours: pd.DataFrame, reference: pd.DataFrame, ordered: bool):
    ours, reference = normalized(ours), normalized(reference)
    assert list(ours.columns) == list(reference.columns)
    if not ordered:
        ours = ours.sort_values(list(ours.columns)).reset_index(drop=True)
        reference = reference.sort_values(list(reference.columns)).reset_index(drop=True)
    # A decimal average is a decimal of scale 6 in Ember (DataFusion's
    # semantics) and a double in DuckDB: they agree to the 6th decimal.
    pd.testing.assert_frame_equal(ours, reference, check_dtype=False, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 5, 6, 10, 12, 18])
def test_tpch_queries_match_duckdb(ctx, duck, tpch_dir, n):
    create_tpch_tables(ctx, tpch_dir)
    sql = tpch_query(n)
    ours = ctx.sql(sql).to_pandas()
    reference = duck.sql(sql).df()
    assert len(ours) > 0
    assert_same(ours, reference, ordered=True)


def test_dataframe_transformations_match_pandas(ctx, tpch_dir):
    lineitem = ctx.read_parquet(f"{tpch_dir}/lineitem/")
    frame = pd.read_parquet(f"{tpch_dir}/lineitem/")
    ours = (
        lineitem.filter((col("l_quantity") > 10) & (col("l_returnflag") != "N"))
        .with_column("revenue", col("l_extendedprice") * (1 - col("l_discount")))
        .group_by("l_returnflag", "l_linestatus")
        .agg(
            ember.sum(col("revenue")).alias("revenue"),
            ember.count().alias("orders"),
            ember.max(col("l_quantity")).alias("most"),
        )
        .sort("l_returnflag", col("l_linestatus").desc())
        .to_pandas()
    )
    kept = frame[(frame.l_quantity > 10) & (frame.l_returnflag != "N")].copy()
    kept["revenue"] = kept.l_extendedprice.astype(float) * (1 - kept.l_discount.astype(float))
    reference = (
        kept.groupby(["l_returnflag", "l_linestatus"])
        .agg(revenue=("revenue", "sum"), orders=("revenue", "size"), most=("l_quantity", "max"))
        .reset_index()
        .sort_values(["l_returnflag", "l_linestatus"], ascending=[True, False])
    )
    assert_same(ours, reference, ordered=True)


def test_sql_strings_select_join_union_distinct_limit(ctx, tpch_dir):
    nation = ctx.read_parquet(f"{tpch_dir}/nation/")
    region = ctx.read_parquet(f"{tpch_dir}/region/")
    joined = nation.join(region, left_on=["n_regionkey"], right_on=["r_regionkey"]).select(
        "n_name", "r_name", "n_nationkey * 2 AS twice"
    )
    rows = joined.sort("n_name").to_pandas()
    nations = pd.read_parquet(f"{tpch_dir}/nation/")
    regions = pd.read_parquet(f"{tpch_dir}/region/")
    reference = nations.merge(regions, left_on="n_regionkey", right_on="r_regionkey")
    reference = reference.assign(twice=reference.n_nationkey * 2)[["n_name", "r_name", "twice"]]
    assert_same(rows, reference.sort_values("n_name"), ordered=True)
    assert joined.columns == ["n_name", "r_name", "twice"]

    both = nation.select("n_regionkey").union(nation.select("n_regionkey"))
    assert both.count() == 2 * len(nations)
    assert both.distinct().count() == nations.n_regionkey.nunique()
    assert nation.limit(7).count() == 7
    assert nation.repartition(3).count() == len(nations)
    assert nation.repartition(2, by=["n_regionkey"]).count() == len(nations)
    semi = nation.join(region.filter("r_name = 'ASIA'"), left_on=["n_regionkey"], right_on=["r_regionkey"], how="semi")
    assert semi.count() == 5


def test_driver_data_round_trips_from_pandas_arrow_and_polars(ctx):
    frame = pd.DataFrame(
        {
            "id": list(range(1000)),
            "name": [f"n{i % 7}" for i in range(1000)],
            "value": [i * 0.5 for i in range(1000)],
        }
    )
    df = ctx.from_pandas(frame, partitions=4)
    assert df.count() == 1000
    back = df.sort("id").to_pandas()
    pd.testing.assert_frame_equal(back, frame)
    sums = df.group_by("name").agg(ember.sum(col("value")).alias("total")).sort("name").to_pandas()
    reference = frame.groupby("name", as_index=False).agg(total=("value", "sum"))
    pd.testing.assert_frame_equal(sums, reference)

    table = pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]})
    assert ctx.from_arrow(table).sort("a").to_arrow().equals(table)
    polars_frame = pl.DataFrame({"k": [3, 1, 2]})
    assert ctx.from_polars(polars_frame).sort("k").to_polars()["k"].to_list() == [1, 2, 3]


def test_results_reach_pyarrow_polars_and_duckdb_through_the_capsule(ctx, tpch_dir):
    import duckdb

    nation = ctx.read_parquet(f"{tpch_dir}/nation/").select("n_nationkey", "n_name").sort("n_nationkey")
    batches = nation.collect()
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert sum(b.num_rows for b in batches) == 25
    assert pa.table(nation).num_rows == 25
    assert pl.DataFrame(nation).height == 25
    assert duckdb.sql("SELECT count(*) FROM nation").fetchall() == [(25,)]
    assert nation.to_polars()["n_nationkey"].to_list() == list(range(25))


def test_show_explain_and_schema(ctx, tpch_dir, capsys):
    nation = ctx.read_parquet(f"{tpch_dir}/nation/")
    nation.select("n_name").sort("n_name").show(3)
    printed = capsys.readouterr().out
    assert "ALGERIA" in printed and "ARGENTINA" in printed and "BRAZIL" in printed
    assert "CANADA" not in printed
    plan = nation.filter(col("n_regionkey") == 1).explain()
    assert "Filter" in plan or "filter" in plan
    assert "n_nationkey: Int" in nation.schema_string


def test_writes_are_partitioned_and_read_back(ctx, tpch_dir, tmp_path):
    out = tmp_path / "nations"
    ctx.read_parquet(f"{tpch_dir}/nation/").write_parquet(str(out) + "/", partition_by=["n_regionkey"])
    parts = sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_")))
    assert parts == [f"n_regionkey={i}" for i in range(5)]
    back = pads.dataset(out, format="parquet", partitioning="hive").to_table()
    assert back.num_rows == 25
    ctx.read_parquet(f"{tpch_dir}/region/").write_csv(str(tmp_path / "regions") + "/")
    assert pd.read_csv(next((tmp_path / "regions").glob("*.csv"))).shape[0] == 5
    ctx.read_parquet(f"{tpch_dir}/region/").write_json(str(tmp_path / "regions_json") + "/")
    lines = next((tmp_path / "regions_json").glob("*.json")).read_text().splitlines()
    assert sorted(json.loads(line)["r_name"] for line in lines)[0] == "AFRICA"


def test_cache_persist_unpersist(ctx, tpch_dir):
    orders = ctx.read_parquet(f"{tpch_dir}/orders/").filter(col("o_totalprice") > 1000)
    expected = orders.count()
    cached = orders.cache()
    assert cached.storage_level == "memory_and_disk"
    assert cached.count() == expected
    assert cached.count() == expected
    on_disk = orders.persist("disk")
    assert on_disk.storage_level == "disk"
    assert on_disk.count() == expected
    assert cached.unpersist().storage_level is None
    with pytest.raises(ember.EmberError, match="unknown storage level"):
        orders.persist("tape")


def test_errors_are_one_line_ember_errors(ctx, tmp_path):
    with pytest.raises(ember.EmberError) as bad_sql:
        ctx.sql("SELEC 1")
    assert "\n" not in str(bad_sql.value).strip()
    with pytest.raises(ember.EmberError, match="no input files"):
        ctx.read_parquet(str(tmp_path / "missing") + "/")
    with pytest.raises(ember.EmberError, match="not a join"):
        ctx.sql("SELECT 1 AS a").join(ctx.sql("SELECT 1 AS a"), on=["a"], how="sideways")
    with pytest.raises(ember.EmberError, match="truth value"):
        bool(col("a") > 1)


def test_ctrl_c_stops_a_running_query(ctx, tpch_dir, cluster):
    create_tpch_tables(ctx, tpch_dir)
    endless = ctx.sql(
        "SELECT count(*) FROM lineitem a, nation b, nation c, nation d "
        "WHERE length(a.l_comment) + length(b.n_comment) + length(c.n_comment) + length(d.n_comment) = 7"
    )
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        endless.to_pandas()
    assert time.monotonic() - started < 30
    if ctx.master != "embedded":
        with urllib.request.urlopen(f"http://{cluster}/api/ember/ui/jobs") as answer:
            jobs = json.load(answer)
        ours = [j for j in jobs if j.get("sql") and "nation d" in j["sql"]]
        assert ours and all(j["status"] == "cancelled" for j in ours), ours


def test_connect_follows_ember_master(monkeypatch, cluster):
    monkeypatch.setenv("EMBER_MASTER", f"df://{cluster}")
    assert ember.connect().master != "embedded"
    monkeypatch.setenv("EMBER_MASTER", "local")
    assert ember.connect().master == "embedded"
    with pytest.raises(ember.EmberError):
        ember.connect("df://127.0.0.1:1")


def test_literals_and_expressions():
    ctx = ember.connect("local")
    df = ctx.sql("SELECT 1 AS a, 2.5 AS b, 'x' AS c")
    out = df.select(
        (col("a") + 1).alias("a1"),
        (col("b") * 2).alias("b2"),
        (col("c") == lit("x")).alias("is_x"),
        col("a").isin([1, 3]).alias("in"),
        col("a").between(0, 1).alias("between"),
        col("a").cast("double").alias("as_double"),
        (~(col("a") > 5)).alias("not_big"),
    ).to_pandas()
    assert out.to_dict("records") == [
        {"a1": 2, "b2": 5.0, "is_x": True, "in": True, "between": True, "as_double": 1.0, "not_big": True}
    ]


def test_the_notebook_example_reads_and_writes_s3(s3_server, cluster, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    example = REPO / "examples" / "python" / "trips_etl.py"
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    raw = pd.DataFrame(
        {
            "day": [days[i % 3] for i in range(300)],
            "fare": [float((i * 37) % 50) - 2.0 for i in range(300)],
            "tip": [float((i * 11) % 7) for i in range(300)],
        }
    )
    kept = raw[raw.fare > 0].assign(tip_share=lambda f: f.tip / f.fare)
    expected = (
        kept.groupby("day", as_index=False)
        .agg(trips=("fare", "size"), fares=("fare", "sum"), tip_share=("tip_share", "mean"))
        .sort_values("day")
        .to_string(index=False)
    )
    for master, base in [("local", "s3://ember/etl-embedded"), (f"df://{cluster}", "s3://ember/etl-cluster")]:
        env = dict(os.environ)
        env.update(s3_server)
        env["EMBER_MASTER"] = master
        prefix = "embedded" if master == "local" else "cluster"
        done = subprocess.run(
            [sys.executable, str(example), base],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected.strip(), (prefix, done.stdout)


def test_python_functions_run_embedded_and_are_refused_on_a_cluster(ctx):
    import pyarrow.compute as pc

    def scaled(values, factor):
        return pc.multiply(values, factor)

    if ctx.master != "embedded":
        with pytest.raises(ember.EmberError, match="run only embedded.*named Rust function"):
            ctx.register_udf("scaled", scaled, ["bigint", "bigint"], "bigint")
        return
    f = ctx.register_udf("scaled", scaled, ["bigint", pa.int64()], pa.int64())
    frame = pd.DataFrame({"x": list(range(100))})
    df = ctx.from_pandas(frame, partitions=3)
    out = df.select(col("x"), f(col("x"), 3).alias("y")).sort("x").to_pandas()
    assert out.y.tolist() == [3 * x for x in range(100)]
    ctx.register_view("numbers", df)
    total = ctx.sql("SELECT sum(scaled(x, 2)) AS total FROM numbers").to_pandas()
    assert total.total.tolist() == [2 * sum(range(100))]

    def broken(values):
        raise ValueError("no luck")

    b = ctx.register_udf("broken", broken, ["bigint"], "bigint")
    with pytest.raises(ember.EmberError, match="Python function broken failed.*no luck"):
        df.select(b(col("x"))).to_pandas()
    with pytest.raises(ember.EmberError, match="not callable"):
        ctx.register_udf("nothing", 42, ["bigint"], "bigint")


def test_csv_json_and_catalog_tables_read_back(ctx, tpch_dir, tmp_path):
    region = ctx.read_parquet(f"{tpch_dir}/region/").select("r_regionkey", "r_name")
    region.write_csv(str(tmp_path / "csv") + "/")
    region.write_json(str(tmp_path / "json") + "/")
    expected = pd.read_parquet(f"{tpch_dir}/region/")[["r_regionkey", "r_name"]]
    for read in (ctx.read_csv, ctx.read_json):
        kind = "csv" if read == ctx.read_csv else "json"
        back = read(str(tmp_path / kind) + "/").select("r_regionkey", "r_name").sort("r_regionkey").to_pandas()
        assert_same(back, expected, ordered=True)
    create_tpch_tables(ctx, tpch_dir)
    assert ctx.table("region").count() == 5


def test_sql_functions_by_name(ctx, tpch_dir):
    nation = ctx.read_parquet(f"{tpch_dir}/nation/")
    out = (
        nation.filter(col("n_nationkey") < 3)
        .select(
            ember.func("lower", col("n_name")).alias("lower"),
            ember.func("round", col("n_nationkey") * 1.3, 1).alias("scaled"),
        )
        .sort("lower")
        .to_pandas()
    )
    names = pd.read_parquet(f"{tpch_dir}/nation/")
    names = names[names.n_nationkey < 3]
    assert out.lower.tolist() == sorted(n.lower() for n in names.n_name)
    assert out.scaled.tolist() == [0.0, 1.3, 2.6]
    spread = nation.agg(ember.func("stddev", col("n_nationkey")).alias("sd")).to_pandas()
    assert abs(spread.sd[0] - pd.read_parquet(f"{tpch_dir}/nation/").n_nationkey.std()) < 1e-9
    with pytest.raises(ember.EmberError, match="not a function"):
        ember.func("no_such_function", col("x"))

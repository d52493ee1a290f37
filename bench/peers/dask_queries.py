"""TPC-H queries written with Dask's dataframe API (Dask has no SQL).

Each function takes the tables (Dask dataframes by name) and returns the
query's result as a pandas dataframe, with the columns and order of the SQL
text in client/src/tpch/queries/. Queries not written here are reported as
unsupported for Dask.
"""

from datetime import datetime

import pandas as pd


def _date(text):
    return pd.Timestamp(datetime.strptime(text, "%Y-%m-%d"))


def _dates(frame, *columns):
    """Date columns as timestamps, whatever Parquet type they were read as."""
    for c in columns:
        frame[c] = frame[c].astype("datetime64[ns]")
    return frame


def q1(t):
    li = _dates(t["lineitem"], "l_shipdate")
    li = li[li.l_shipdate <= _date("1998-09-02")]
    li = li.assign(
        disc_price=li.l_extendedprice * (1 - li.l_discount),
    )
    li = li.assign(charge=li.disc_price * (1 + li.l_tax))
    out = (
        li.groupby(["l_returnflag", "l_linestatus"])
        .agg(
            sum_qty=("l_quantity", "sum"),
            sum_base_price=("l_extendedprice", "sum"),
            sum_disc_price=("disc_price", "sum"),
            sum_charge=("charge", "sum"),
            avg_qty=("l_quantity", "mean"),
            avg_price=("l_extendedprice", "mean"),
            avg_disc=("l_discount", "mean"),
            count_order=("l_quantity", "size"),
        )
        .reset_index()
        .compute()
    )
    return out.sort_values(["l_returnflag", "l_linestatus"])


def q3(t):
    c = t["customer"]
    o = _dates(t["orders"], "o_orderdate")
    li = _dates(t["lineitem"], "l_shipdate")
    c = c[c.c_mktsegment == "BUILDING"]
    o = o[o.o_orderdate < _date("1995-03-15")]
    li = li[li.l_shipdate > _date("1995-03-15")]
    j = c.merge(o, left_on="c_custkey", right_on="o_custkey").merge(
        li, left_on="o_orderkey", right_on="l_orderkey"
    )
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    out = (
        j.groupby(["l_orderkey", "o_orderdate", "o_shippriority"])
        .revenue.sum()
        .reset_index()
        .compute()
    )
    out = out.sort_values(["revenue", "o_orderdate"], ascending=[False, True]).head(10)
    return out[["l_orderkey", "revenue", "o_orderdate", "o_shippriority"]]


def q5(t):
    r = t["region"]
    n = t["nation"]
    c = t["customer"]
    o = _dates(t["orders"], "o_orderdate")
    li = t["lineitem"]
    s = t["supplier"]
    r = r[r.r_name == "ASIA"]
    o = o[(o.o_orderdate >= _date("1994-01-01")) & (o.o_orderdate < _date("1995-01-01"))]
    j = (
        r.merge(n, left_on="r_regionkey", right_on="n_regionkey")
        .merge(c, left_on="n_nationkey", right_on="c_nationkey")
        .merge(o, left_on="c_custkey", right_on="o_custkey")
        .merge(li, left_on="o_orderkey", right_on="l_orderkey")
        .merge(s, left_on=["l_suppkey", "n_nationkey"], right_on=["s_suppkey", "s_nationkey"])
    )
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    out = j.groupby("n_name").revenue.sum().reset_index().compute()
    return out.sort_values("revenue", ascending=False)


def q6(t):
    li = _dates(t["lineitem"], "l_shipdate")
    li = li[
        (li.l_shipdate >= _date("1994-01-01"))
        & (li.l_shipdate < _date("1995-01-01"))
        & (li.l_discount >= 0.05)
        & (li.l_discount <= 0.07)
        & (li.l_quantity < 24)
    ]
    revenue = (li.l_extendedprice * li.l_discount).sum().compute()
    return pd.DataFrame({"revenue": [revenue]})


def q10(t):
    c = t["customer"]
    o = _dates(t["orders"], "o_orderdate")
    li = t["lineitem"]
    n = t["nation"]
    o = o[(o.o_orderdate >= _date("1993-10-01")) & (o.o_orderdate < _date("1994-01-01"))]
    li = li[li.l_returnflag == "R"]
    j = (
        c.merge(o, left_on="c_custkey", right_on="o_custkey")
        .merge(li, left_on="o_orderkey", right_on="l_orderkey")
        .merge(n, left_on="c_nationkey", right_on="n_nationkey")
    )
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    keys = ["c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment"]
    out = j.groupby(keys).revenue.sum().reset_index().compute()
    out = out.sort_values("revenue", ascending=False).head(20)
    return out[["c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address", "c_phone", "c_comment"]]


def q4(t):
    o = _dates(t["orders"], "o_orderdate")
    li = _dates(t["lineitem"], "l_commitdate", "l_receiptdate")
    o = o[(o.o_orderdate >= _date("1993-07-01")) & (o.o_orderdate < _date("1993-10-01"))]
    late = li[li.l_commitdate < li.l_receiptdate][["l_orderkey"]].drop_duplicates()
    j = o.merge(late, left_on="o_orderkey", right_on="l_orderkey")
    out = j.groupby("o_orderpriority").o_orderkey.count().reset_index().compute()
    out.columns = ["o_orderpriority", "order_count"]
    return out.sort_values("o_orderpriority")


def q12(t):
    o = t["orders"]
    li = _dates(t["lineitem"], "l_shipdate", "l_commitdate", "l_receiptdate")
    li = li[
        li.l_shipmode.isin(["MAIL", "SHIP"])
        & (li.l_commitdate < li.l_receiptdate)
        & (li.l_shipdate < li.l_commitdate)
        & (li.l_receiptdate >= _date("1994-01-01"))
        & (li.l_receiptdate < _date("1995-01-01"))
    ]
    j = o.merge(li, left_on="o_orderkey", right_on="l_orderkey")
    high = j.o_orderpriority.isin(["1-URGENT", "2-HIGH"])
    j = j.assign(high_line_count=high.astype("int64"), low_line_count=(~high).astype("int64"))
    out = (
        j.groupby("l_shipmode")[["high_line_count", "low_line_count"]]
        .sum()
        .reset_index()
        .compute()
    )
    return out.sort_values("l_shipmode")


def q14(t):
    li = _dates(t["lineitem"], "l_shipdate")
    p = t["part"]
    li = li[(li.l_shipdate >= _date("1995-09-01")) & (li.l_shipdate < _date("1995-10-01"))]
    j = li.merge(p, left_on="l_partkey", right_on="p_partkey")
    revenue = j.l_extendedprice * (1 - j.l_discount)
    promo = revenue.where(j.p_type.str.startswith("PROMO"), 0.0)
    total, promo_total = revenue.sum().compute(), promo.sum().compute()
    return pd.DataFrame({"promo_revenue": [100.0 * promo_total / total]})


QUERIES = {1: q1, 3: q3, 4: q4, 5: q5, 6: q6, 10: q10, 12: q12, 14: q14}

"""TPC-H queries written with Dask's dataframe API (Dask has no SQL).

Each function takes the tables (Dask dataframes by name) and returns the
query's result as a pandas dataframe, with the columns and order of the SQL
text in client/src/tpch/queries/. All 22 queries are here; correlated
subqueries become a grouped aggregate joined back, EXISTS and NOT EXISTS
become counts of distinct values per key.
"""

from datetime import datetime

import dask
import pandas as pd


def _date(text):
    return pd.Timestamp(datetime.strptime(text, "%Y-%m-%d"))


def _dates(frame, *columns):
    """Date columns as timestamps, whatever Parquet type they were read as."""
    for c in columns:
        frame[c] = frame[c].astype("datetime64[ns]")
    return frame


def _sum(series):
    """SQL's SUM: NULL (None) over no rows, where pandas says 0."""
    count, total = dask.compute(series.count(), series.sum())
    return total if count else None


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
    return pd.DataFrame({"revenue": [_sum(li.l_extendedprice * li.l_discount)]})


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




def q2(t):
    p, s, ps, n, r = (t[k] for k in ["part", "supplier", "partsupp", "nation", "region"])
    r = r[r.r_name == "EUROPE"]
    europe = (
        r.merge(n, left_on="r_regionkey", right_on="n_regionkey")
        .merge(s, left_on="n_nationkey", right_on="s_nationkey")
        .merge(ps, left_on="s_suppkey", right_on="ps_suppkey")
    )
    cheapest = (
        europe.groupby("ps_partkey")
        .ps_supplycost.min()
        .reset_index()
        .rename(columns={"ps_supplycost": "min_cost"})
    )
    p = p[(p.p_size == 15) & p.p_type.str.endswith("BRASS")]
    j = p.merge(europe, left_on="p_partkey", right_on="ps_partkey").merge(cheapest, on="ps_partkey")
    j = j[j.ps_supplycost == j.min_cost]
    columns = ["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment"]
    out = j[columns].compute()
    out = out.sort_values(
        ["s_acctbal", "n_name", "s_name", "p_partkey"], ascending=[False, True, True, True]
    )
    return out.head(100)


def q7(t):
    s, li, o, c, n = (t[k] for k in ["supplier", "lineitem", "orders", "customer", "nation"])
    li = _dates(li, "l_shipdate")
    li = li[(li.l_shipdate >= _date("1995-01-01")) & (li.l_shipdate <= _date("1996-12-31"))]
    pair = n[n.n_name.isin(["FRANCE", "GERMANY"])][["n_nationkey", "n_name"]]
    supp = s.merge(pair, left_on="s_nationkey", right_on="n_nationkey")[["s_suppkey", "n_name"]]
    supp = supp.rename(columns={"n_name": "supp_nation"})
    cust = c.merge(pair, left_on="c_nationkey", right_on="n_nationkey")[["c_custkey", "n_name"]]
    cust = cust.rename(columns={"n_name": "cust_nation"})
    j = (
        li.merge(supp, left_on="l_suppkey", right_on="s_suppkey")
        .merge(o, left_on="l_orderkey", right_on="o_orderkey")
        .merge(cust, left_on="o_custkey", right_on="c_custkey")
    )
    j = j[j.supp_nation != j.cust_nation]
    j = j.assign(l_year=j.l_shipdate.dt.year, volume=j.l_extendedprice * (1 - j.l_discount))
    keys = ["supp_nation", "cust_nation", "l_year"]
    out = j.groupby(keys).volume.sum().reset_index().compute()
    return out.rename(columns={"volume": "revenue"}).sort_values(keys)


def q8(t):
    p, s, li, o, c, n, r = (
        t[k] for k in ["part", "supplier", "lineitem", "orders", "customer", "nation", "region"]
    )
    p = p[p.p_type == "ECONOMY ANODIZED STEEL"][["p_partkey"]]
    america = r[r.r_name == "AMERICA"].merge(n, left_on="r_regionkey", right_on="n_regionkey")
    cust = c.merge(america[["n_nationkey"]], left_on="c_nationkey", right_on="n_nationkey")
    cust = cust[["c_custkey"]]
    o = _dates(o, "o_orderdate")
    o = o[(o.o_orderdate >= _date("1995-01-01")) & (o.o_orderdate <= _date("1996-12-31"))]
    supp = s.merge(n, left_on="s_nationkey", right_on="n_nationkey")[["s_suppkey", "n_name"]]
    j = (
        li.merge(p, left_on="l_partkey", right_on="p_partkey")
        .merge(o, left_on="l_orderkey", right_on="o_orderkey")
        .merge(cust, left_on="o_custkey", right_on="c_custkey")
        .merge(supp, left_on="l_suppkey", right_on="s_suppkey")
    )
    volume = j.l_extendedprice * (1 - j.l_discount)
    j = j.assign(
        o_year=j.o_orderdate.dt.year,
        volume=volume,
        brazil=volume.where(j.n_name == "BRAZIL", 0.0),
    )
    out = j.groupby("o_year")[["brazil", "volume"]].sum().reset_index().compute()
    out["mkt_share"] = out.brazil / out.volume
    return out.sort_values("o_year")[["o_year", "mkt_share"]]


def q9(t):
    p, s, li, ps, o, n = (
        t[k] for k in ["part", "supplier", "lineitem", "partsupp", "orders", "nation"]
    )
    p = p[p.p_name.str.contains("green", regex=False)][["p_partkey"]]
    o = _dates(o, "o_orderdate")
    j = (
        li.merge(p, left_on="l_partkey", right_on="p_partkey")
        .merge(ps, left_on=["l_suppkey", "l_partkey"], right_on=["ps_suppkey", "ps_partkey"])
        .merge(s, left_on="l_suppkey", right_on="s_suppkey")
        .merge(o, left_on="l_orderkey", right_on="o_orderkey")
        .merge(n, left_on="s_nationkey", right_on="n_nationkey")
    )
    j = j.assign(
        nation=j.n_name,
        o_year=j.o_orderdate.dt.year,
        amount=j.l_extendedprice * (1 - j.l_discount) - j.ps_supplycost * j.l_quantity,
    )
    out = j.groupby(["nation", "o_year"]).amount.sum().reset_index().compute()
    out = out.rename(columns={"amount": "sum_profit"})
    return out.sort_values(["nation", "o_year"], ascending=[True, False])


def q11(t):
    ps, s, n = (t[k] for k in ["partsupp", "supplier", "nation"])
    n = n[n.n_name == "GERMANY"]
    j = ps.merge(s, left_on="ps_suppkey", right_on="s_suppkey").merge(
        n, left_on="s_nationkey", right_on="n_nationkey"
    )
    j = j.assign(value=j.ps_supplycost * j.ps_availqty)
    by_part = j.groupby("ps_partkey").value.sum().reset_index().compute()
    # FRACTION is 0.0001 / SF; the data holds 10,000 suppliers per unit of SF.
    scale_factor = len(s) / 10_000
    threshold = by_part.value.sum() * round(0.0001 / scale_factor, 12)
    out = by_part[by_part.value > threshold]
    return out.sort_values(["value", "ps_partkey"], ascending=[False, True])


def q13(t):
    c, o = t["customer"], t["orders"]
    o = o[~o.o_comment.str.contains("special.*requests", regex=True)]
    j = c[["c_custkey"]].merge(
        o[["o_orderkey", "o_custkey"]], left_on="c_custkey", right_on="o_custkey", how="left"
    )
    counts = j.groupby("c_custkey").o_orderkey.count().reset_index()
    counts = counts.rename(columns={"o_orderkey": "c_count"})
    out = counts.groupby("c_count").c_custkey.count().reset_index().compute()
    out = out.rename(columns={"c_custkey": "custdist"})
    return out.sort_values(["custdist", "c_count"], ascending=[False, False])


def q15(t):
    li, s = t["lineitem"], t["supplier"]
    li = _dates(li, "l_shipdate")
    li = li[(li.l_shipdate >= _date("1996-01-01")) & (li.l_shipdate < _date("1996-04-01"))]
    li = li.assign(total_revenue=li.l_extendedprice * (1 - li.l_discount))
    revenue = li.groupby("l_suppkey").total_revenue.sum().reset_index().compute()
    top = revenue[revenue.total_revenue == revenue.total_revenue.max()]
    suppliers = s[["s_suppkey", "s_name", "s_address", "s_phone"]].compute()
    out = suppliers.merge(top, left_on="s_suppkey", right_on="l_suppkey")
    return out.sort_values("s_suppkey")[
        ["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"]
    ]


def q16(t):
    ps, p, s = t["partsupp"], t["part"], t["supplier"]
    complaints = s[s.s_comment.str.contains("Customer.*Complaints", regex=True)]
    complaints = set(complaints.s_suppkey.compute())
    p = p[
        (p.p_brand != "Brand#45")
        & ~p.p_type.str.startswith("MEDIUM POLISHED")
        & p.p_size.isin([49, 14, 23, 45, 19, 3, 36, 9])
    ]
    ps = ps[~ps.ps_suppkey.isin(list(complaints))]
    j = ps.merge(p, left_on="ps_partkey", right_on="p_partkey")
    keys = ["p_brand", "p_type", "p_size"]
    out = j.groupby(keys).ps_suppkey.nunique().reset_index().compute()
    out = out.rename(columns={"ps_suppkey": "supplier_cnt"})
    return out.sort_values(["supplier_cnt", *keys], ascending=[False, True, True, True])


def q17(t):
    li, p = t["lineitem"], t["part"]
    p = p[(p.p_brand == "Brand#23") & (p.p_container == "MED BOX")][["p_partkey"]]
    j = li.merge(p, left_on="l_partkey", right_on="p_partkey")
    # Every lineitem of a selected part is in `j`, so its per-part average
    # is the correlated subquery's.
    average = j.groupby("l_partkey").l_quantity.mean().reset_index()
    average = average.rename(columns={"l_quantity": "avg_quantity"})
    j = j.merge(average, on="l_partkey")
    j = j[j.l_quantity < 0.2 * j.avg_quantity]
    total = _sum(j.l_extendedprice)
    return pd.DataFrame({"avg_yearly": [None if total is None else total / 7.0]})


def q18(t):
    c, o, li = t["customer"], t["orders"], t["lineitem"]
    quantity = li.groupby("l_orderkey").l_quantity.sum().reset_index()
    quantity = quantity.rename(columns={"l_quantity": "total_quantity"})
    large = quantity[quantity.total_quantity > 300]
    j = large.merge(o, left_on="l_orderkey", right_on="o_orderkey").merge(
        c, left_on="o_custkey", right_on="c_custkey"
    )
    columns = ["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice", "total_quantity"]
    out = j[columns].compute()
    out = out.sort_values(
        ["o_totalprice", "o_orderdate", "o_orderkey"], ascending=[False, True, True]
    )
    return out.head(100)


def q19(t):
    li, p = t["lineitem"], t["part"]
    li = li[li.l_shipmode.isin(["AIR", "AIR REG"]) & (li.l_shipinstruct == "DELIVER IN PERSON")]
    j = li.merge(p, left_on="l_partkey", right_on="p_partkey")

    def kind(brand, containers, low, size):
        return (
            (j.p_brand == brand)
            & j.p_container.isin(containers)
            & (j.l_quantity >= low)
            & (j.l_quantity <= low + 10)
            & (j.p_size >= 1)
            & (j.p_size <= size)
        )

    j = j[
        kind("Brand#12", ["SM CASE", "SM BOX", "SM PACK", "SM PKG"], 1, 5)
        | kind("Brand#23", ["MED BAG", "MED BOX", "MED PKG", "MED PACK"], 10, 10)
        | kind("Brand#34", ["LG CASE", "LG BOX", "LG PACK", "LG PKG"], 20, 15)
    ]
    return pd.DataFrame({"revenue": [_sum(j.l_extendedprice * (1 - j.l_discount))]})


def q20(t):
    s, n, ps, p, li = (t[k] for k in ["supplier", "nation", "partsupp", "part", "lineitem"])
    p = p[p.p_name.str.startswith("forest")][["p_partkey"]]
    li = _dates(li, "l_shipdate")
    li = li[(li.l_shipdate >= _date("1994-01-01")) & (li.l_shipdate < _date("1995-01-01"))]
    shipped = li.groupby(["l_partkey", "l_suppkey"]).l_quantity.sum().reset_index()
    j = ps.merge(p, left_on="ps_partkey", right_on="p_partkey").merge(
        shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"]
    )
    j = j[j.ps_availqty > 0.5 * j.l_quantity]
    wanted = set(j.ps_suppkey.compute())
    canada = s.merge(n[n.n_name == "CANADA"], left_on="s_nationkey", right_on="n_nationkey")
    out = canada[canada.s_suppkey.isin(list(wanted))][["s_name", "s_address"]].compute()
    return out.sort_values("s_name")


def q21(t):
    s, li, o, n = (t[k] for k in ["supplier", "lineitem", "orders", "nation"])
    li = _dates(li, "l_receiptdate", "l_commitdate")
    late = li[li.l_receiptdate > li.l_commitdate][["l_orderkey", "l_suppkey"]]
    # EXISTS another supplier on the order: it has more than one supplier;
    # NOT EXISTS another late one: its late suppliers are this one alone.
    suppliers = li.groupby("l_orderkey").l_suppkey.nunique().reset_index()
    suppliers = suppliers.rename(columns={"l_suppkey": "suppliers"})
    late_suppliers = late.groupby("l_orderkey").l_suppkey.nunique().reset_index()
    late_suppliers = late_suppliers.rename(columns={"l_suppkey": "late_suppliers"})
    saudi = s.merge(n[n.n_name == "SAUDI ARABIA"], left_on="s_nationkey", right_on="n_nationkey")
    failed = o[o.o_orderstatus == "F"][["o_orderkey"]]
    j = (
        late.merge(saudi[["s_suppkey", "s_name"]], left_on="l_suppkey", right_on="s_suppkey")
        .merge(failed, left_on="l_orderkey", right_on="o_orderkey")
        .merge(suppliers, on="l_orderkey")
        .merge(late_suppliers, on="l_orderkey")
    )
    j = j[(j.suppliers > 1) & (j.late_suppliers == 1)]
    out = j.groupby("s_name").l_orderkey.count().reset_index().compute()
    out = out.rename(columns={"l_orderkey": "numwait"})
    return out.sort_values(["numwait", "s_name"], ascending=[False, True]).head(100)


def q22(t):
    c, o = t["customer"], t["orders"]
    c = c.assign(cntrycode=c.c_phone.str.slice(0, 2))
    c = c[c.cntrycode.isin(["13", "31", "23", "29", "30", "18", "17"])]
    average = c[c.c_acctbal > 0.0].c_acctbal.mean().compute()
    c = c[c.c_acctbal > average]
    ordered = o[["o_custkey"]].drop_duplicates()
    j = c.merge(ordered, left_on="c_custkey", right_on="o_custkey", how="left")
    j = j[j.o_custkey.isna()]
    out = (
        j.groupby("cntrycode")
        .agg(numcust=("c_custkey", "count"), totacctbal=("c_acctbal", "sum"))
        .reset_index()
        .compute()
    )
    return out.sort_values("cntrycode")


QUERIES = {
    number: globals()[f"q{number}"] for number in range(1, 23)
}

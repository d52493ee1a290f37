-- Ember quickstart: a tour over TPC-H sample data (scale factor 0.01).
--
-- Run it embedded (the default):     ember sql -f examples/quickstart.sql
-- or on a cluster:                   ember sql --scheduler localhost:50050 -f examples/quickstart.sql
--
-- The data under examples/data/tpch-sf0.01 was made with
--   ember datagen tpch --scale-factor 0.01 --output examples/data/tpch-sf0.01

CREATE EXTERNAL TABLE region   STORED AS PARQUET LOCATION 'examples/data/tpch-sf0.01/region/';
CREATE EXTERNAL TABLE nation   STORED AS PARQUET LOCATION 'examples/data/tpch-sf0.01/nation/';
CREATE EXTERNAL TABLE customer STORED AS PARQUET LOCATION 'examples/data/tpch-sf0.01/customer/';
CREATE EXTERNAL TABLE orders   STORED AS PARQUET LOCATION 'examples/data/tpch-sf0.01/orders/';
CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION 'examples/data/tpch-sf0.01/lineitem/';
CREATE EXTERNAL TABLE supplier STORED AS PARQUET LOCATION 'examples/data/tpch-sf0.01/supplier/';

-- 1. How big is the data set?
SELECT
    (SELECT count(*) FROM lineitem) AS line_items,
    (SELECT count(*) FROM orders)   AS orders,
    (SELECT count(*) FROM customer) AS customers;

-- 2. Revenue by region and year: a five-way join and an aggregate.
SELECT
    r_name                                   AS region,
    extract(year FROM o_orderdate)           AS year,
    sum(l_extendedprice * (1 - l_discount))  AS revenue
FROM lineitem
JOIN orders   ON l_orderkey = o_orderkey
JOIN customer ON o_custkey = c_custkey
JOIN nation   ON c_nationkey = n_nationkey
JOIN region   ON n_regionkey = r_regionkey
WHERE o_orderdate >= DATE '1996-01-01'
GROUP BY r_name, extract(year FROM o_orderdate)
ORDER BY region, year;

-- 3. The best customer of each region: a window function (rank) over an aggregate.
SELECT region, customer, spent
FROM (
    SELECT
        r_name                      AS region,
        c_name                      AS customer,
        sum(o_totalprice)           AS spent,
        rank() OVER (PARTITION BY r_name ORDER BY sum(o_totalprice) DESC) AS place
    FROM orders
    JOIN customer ON o_custkey = c_custkey
    JOIN nation   ON c_nationkey = n_nationkey
    JOIN region   ON n_regionkey = r_regionkey
    GROUP BY r_name, c_name
) AS ranked
WHERE place = 1
ORDER BY region;

-- 4. Orders per month in 1995 with a running total (window frame).
SELECT
    date_trunc('month', o_orderdate)         AS month,
    count(*)                                 AS orders,
    sum(count(*)) OVER (ORDER BY date_trunc('month', o_orderdate)) AS orders_so_far
FROM orders
WHERE o_orderdate >= DATE '1995-01-01' AND o_orderdate < DATE '1996-01-01'
GROUP BY date_trunc('month', o_orderdate)
ORDER BY month;

-- 5. Which ship modes deliver late, and by how much?
SELECT
    l_shipmode                                              AS ship_mode,
    count(*)                                                AS shipments,
    round(avg(CASE WHEN l_receiptdate > l_commitdate THEN 1.0 ELSE 0.0 END) * 100, 1) AS late_pct,
    max(l_receiptdate - l_commitdate)                       AS worst_delay
FROM lineitem
GROUP BY l_shipmode
ORDER BY late_pct DESC, ship_mode;

-- 6. The top suppliers and their share of all revenue (a window over the whole result).
SELECT
    s_name                                                  AS supplier,
    n_name                                                  AS nation,
    sum(l_extendedprice * (1 - l_discount))                 AS revenue,
    round(100 * sum(l_extendedprice * (1 - l_discount))
        / sum(sum(l_extendedprice * (1 - l_discount))) OVER (), 2) AS share_pct
FROM lineitem
JOIN supplier ON l_suppkey = s_suppkey
JOIN nation   ON s_nationkey = n_nationkey
GROUP BY s_name, n_name
ORDER BY revenue DESC, supplier
LIMIT 5;

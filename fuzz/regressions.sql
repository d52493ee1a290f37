-- Queries the fuzzer once found answered differently, kept so that they
-- stay fixed: `ember_fuzz::run` runs every one of them on every engine
-- before the generated queries, CI's run included. Each entry is a
-- header line (`-- seed S, query N, ordered|unordered: what it found`)
-- and the query, ending with a semicolon.

-- seed 1, query 1181, ordered: a cluster answer sorted within each partition only: the ORDER BY sat below a broadcast join that the cluster partitioned (fixed in 6beb217)
SELECT t1.o_orderdate AS c0 FROM orders AS t1 WHERE t1.o_orderkey NOT IN (SELECT s2.l_orderkey FROM lineitem AS s2 WHERE (CAST(s2.l_extendedprice AS DOUBLE) BETWEEN 57.5 AND 6.5)) ORDER BY c0 DESC NULLS LAST;

-- seed 1, query 3857, ordered: the same as query 1181 (fixed in 6beb217)
SELECT t1.r_regionkey AS c0 FROM region AS t1 WHERE NOT EXISTS (SELECT 1 FROM nation AS s2 WHERE s2.n_regionkey = t1.r_regionkey AND (s2.n_regionkey >= 38)) ORDER BY c0 ASC NULLS LAST;

-- seed 1, query 8260, ordered: the same as query 1181 (fixed in 6beb217)
SELECT COALESCE(t1.n_comment, 'AIR') AS c0, COALESCE(t1.n_nationkey, t1.n_regionkey) AS c1 FROM nation AS t1 WHERE NOT EXISTS (SELECT 1 FROM region AS s2 WHERE s2.r_regionkey = t1.n_regionkey AND (s2.r_regionkey BETWEEN 32 AND 10)) ORDER BY c0 ASC NULLS FIRST, c1 ASC NULLS LAST;

-- seed 1, query 6326, ordered: a FULL JOIN under LIMIT 62 answered 124 rows on a cluster: the limit was pushed into a filter above a broadcast join before the join was partitioned (fixed in 9890c18)
SELECT lower('Brand#23') AS c0, '1-URGENT' AS c1 FROM orders AS t1 FULL JOIN lineitem AS t2 ON t1.o_orderkey = t2.l_orderkey WHERE (SELECT count(*) FROM customer AS s3 WHERE s3.c_custkey = t1.o_custkey AND (s3.c_address BETWEEN 'N' AND 'Supplier#000000001')) > 0 ORDER BY c0 ASC NULLS FIRST, c1 DESC NULLS LAST LIMIT 62;

-- seed 1, query 6933, ordered: a cluster answer ordered within each partition only: the ORDER BY was kept by broadcast joins whose sides Ballista swapped once their inputs had run (fixed by KeepOrderOnCluster)
SELECT t2.l_quantity AS c0 FROM part AS t1 LEFT JOIN lineitem AS t2 ON t1.p_partkey = t2.l_partkey WHERE ((- t1.p_partkey) IS DISTINCT FROM (t1.p_size + t1.p_partkey)) EXCEPT SELECT DISTINCT 3972.90 AS c0 FROM nation AS t3 WHERE (CAST('1394.27' AS DECIMAL(15, 2)) IS NOT NULL) ORDER BY c0 DESC NULLS FIRST;

-- seed 1, query 7814, ordered: the same as query 6933
SELECT t2.s_acctbal AS c0 FROM nation AS t1 JOIN supplier AS t2 ON t1.n_nationkey = t2.s_nationkey LEFT JOIN nation AS t3 ON t1.n_regionkey = t3.n_regionkey ORDER BY c0 ASC NULLS FIRST;

-- seed 1, query 8062, ordered: the same as query 6933
SELECT NULLIF(upper(t2.l_comment), 'F') AS c0, CAST('4132.48' AS DECIMAL(15, 2)) AS c1, NULLIF(t2.l_partkey, 40) AS c2 FROM orders AS t1 LEFT JOIN lineitem AS t2 ON t1.o_orderkey = t2.l_orderkey JOIN part AS t3 ON t2.l_partkey = t3.p_partkey WHERE (t2.l_extendedprice >= t1.o_totalprice) EXCEPT SELECT DISTINCT t4.n_name AS c0, 1408.36 AS c1, t4.n_regionkey AS c2 FROM nation AS t4 JOIN nation AS t5 ON t4.n_regionkey = t5.n_regionkey ORDER BY c0 DESC NULLS FIRST, c1 DESC NULLS FIRST, c2 ASC NULLS FIRST;
-- seed 1, query 2015 (its LIMIT 16, which cut through tied rows, left out), unordered: window functions over one partition (a constant key) and then over a hash exchange of it failed on a cluster with "Expects PARTITION BY expression to be ordered" (fixed by KeepOrderOnCluster)
SELECT first_value(t1.l_shipdate) OVER (PARTITION BY 1461 ORDER BY t1.l_orderkey ASC, t1.l_linenumber ASC) AS c0, row_number() OVER (PARTITION BY (t1.l_orderkey * 2) ORDER BY t1.l_orderkey ASC, t1.l_linenumber ASC) AS c1, lag(replace(t1.l_shipmode, '', 'AIR'), 1) OVER (PARTITION BY t1.l_orderkey ORDER BY t1.l_orderkey ASC, t1.l_linenumber ASC) AS c2 FROM lineitem AS t1 WHERE (t1.l_linenumber IS NOT NULL) ORDER BY c0 ASC NULLS FIRST, c1 DESC NULLS LAST, c2 ASC NULLS LAST;

-- seed 2, query 110, ordered: a UNION ALL under ORDER BY failed to plan on a cluster (SanityCheckPlan): KeepOrderOnCluster dropped the sort of a union input ordered by fewer keys than the union, whose order DataFusion does not count as maintained (fixed by counting every input of an ordered operator as relied on)
SELECT CASE WHEN (t2.ps_supplycost <> 1742.67) THEN CAST(t2.ps_availqty AS VARCHAR) ELSE 'MAIL' END AS c0, ((DATE '1996-06-23' + INTERVAL '133 days') + INTERVAL '139 days') AS c1 FROM supplier AS t1 JOIN partsupp AS t2 ON t1.s_suppkey = t2.ps_suppkey WHERE (t2.ps_supplycost BETWEEN 1603.91 AND 598.76) UNION ALL SELECT lower(trim(t4.s_name)) AS c0, t5.l_receiptdate AS c1 FROM customer AS t3 RIGHT JOIN supplier AS t4 ON t3.c_nationkey = t4.s_nationkey JOIN lineitem AS t5 ON t4.s_suppkey = t5.l_suppkey WHERE (t5.l_returnflag IN ('A')) ORDER BY c0 DESC NULLS LAST, c1 DESC NULLS LAST;

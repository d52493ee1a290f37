//! The TPC-H tables as the generator sees them: typed columns, unique keys,
//! the joins that make sense between them, and literals that occur in the
//! data, so that predicates select some rows and not all.

/// The SQL types the generator builds expressions of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// BIGINT or INT.
    Int,
    /// DECIMAL.
    Decimal,
    /// DOUBLE.
    Float,
    /// VARCHAR.
    Text,
    /// DATE.
    Date,
    /// BOOLEAN.
    Bool,
}

/// A TPC-H table.
#[derive(Debug)]
pub struct TableDef {
    /// Its name.
    pub name: &'static str,
    /// Its columns and their types.
    pub columns: &'static [(&'static str, SqlType)],
    /// Columns that identify a row, so that ordering by them is total.
    pub key: &'static [&'static str],
}

use SqlType::{Date, Decimal, Int, Text};

/// The eight TPC-H tables.
pub const TABLES: [TableDef; 8] = [
    TableDef {
        name: "region",
        columns: &[("r_regionkey", Int), ("r_name", Text), ("r_comment", Text)],
        key: &["r_regionkey"],
    },
    TableDef {
        name: "nation",
        columns: &[
            ("n_nationkey", Int),
            ("n_name", Text),
            ("n_regionkey", Int),
            ("n_comment", Text),
        ],
        key: &["n_nationkey"],
    },
    TableDef {
        name: "supplier",
        columns: &[
            ("s_suppkey", Int),
            ("s_name", Text),
            ("s_address", Text),
            ("s_nationkey", Int),
            ("s_phone", Text),
            ("s_acctbal", Decimal),
            ("s_comment", Text),
        ],
        key: &["s_suppkey"],
    },
    TableDef {
        name: "customer",
        columns: &[
            ("c_custkey", Int),
            ("c_name", Text),
            ("c_address", Text),
            ("c_nationkey", Int),
            ("c_phone", Text),
            ("c_acctbal", Decimal),
            ("c_mktsegment", Text),
            ("c_comment", Text),
        ],
        key: &["c_custkey"],
    },
    TableDef {
        name: "part",
        columns: &[
            ("p_partkey", Int),
            ("p_name", Text),
            ("p_mfgr", Text),
            ("p_brand", Text),
            ("p_type", Text),
            ("p_size", Int),
            ("p_container", Text),
            ("p_retailprice", Decimal),
            ("p_comment", Text),
        ],
        key: &["p_partkey"],
    },
    TableDef {
        name: "partsupp",
        columns: &[
            ("ps_partkey", Int),
            ("ps_suppkey", Int),
            ("ps_availqty", Int),
            ("ps_supplycost", Decimal),
            ("ps_comment", Text),
        ],
        // At the smallest scale factors tpchgen repeats (ps_partkey,
        // ps_suppkey) pairs, so orders by key take every column.
        key: &[
            "ps_partkey",
            "ps_suppkey",
            "ps_availqty",
            "ps_supplycost",
            "ps_comment",
        ],
    },
    TableDef {
        name: "orders",
        columns: &[
            ("o_orderkey", Int),
            ("o_custkey", Int),
            ("o_orderstatus", Text),
            ("o_totalprice", Decimal),
            ("o_orderdate", Date),
            ("o_orderpriority", Text),
            ("o_clerk", Text),
            ("o_shippriority", Int),
            ("o_comment", Text),
        ],
        key: &["o_orderkey"],
    },
    TableDef {
        name: "lineitem",
        columns: &[
            ("l_orderkey", Int),
            ("l_partkey", Int),
            ("l_suppkey", Int),
            ("l_linenumber", Int),
            ("l_quantity", Decimal),
            ("l_extendedprice", Decimal),
            ("l_discount", Decimal),
            ("l_tax", Decimal),
            ("l_returnflag", Text),
            ("l_linestatus", Text),
            ("l_shipdate", Date),
            ("l_commitdate", Date),
            ("l_receiptdate", Date),
            ("l_shipinstruct", Text),
            ("l_shipmode", Text),
            ("l_comment", Text),
        ],
        key: &["l_orderkey", "l_linenumber"],
    },
];

/// Column pairs that join: `(table, column, table, column)`. Foreign keys,
/// and two many-to-many pairs (customers and suppliers of a nation, nations
/// of a region).
pub const JOINS: [(&str, &str, &str, &str); 11] = [
    ("nation", "n_regionkey", "region", "r_regionkey"),
    ("supplier", "s_nationkey", "nation", "n_nationkey"),
    ("customer", "c_nationkey", "nation", "n_nationkey"),
    ("partsupp", "ps_partkey", "part", "p_partkey"),
    ("partsupp", "ps_suppkey", "supplier", "s_suppkey"),
    ("orders", "o_custkey", "customer", "c_custkey"),
    ("lineitem", "l_orderkey", "orders", "o_orderkey"),
    ("lineitem", "l_partkey", "part", "p_partkey"),
    ("lineitem", "l_suppkey", "supplier", "s_suppkey"),
    ("customer", "c_nationkey", "supplier", "s_nationkey"),
    ("nation", "n_regionkey", "nation", "n_regionkey"),
];

/// Text that occurs in the data (whole values and fragments for `LIKE`).
pub const TEXTS: [&str; 24] = [
    "BUILDING",
    "AUTOMOBILE",
    "MACHINERY",
    "HOUSEHOLD",
    "R",
    "F",
    "N",
    "O",
    "A",
    "AIR",
    "MAIL",
    "SHIP",
    "TRUCK",
    "Brand#23",
    "Brand#45",
    "1-URGENT",
    "5-LOW",
    "ASIA",
    "EUROPE",
    "GERMANY",
    "MED BOX",
    "Supplier#000000001",
    "",
    "the",
];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

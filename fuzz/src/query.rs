//! Whole queries: a FROM clause of joined TPC-H tables, then one of several
//! shapes (a selection, an aggregate, window functions, subqueries, a
//! derived table, a set operation), with an `ORDER BY` over every output
//! column so that engines that agree return the same rows in the same
//! order.

use crate::expr::{Column, ExprGen};
use crate::rng::Rng;
use crate::schema::{JOINS, SqlType, TABLES, TableDef, table};

/// The shape of a generated query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// Projections and a filter over joined tables.
    Select,
    /// GROUP BY (or a global aggregate) with HAVING.
    Aggregate,
    /// Window functions over one table.
    Window,
    /// IN, EXISTS and scalar subqueries, correlated or not.
    Subquery,
    /// A query over an aggregated derived table.
    Derived,
    /// UNION, INTERSECT or EXCEPT of two selections.
    SetOperation,
    /// A query an earlier run found answered differently, kept in
    /// `fuzz/regressions.sql` (not generated).
    Regression,
}

impl Shape {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Select => "select",
            Shape::Aggregate => "aggregate",
            Shape::Window => "window",
            Shape::Subquery => "subquery",
            Shape::Derived => "derived table",
            Shape::SetOperation => "set operation",
            Shape::Regression => "kept regression",
        }
    }
}

/// One generated query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Its text.
    pub sql: String,
    /// Its shape.
    pub shape: Shape,
    /// Whether its result order is defined (an `ORDER BY` over every
    /// output column, none of them floating-point).
    pub ordered: bool,
}

/// A table or derived table in a FROM clause.
#[derive(Debug, Clone)]
struct Source {
    /// The TPC-H table, when it is one.
    table: Option<&'static TableDef>,
    alias: String,
    columns: Vec<Column>,
}

impl Source {
    fn of_table(def: &'static TableDef, alias: String) -> Self {
        let columns = def
            .columns
            .iter()
            .map(|(name, ty)| Column {
                sql: format!("{alias}.{name}"),
                ty: *ty,
            })
            .collect();
        Self {
            table: Some(def),
            alias,
            columns,
        }
    }
}

/// A FROM clause and what it brings into scope.
struct From {
    sql: String,
    sources: Vec<Source>,
}

impl From {
    fn columns(&self) -> Vec<Column> {
        self.sources
            .iter()
            .flat_map(|s| s.columns.clone())
            .collect()
    }
}

/// The SQL name of a type, for casts.
fn sql_type_name(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Int => "BIGINT",
        SqlType::Decimal => "DECIMAL(15, 2)",
        SqlType::Float => "DOUBLE",
        SqlType::Text => "VARCHAR",
        SqlType::Date => "DATE",
        SqlType::Bool => "BOOLEAN",
    }
}

/// Generates queries from a seed: the same seed, the same queries.
pub struct QueryGenerator {
    rng: Rng,
    aliases: usize,
}

/// The types of output columns, with their weights.
const OUTPUT_TYPES: [SqlType; 9] = [
    SqlType::Int,
    SqlType::Int,
    SqlType::Decimal,
    SqlType::Decimal,
    SqlType::Text,
    SqlType::Text,
    SqlType::Date,
    SqlType::Float,
    SqlType::Bool,
];

impl QueryGenerator {
    /// A generator whose queries are fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            aliases: 0,
        }
    }

    /// The next query.
    pub fn next_query(&mut self) -> Query {
        self.aliases = 0;
        let shape = *self.rng.pick(&[
            Shape::Select,
            Shape::Select,
            Shape::Aggregate,
            Shape::Aggregate,
            Shape::Aggregate,
            Shape::Window,
            Shape::Subquery,
            Shape::Subquery,
            Shape::Derived,
            Shape::SetOperation,
        ]);
        let (body, types) = match shape {
            Shape::Select => self.select(None),
            Shape::Aggregate => self.aggregate(),
            Shape::Window => self.window(),
            Shape::Subquery => self.subquery(),
            Shape::Derived => self.derived(),
            // Never picked above: kept regressions are not generated.
            Shape::SetOperation | Shape::Regression => self.set_operation(),
        };
        let (sql, ordered) = self.order(body, &types, shape == Shape::Window);
        Query {
            sql,
            shape,
            ordered,
        }
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// Appends an `ORDER BY` over every column (and maybe a `LIMIT`), unless
    /// a column is floating-point: engines may order nearly equal doubles
    /// differently, so such results are compared as multisets.
    fn order(&mut self, body: String, types: &[SqlType], limit: bool) -> (String, bool) {
        if types.contains(&SqlType::Float) || (!limit && self.rng.chance(30)) {
            return (body, false);
        }
        let keys: Vec<String> = (0..types.len())
            .map(|i| {
                let direction = *self.rng.pick(&["ASC", "DESC"]);
                let nulls = *self.rng.pick(&["NULLS FIRST", "NULLS LAST"]);
                format!("c{i} {direction} {nulls}")
            })
            .collect();
        let mut sql = format!("{body} ORDER BY {}", keys.join(", "));
        if limit || self.rng.chance(40) {
            sql.push_str(&format!(" LIMIT {}", self.rng.between(1, 100)));
        }
        (sql, true)
    }

    /// A FROM clause of one to `max` tables joined along [`JOINS`].
    fn from(&mut self, max: usize) -> From {
        // Small tables more often than lineitem, to keep joins quick.
        let first = *self.rng.pick(&[
            "region", "nation", "nation", "supplier", "customer", "customer", "part", "partsupp",
            "orders", "orders", "lineitem",
        ]);
        let alias = self.alias("t");
        let first = Source::of_table(table(first).expect("a TPC-H table"), alias);
        let mut sql = format!("{} AS {}", first.table.expect("a table").name, first.alias);
        let mut sources = vec![first];
        let joins = self.rng.below(max);
        for _ in 0..joins {
            let candidates: Vec<(usize, &str, &str, &str)> = JOINS
                .iter()
                .flat_map(|&(a, ac, b, bc)| [(a, ac, b, bc), (b, bc, a, ac)])
                .filter_map(|(a, ac, b, bc)| {
                    let left = sources
                        .iter()
                        .position(|s| s.table.is_some_and(|t| t.name == a))?;
                    let repeated = sources.iter().any(|s| s.table.is_some_and(|t| t.name == b));
                    (!repeated || (b == "nation" && sources.len() < 3)).then_some((left, ac, b, bc))
                })
                .collect();
            if candidates.is_empty() {
                break;
            }
            let (left, left_column, right, right_column) = *self.rng.pick(&candidates);
            let alias = self.alias("t");
            let source = Source::of_table(table(right).expect("a TPC-H table"), alias.clone());
            let kind = *self.rng.pick(&[
                "JOIN",
                "JOIN",
                "JOIN",
                "LEFT JOIN",
                "LEFT JOIN",
                "RIGHT JOIN",
                "FULL JOIN",
            ]);
            let mut on = format!(
                "{}.{left_column} = {alias}.{right_column}",
                sources[left].alias
            );
            if self.rng.chance(20) {
                let both: Vec<Column> = sources[left]
                    .columns
                    .iter()
                    .chain(&source.columns)
                    .cloned()
                    .collect();
                let extra = ExprGen::new(&mut self.rng, &both).predicate(1);
                on.push_str(&format!(" AND {extra}"));
            }
            sql.push_str(&format!(" {kind} {right} AS {alias} ON {on}"));
            sources.push(source);
        }
        From { sql, sources }
    }

    /// Output types for `n` columns.
    fn output_types(&mut self, n: usize) -> Vec<SqlType> {
        (0..n).map(|_| *self.rng.pick(&OUTPUT_TYPES)).collect()
    }

    /// `SELECT [DISTINCT] e AS c0, ... FROM ... [WHERE ...]`, of the given
    /// types or random ones.
    fn select(&mut self, types: Option<Vec<SqlType>>) -> (String, Vec<SqlType>) {
        let from = self.from(3);
        let columns = from.columns();
        let types = types.unwrap_or_else(|| {
            let n = self.rng.between(1, 4) as usize;
            self.output_types(n)
        });
        let mut exprs = ExprGen::new(&mut self.rng, &columns);
        let items: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("{} AS c{i}", exprs.expr(*ty, 2)))
            .collect();
        let filter = exprs.predicate(2);
        let distinct = if self.rng.chance(15) { "DISTINCT " } else { "" };
        let mut sql = format!("SELECT {distinct}{} FROM {}", items.join(", "), from.sql);
        if self.rng.chance(75) {
            sql.push_str(&format!(" WHERE {filter}"));
        }
        (sql, types)
    }

    /// An aggregate function call over `columns` and its result type.
    fn aggregate_call(&mut self, columns: &[Column]) -> (String, SqlType) {
        let choice = self.rng.below(10);
        let ordered_type =
            *self
                .rng
                .pick(&[SqlType::Int, SqlType::Decimal, SqlType::Text, SqlType::Date]);
        let extreme = *self.rng.pick(&["min", "max"]);
        let mut exprs = ExprGen::new(&mut self.rng, columns);
        match choice {
            0 => ("count(*)".into(), SqlType::Int),
            1 => (
                format!("count({})", exprs.expr(SqlType::Text, 1)),
                SqlType::Int,
            ),
            2 => (
                format!("count(DISTINCT {})", exprs.expr(SqlType::Int, 1)),
                SqlType::Int,
            ),
            3 => (
                format!("sum({})", exprs.expr(SqlType::Int, 1)),
                SqlType::Int,
            ),
            4 => (
                format!("sum({})", exprs.expr(SqlType::Decimal, 1)),
                SqlType::Decimal,
            ),
            5 => (
                // Ember averages a DECIMAL(p, s) in DECIMAL(p + 4, s + 4),
                // as Spark does, DuckDB in DOUBLE: at scale 2 the two agree
                // within the comparison's tolerance.
                format!(
                    "avg(CAST({} AS DECIMAL(15, 2)))",
                    exprs.expr(SqlType::Decimal, 1)
                ),
                SqlType::Float,
            ),
            6 => (
                format!("avg({})", exprs.expr(SqlType::Int, 1)),
                SqlType::Float,
            ),
            7 => (
                format!("{extreme}({})", exprs.expr(ordered_type, 1)),
                ordered_type,
            ),
            8 => (
                format!("sum(CASE WHEN {} THEN 1 ELSE 0 END)", exprs.predicate(1)),
                SqlType::Int,
            ),
            _ => (
                format!(
                    "stddev_samp(CAST({} AS DOUBLE))",
                    exprs.expr(SqlType::Decimal, 1)
                ),
                SqlType::Float,
            ),
        }
    }

    /// Group keys and aggregates over a FROM clause, with WHERE and HAVING.
    fn aggregate(&mut self) -> (String, Vec<SqlType>) {
        let from = self.from(3);
        let columns = from.columns();
        self.aggregate_over(&from.sql, &columns)
    }

    fn aggregate_over(&mut self, from: &str, columns: &[Column]) -> (String, Vec<SqlType>) {
        let key_count = self.rng.below(3);
        let mut items = Vec::new();
        let mut keys = Vec::new();
        let mut types = Vec::new();
        for _ in 0..key_count {
            let ty =
                *self
                    .rng
                    .pick(&[SqlType::Int, SqlType::Text, SqlType::Date, SqlType::Decimal]);
            let mut key = ExprGen::new(&mut self.rng, columns).expr(ty, 1);
            if !key.contains('.') {
                // A constant: `GROUP BY 3` (or `(- 3)`, to DuckDB) names
                // the third output column; a CAST is an expression.
                key = format!("CAST({key} AS {})", sql_type_name(ty));
            }
            items.push(format!("{key} AS c{}", items.len()));
            keys.push(key);
            types.push(ty);
        }
        for _ in 0..self.rng.between(1, 3) {
            let (call, ty) = self.aggregate_call(columns);
            items.push(format!("{call} AS c{}", items.len()));
            types.push(ty);
        }
        let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
        if self.rng.chance(60) {
            let filter = ExprGen::new(&mut self.rng, columns).predicate(2);
            sql.push_str(&format!(" WHERE {filter}"));
        }
        if !keys.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
            if self.rng.chance(30) {
                let (call, _) = self.aggregate_call(columns);
                let op = *self.rng.pick(&[">", ">=", "<", "<>"]);
                let threshold = self.rng.between(0, 5);
                sql.push_str(&format!(
                    " HAVING count(*) {op} {threshold} OR {call} IS NULL"
                ));
            }
        }
        (sql, types)
    }

    /// Window functions over one table, partitioned and ordered by its
    /// columns; frames that depend on row order order by the table's key.
    fn window(&mut self) -> (String, Vec<SqlType>) {
        let def = self.rng.pick(&TABLES);
        let alias = self.alias("t");
        let source = Source::of_table(def, alias.clone());
        let columns = source.columns.clone();
        let key: Vec<String> = def.key.iter().map(|k| format!("{alias}.{k} ASC")).collect();
        let key = key.join(", ");
        let mut items = Vec::new();
        let mut types = Vec::new();
        for _ in 0..self.rng.between(0, 2) {
            let ty =
                *self
                    .rng
                    .pick(&[SqlType::Int, SqlType::Text, SqlType::Decimal, SqlType::Date]);
            let e = ExprGen::new(&mut self.rng, &columns).expr(ty, 1);
            items.push(format!("{e} AS c{}", items.len()));
            types.push(ty);
        }
        for _ in 0..self.rng.between(1, 3) {
            let choice = self.rng.below(9);
            let mut exprs = ExprGen::new(&mut self.rng, &columns);
            let partition_type = if choice.is_multiple_of(2) {
                SqlType::Int
            } else {
                SqlType::Text
            };
            let partition = exprs.expr(partition_type, 1);
            let (call, ty) = match choice {
                0 | 1 => {
                    let ty = if choice == 0 {
                        SqlType::Decimal
                    } else {
                        SqlType::Date
                    };
                    let order = exprs.expr(ty, 1);
                    let function = if choice == 0 { "rank" } else { "dense_rank" };
                    (
                        format!(
                            "{function}() OVER (PARTITION BY {partition} ORDER BY {order} DESC NULLS LAST)"
                        ),
                        SqlType::Int,
                    )
                }
                2 => (
                    format!("row_number() OVER (PARTITION BY {partition} ORDER BY {key})"),
                    SqlType::Int,
                ),
                3 => (
                    format!(
                        "sum({}) OVER (PARTITION BY {partition})",
                        exprs.expr(SqlType::Decimal, 1)
                    ),
                    SqlType::Decimal,
                ),
                4 => (
                    format!("count(*) OVER (PARTITION BY {partition})"),
                    SqlType::Int,
                ),
                5 => (
                    format!(
                        "sum({}) OVER (PARTITION BY {partition} ORDER BY {key} ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
                        exprs.expr(SqlType::Int, 1)
                    ),
                    SqlType::Int,
                ),
                6 => (
                    format!(
                        "lag({}, 1) OVER (PARTITION BY {partition} ORDER BY {key})",
                        exprs.expr(SqlType::Text, 1)
                    ),
                    SqlType::Text,
                ),
                7 => (
                    format!(
                        "sum({}) OVER (PARTITION BY {partition} ORDER BY {} ASC NULLS FIRST)",
                        exprs.expr(SqlType::Decimal, 1),
                        exprs.expr(SqlType::Int, 1)
                    ),
                    SqlType::Decimal,
                ),
                _ => (
                    format!(
                        "first_value({}) OVER (PARTITION BY {partition} ORDER BY {key})",
                        exprs.expr(SqlType::Date, 1)
                    ),
                    SqlType::Date,
                ),
            };
            items.push(format!("{call} AS c{}", items.len()));
            types.push(ty);
        }
        let mut sql = format!("SELECT {} FROM {} AS {alias}", items.join(", "), def.name);
        if self.rng.chance(50) {
            let filter = ExprGen::new(&mut self.rng, &columns).predicate(1);
            sql.push_str(&format!(" WHERE {filter}"));
        }
        (sql, types)
    }

    /// A selection whose WHERE holds an IN, EXISTS or scalar subquery over
    /// a table that joins one in scope.
    fn subquery(&mut self) -> (String, Vec<SqlType>) {
        let from = self.from(2);
        let columns = from.columns();
        let n = self.rng.between(1, 3) as usize;
        let types = self.output_types(n);
        let mut exprs = ExprGen::new(&mut self.rng, &columns);
        let mut items: Vec<String> = types.iter().map(|ty| exprs.expr(*ty, 1)).collect();
        // A join edge from a table in scope to the subquery's table.
        let edges: Vec<(String, &str, &str)> = JOINS
            .iter()
            .flat_map(|&(a, ac, b, bc)| [(a, ac, b, bc), (b, bc, a, ac)])
            .filter_map(|(a, ac, b, bc)| {
                let outer = from
                    .sources
                    .iter()
                    .find(|s| s.table.is_some_and(|t| t.name == a))?;
                Some((format!("{}.{ac}", outer.alias), b, bc))
            })
            .collect();
        let (outer_column, inner_table, inner_column) = self.rng.pick(&edges).clone();
        let inner_alias = self.alias("s");
        let inner_def = table(inner_table).expect("a TPC-H table");
        let inner = Source::of_table(inner_def, inner_alias.clone());
        let inner_filter = ExprGen::new(&mut self.rng, &inner.columns).predicate(1);
        let correlation = format!("{inner_alias}.{inner_column} = {outer_column}");
        let not = if self.rng.chance(30) { "NOT " } else { "" };
        let condition = match self.rng.below(4) {
            0 => format!(
                "{outer_column} {not}IN (SELECT {inner_alias}.{inner_column} FROM {inner_table} AS {inner_alias} WHERE {inner_filter})"
            ),
            1 => format!(
                "{not}EXISTS (SELECT 1 FROM {inner_table} AS {inner_alias} WHERE {correlation} AND {inner_filter})"
            ),
            2 => format!(
                "(SELECT count(*) FROM {inner_table} AS {inner_alias} WHERE {correlation} AND {inner_filter}) > {}",
                self.rng.between(0, 3)
            ),
            _ => {
                // A correlated scalar subquery in the select list.
                let value = ExprGen::new(&mut self.rng, &inner.columns).expr(SqlType::Int, 1);
                items.push(format!(
                    "(SELECT max({value}) FROM {inner_table} AS {inner_alias} WHERE {correlation})"
                ));
                "TRUE".to_string()
            }
        };
        let mut types = types;
        types.truncate(items.len());
        while types.len() < items.len() {
            types.push(SqlType::Int);
        }
        let items: Vec<String> = items
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS c{i}"))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {condition}",
            items.join(", "),
            from.sql
        );
        (sql, types)
    }

    /// A selection or aggregate over an aggregated derived table.
    fn derived(&mut self) -> (String, Vec<SqlType>) {
        let (inner, inner_types) = self.aggregate();
        let alias = self.alias("d");
        let columns: Vec<Column> = inner_types
            .iter()
            .enumerate()
            .map(|(i, ty)| Column {
                sql: format!("{alias}.c{i}"),
                ty: *ty,
            })
            .collect();
        let from = format!("({inner}) AS {alias}");
        if self.rng.chance(40) {
            return self.aggregate_over(&from, &columns);
        }
        let n = self.rng.between(1, 3) as usize;
        let types = self.output_types(n);
        let mut exprs = ExprGen::new(&mut self.rng, &columns);
        let items: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("{} AS c{i}", exprs.expr(*ty, 2)))
            .collect();
        let filter = exprs.predicate(1);
        (
            format!("SELECT {} FROM {from} WHERE {filter}", items.join(", ")),
            types,
        )
    }

    /// Two selections of the same types, combined.
    fn set_operation(&mut self) -> (String, Vec<SqlType>) {
        let n = self.rng.between(1, 3) as usize;
        let types: Vec<SqlType> = (0..n)
            .map(|_| {
                *self
                    .rng
                    .pick(&[SqlType::Int, SqlType::Text, SqlType::Date, SqlType::Decimal])
            })
            .collect();
        let (left, _) = self.select(Some(types.clone()));
        let (right, _) = self.select(Some(types.clone()));
        let op = *self
            .rng
            .pick(&["UNION ALL", "UNION", "INTERSECT", "EXCEPT"]);
        (format!("{left} {op} {right}"), types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_the_same_queries() {
        let a: Vec<String> = {
            let mut g = QueryGenerator::new(42);
            (0..50).map(|_| g.next_query().sql).collect()
        };
        let b: Vec<String> = {
            let mut g = QueryGenerator::new(42);
            (0..50).map(|_| g.next_query().sql).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn every_shape_is_generated() {
        let mut g = QueryGenerator::new(1);
        let mut shapes: Vec<Shape> = (0..300).map(|_| g.next_query().shape).collect();
        shapes.sort();
        shapes.dedup();
        assert_eq!(shapes.len(), 6, "{shapes:?}");
    }
}

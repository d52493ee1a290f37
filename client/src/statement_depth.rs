//! Refusing statements whose expressions nest too deeply to plan.
//!
//! sqlparser builds a chain of left-associative operators (`1 + 1 + … + 1`,
//! `a = 1 OR a = 2 OR …`) in a loop, so a long chain parses into an
//! expression as deep as it is long (other nesting, such as parentheses
//! and subqueries, is bounded by `datafusion.sql_parser.recursion_limit`).
//! DataFusion's planner and optimizer clone, compare and drop expressions
//! recursively, and a 20,000-term sum overflowed the stack and aborted the
//! process. [`check_expression_depth`] measures how deep a parsed
//! statement's expressions nest, looking no deeper than the limit
//! (`ember.max_expression_depth`), and refuses a statement that goes beyond
//! it with one line that names the limit; the refused statement is taken
//! apart without recursion, so refusing it cannot overflow the stack
//! either.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{Expr, Value, Visit, VisitMut, Visitor, VisitorMut};

use crate::error::{ClientError, Result};

/// Returns `statement` when no expression in it nests deeper than `limit`
/// levels; else refuses it.
pub fn check_expression_depth(statement: Statement, limit: u64) -> Result<Statement> {
    let mut depth = DepthBeyond { limit, depth: 0 };
    if visit_statement(&statement, &mut depth).is_continue() {
        return Ok(statement);
    }
    dismantle(statement);
    Err(ClientError::TooDeep { limit })
}

/// Visits the SQL parts of a DataFusion statement.
fn visit_statement<V: Visitor>(statement: &Statement, visitor: &mut V) -> ControlFlow<V::Break> {
    match statement {
        Statement::Statement(statement) => statement.as_ref().visit(visitor),
        Statement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(query) => query.as_ref().visit(visitor),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        Statement::Explain(explain) => visit_statement(&explain.statement, visitor),
        Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
    }
}

/// Counts expression nesting and stops once it goes beyond `limit`, so the
/// visit itself recurses at most `limit` expressions deep.
struct DepthBeyond {
    limit: u64,
    depth: u64,
}

impl Visitor for DepthBeyond {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Drops a refused statement without recursing down its deep expressions:
/// each outermost expression is swapped for `NULL` before the visit goes
/// into it, and the expressions taken out are taken apart with a work list.
fn dismantle(statement: Statement) {
    let mut outermost = TakeOutermost::default();
    match statement {
        Statement::Statement(mut statement) => {
            let _ = statement.as_mut().visit(&mut outermost);
        }
        Statement::CopyTo(mut copy) => {
            if let CopyToSource::Query(query) = &mut copy.source {
                let _ = query.as_mut().visit(&mut outermost);
            }
        }
        Statement::Explain(explain) => return dismantle(*explain.statement),
        Statement::CreateExternalTable(_) | Statement::Reset(_) => {}
    }
    let mut pending = outermost.taken;
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::BinaryOp { left, right, .. } => {
                pending.push(*left);
                pending.push(*right);
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => pending.push(*expr),
            Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::IsNotTrue(expr)
            | Expr::IsNotFalse(expr) => pending.push(*expr),
            other => drop(other),
        }
    }
}

/// Takes every outermost expression out of what it visits.
#[derive(Default)]
struct TakeOutermost {
    taken: Vec<Expr>,
}

impl VisitorMut for TakeOutermost {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let shallow = Expr::Value(Value::Null.into());
        self.taken.push(std::mem::replace(expr, shallow));
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn parse(sql: &str) -> Statement {
        let mut statements = DFParser::parse_sql(sql).expect("parses");
        statements.pop_front().expect("one statement")
    }

    fn sum_of_ones(terms: usize) -> String {
        format!("SELECT {}", vec!["1"; terms].join(" + "))
    }

    #[test]
    fn a_statement_within_the_limit_is_kept() {
        let statement = parse(&sum_of_ones(10));
        let kept = check_expression_depth(statement, 10).expect("within the limit");
        assert!(kept.to_string().starts_with("SELECT 1 + 1"));
    }

    #[test]
    fn a_chain_deeper_than_the_limit_is_refused_naming_the_limit() {
        let error = check_expression_depth(parse(&sum_of_ones(12)), 10).unwrap_err();
        assert!(
            matches!(error, ClientError::TooDeep { limit: 10 }),
            "{error}"
        );
        assert!(
            error.to_string().contains("ember.max_expression_depth"),
            "{error}"
        );
    }

    #[test]
    fn a_very_deep_chain_is_refused_without_overflowing_a_small_stack() {
        // Parsed and refused on a thread with 512 KiB of stack: neither the
        // check nor dropping the statement recurses down the chain.
        let sql = sum_of_ones(200_000);
        let statement = parse(&sql);
        let refused = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || check_expression_depth(statement, 1000).is_err())
            .expect("thread starts")
            .join()
            .expect("no stack overflow");
        assert!(refused);
    }

    #[test]
    fn copy_and_explain_are_checked_too() {
        let deep = sum_of_ones(50);
        for sql in [
            format!("EXPLAIN {deep}"),
            format!("COPY ({deep}) TO '/tmp/out.csv' STORED AS CSV"),
            format!(
                "SELECT * FROM (SELECT 1 AS a) t WHERE a = {}",
                sum_of_ones(50).replace("SELECT ", "")
            ),
        ] {
            let error = check_expression_depth(parse(&sql), 20).unwrap_err();
            assert!(
                matches!(error, ClientError::TooDeep { .. }),
                "{sql}: {error}"
            );
        }
    }
}

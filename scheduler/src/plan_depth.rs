//! Refusing submitted plans that nest too deeply, before they are decoded
//! into DataFusion's plans.
//!
//! Ember's client refuses a statement nested deeper than
//! `ember.max_expression_depth`, but the scheduler's gRPC service takes
//! plans from anyone who can reach it. Protobuf messages themselves nest at
//! most 100 deep (prost refuses deeper ones), but DataFusion encodes a chain
//! of one operator (`1 + 1 + … + 1`) as a flat list of operands, so a
//! message of a megabyte decodes into an expression 200,000 levels deep:
//! building it took minutes, and planning it overflowed the scheduler's
//! stack and aborted the process.
//!
//! [`PlanDepthGuard`] decodes the message with prost only and reads it
//! through its derived `Debug` text, streamed through [`ChainScanner`]
//! without being stored: each `operands: [...]` list of `n` entries adds
//! `n - 1` levels to the expressions it is part of, and every bracket one.
//! A plan deeper than the limit is refused with `InvalidArgument` naming
//! it. Physical and Substrait plans are refused outright: Ember's clients
//! send logical plans, and the scheduler applies Ember's rules when it
//! plans them.

use std::fmt::Write;

use ballista_core::serde::protobuf::ExecuteQueryParams;
use ballista_core::serde::protobuf::execute_query_params::Query;
use datafusion_proto::protobuf::LogicalPlanNode;
use prost::Message;
use tonic::Status;

/// Checks submitted plans against a depth limit; see the module
/// documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanDepthGuard {
    limit: usize,
}

impl PlanDepthGuard {
    /// A guard refusing plans whose expressions nest deeper than `limit`.
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }

    /// Refuses `params` when its plan is not a logical plan, or nests too
    /// deeply. A plan prost cannot decode passes: Ballista decodes it again
    /// and says why it cannot.
    pub(crate) fn check(&self, params: &ExecuteQueryParams) -> Result<(), Status> {
        let bytes = match &params.query {
            Some(Query::LogicalPlan(bytes)) => bytes,
            Some(Query::PhysicalPlan(_) | Query::SubstraitPlan(_)) => {
                return Err(Status::invalid_argument(
                    "this scheduler plans queries itself: submit a logical plan (Ember's clients do)",
                ));
            }
            None => return Ok(()),
        };
        let Ok(plan) = LogicalPlanNode::decode(bytes.as_slice()) else {
            return Ok(());
        };
        let depth = nesting_depth(&plan);
        if depth > self.limit {
            return Err(Status::invalid_argument(format!(
                "the plan nests expressions about {depth} deep, more than the scheduler's \
                 --max-plan-depth of {}; it was refused",
                self.limit
            )));
        }
        Ok(())
    }
}

/// How deep `message`'s contents nest once decoded into a plan: brackets,
/// plus the levels each list of chained operands adds.
fn nesting_depth(message: &impl std::fmt::Debug) -> usize {
    let mut scanner = ChainScanner::default();
    // The scanner never fails; formatting stops only if it does.
    let _ = write!(scanner, "{message:?}");
    scanner.finish()
}

/// One open bracket of the `Debug` text.
#[derive(Debug, Default)]
struct Frame {
    /// Whether it opened an `operands` list.
    operands: bool,
    /// Entries seen so far (commas at this level, plus one once non-empty).
    commas: usize,
    non_empty: bool,
    /// The deepest chain levels found inside it.
    inner: usize,
}

/// Measures chain depth in a `Debug` text as it is written; see the module
/// documentation.
#[derive(Debug, Default)]
struct ChainScanner {
    frames: Vec<Frame>,
    /// The deepest chain levels outside any bracket.
    top: usize,
    /// The most brackets open at once.
    deepest_nesting: usize,
    /// Inside a quoted string, and just after a backslash in it.
    in_string: bool,
    escaped: bool,
    /// The last characters outside strings, to recognise `operands: [`.
    recent: String,
}

/// What opens a list of chained operands.
const OPERANDS: &str = "operands: ";

impl ChainScanner {
    fn close(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        let entries = frame.commas + usize::from(frame.non_empty);
        let levels = frame.inner
            + if frame.operands {
                entries.saturating_sub(1)
            } else {
                0
            };
        match self.frames.last_mut() {
            Some(parent) => parent.inner = parent.inner.max(levels),
            None => self.top = self.top.max(levels),
        }
    }

    fn finish(mut self) -> usize {
        while !self.frames.is_empty() {
            self.close();
        }
        self.top + self.deepest_nesting
    }
}

impl Write for ChainScanner {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        for c in text.chars() {
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, '\\') => self.escaped = true,
                    (false, '"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            if let Some(frame) = self.frames.last_mut()
                && !c.is_whitespace()
                && !matches!(c, ']' | '}' | ')')
            {
                frame.non_empty |= c != ',';
                frame.commas += usize::from(c == ',');
            }
            match c {
                '"' => self.in_string = true,
                '[' | '{' | '(' => {
                    let operands = c == '[' && self.recent.ends_with(OPERANDS);
                    self.frames.push(Frame {
                        operands,
                        ..Frame::default()
                    });
                    self.deepest_nesting = self.deepest_nesting.max(self.frames.len());
                }
                ']' | '}' | ')' => self.close(),
                _ => {}
            }
            self.recent.push(c);
            if self.recent.len() > 2 * OPERANDS.len() {
                let cut = self.recent.len() - OPERANDS.len();
                self.recent.drain(..cut);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::logical_plan_to_bytes;

    async fn plan_of(sql: &str) -> ExecuteQueryParams {
        let ctx = SessionContext::new();
        let plan = ctx.sql(sql).await.unwrap().logical_plan().clone();
        let bytes = logical_plan_to_bytes(&plan).unwrap().to_vec();
        ExecuteQueryParams {
            query: Some(Query::LogicalPlan(bytes)),
            ..Default::default()
        }
    }

    fn chain(terms: usize) -> String {
        vec!["1"; terms].join(" + ")
    }

    #[tokio::test]
    async fn a_chain_counts_as_deep_as_it_is_long() {
        let plan = plan_of(&format!("SELECT {} AS total", chain(150))).await;
        assert!(PlanDepthGuard::new(100).check(&plan).is_err());
        assert!(PlanDepthGuard::new(1000).check(&plan).is_ok());
        let subquery = plan_of(&format!("SELECT (SELECT {}) AS total", chain(150))).await;
        let status = PlanDepthGuard::new(100).check(&subquery).unwrap_err();
        assert!(
            status.message().contains("--max-plan-depth of 100"),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn wide_plans_and_strings_full_of_brackets_are_not_deep() {
        let columns: Vec<String> = (0..500).map(|i| format!("'[{i}, \"x' AS c{i}")).collect();
        let plan = plan_of(&format!("SELECT {}", columns.join(", "))).await;
        assert!(PlanDepthGuard::new(100).check(&plan).is_ok());
    }

    #[test]
    fn physical_plans_are_refused_and_undecodable_ones_pass() {
        let guard = PlanDepthGuard::new(100);
        let physical = ExecuteQueryParams {
            query: Some(Query::PhysicalPlan(vec![1, 2, 3])),
            ..Default::default()
        };
        let status = guard.check(&physical).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let garbage = ExecuteQueryParams {
            query: Some(Query::LogicalPlan(vec![0xff; 16])),
            ..Default::default()
        };
        assert!(guard.check(&garbage).is_ok());
    }
}

//! Empty relations that survive the trip to the scheduler.
//!
//! A cluster session sends the scheduler its optimized logical plan. Where
//! the optimizer proved a relation empty (`WHERE 1 = 0`, a join on a false
//! condition), the plan holds an `EmptyRelation` with the relation's
//! columns, but DataFusion's protobuf form of `EmptyRelation` carries no
//! columns: the scheduler decoded it with none, and every operator above
//! it failed with "No field named ...". [`with_portable_empty_relations`]
//! writes each such relation as `LIMIT 0` over one row of typed NULLs under
//! the same qualified names, which travels whole; the scheduler's optimizer
//! folds it back into an empty relation.

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TransformedResult};
use datafusion::error::Result;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder};

/// `plan` with every column-bearing empty relation, subqueries' included,
/// written in a form whose protobuf encoding keeps its columns.
pub fn with_portable_empty_relations(plan: &LogicalPlan) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up_with_subqueries(|node| match &node {
            LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema,
            }) if !schema.fields().is_empty() => {
                let columns = schema
                    .iter()
                    .map(|(qualifier, field)| {
                        let null = ScalarValue::try_from(field.data_type())?;
                        Ok(Expr::Literal(null, None)
                            .alias_qualified(qualifier.cloned(), field.name()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let portable = LogicalPlanBuilder::empty(true)
                    .project(columns)?
                    .limit(0, Some(0))?
                    .build()?;
                Ok(Transformed::yes(portable))
            }
            _ => Ok(Transformed::no(node)),
        })
        .data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::tree_node::TreeNode;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::{logical_plan_from_bytes, logical_plan_to_bytes};

    #[tokio::test]
    async fn an_empty_relation_keeps_its_columns_through_protobuf() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT, b VARCHAR) AS VALUES (1, 'x')")
            .await
            .unwrap();
        let frame = ctx
            .sql("SELECT sum(t1.a), max(t1.b) FROM t AS t1 WHERE 1 = 0")
            .await
            .unwrap();
        let optimized = frame.into_optimized_plan().unwrap();
        let has_empty = |plan: &LogicalPlan| {
            plan.exists(|n| Ok(matches!(n, LogicalPlan::EmptyRelation(e) if !e.produce_one_row)))
                .unwrap()
        };
        assert!(has_empty(&optimized), "{optimized}");
        // As the optimizer leaves it, the decoded plan has lost the columns.
        let lost = logical_plan_to_bytes(&optimized)
            .and_then(|bytes| logical_plan_from_bytes(&bytes, &ctx.task_ctx()));
        assert!(lost.is_err(), "{lost:?}");

        let portable = with_portable_empty_relations(&optimized).unwrap();
        assert!(!has_empty(&portable), "{portable}");
        let bytes = logical_plan_to_bytes(&portable).unwrap();
        let decoded = logical_plan_from_bytes(&bytes, &ctx.task_ctx()).unwrap();
        let batches = ctx
            .execute_logical_plan(decoded)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "one row of NULLs, as with no cluster");
        assert_eq!(batches[0].column(0).null_count(), 1);
    }
}

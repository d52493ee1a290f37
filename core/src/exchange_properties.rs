//! What a plan knows about its data, carried across a shuffle.
//!
//! DataFusion's operators learn facts about their input from the plan
//! below them: a filter `d_year = 1999` makes `d_year` constant, a join
//! makes its key columns equal. Sorts are planned with those facts (a sort
//! for `PARTITION BY i_category, d_year` only sorts by `i_category` when
//! `d_year` is constant), and operators such as window aggregates check at
//! run time that their input is ordered as the plan said.
//!
//! On a cluster the scheduler plans the whole query, then cuts it into
//! stages at each hash repartition; the later stage reads the shuffle
//! through Ballista's shuffle reader, which knows only its schema and
//! partitioning. Decoded on an executor, the operators above it derive
//! their facts again and find fewer: the window above the sort no longer
//! sees that its input is ordered by every partition column, and fails
//! (TPC-DS Q47 and Q57).
//!
//! [`CarryExchangeProperties`], a physical optimizer rule of the
//! scheduler's, places an [`ExchangePropertiesExec`] above every hash
//! repartition whose output has such facts. It passes its input's batches
//! through untouched and declares, on top of whatever its input declares,
//! the constant columns and the equal columns that held before the
//! exchange (they hold for the same rows after it). It travels to the
//! executors with the stage's plan, so they see what the scheduler saw.
//! Orderings are not carried: a shuffle does not keep them.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Statistics, internal_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{AcrossPartitions, ConstExpr, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use crate::codec::{ExtensionOperatorCodec, single_input};

/// The wire name of [`ExchangePropertiesExec`].
pub const EXCHANGE_PROPERTIES: &str = "ember.exchange_properties";

/// One column known to be constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstantColumn {
    /// Its index in the schema.
    pub index: usize,
    /// Whether it has the same value in every partition.
    pub uniform: bool,
}

/// The facts about a plan's output that [`ExchangePropertiesExec`] carries:
/// constant columns and classes of equal columns, by index. Expressions
/// other than plain columns are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarriedProperties {
    /// Columns known to be constant.
    pub constants: Vec<ConstantColumn>,
    /// Groups of columns known to be equal, two or more each.
    pub equal_columns: Vec<Vec<usize>>,
}

fn column_index(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    expr.downcast_ref::<Column>().map(Column::index)
}

impl CarriedProperties {
    /// The column facts of `properties`.
    pub fn of(properties: &EquivalenceProperties) -> Self {
        let constants = properties
            .constants()
            .iter()
            .filter_map(|constant| {
                Some(ConstantColumn {
                    index: column_index(&constant.expr)?,
                    uniform: matches!(constant.across_partitions, AcrossPartitions::Uniform(_)),
                })
            })
            .collect();
        let equal_columns = properties
            .eq_group()
            .iter()
            .map(|class| class.iter().filter_map(column_index).collect::<Vec<_>>())
            .filter(|columns| columns.len() >= 2)
            .collect();
        Self {
            constants,
            equal_columns,
        }
    }

    /// Whether there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.constants.is_empty() && self.equal_columns.is_empty()
    }

    /// Adds these facts to `properties`, whose schema they must fit.
    pub fn apply_to(&self, properties: &mut EquivalenceProperties) -> Result<()> {
        let schema = Arc::clone(properties.schema());
        let column = |index: usize| -> Result<Arc<dyn PhysicalExpr>> {
            match schema.fields().get(index) {
                Some(field) => Ok(Arc::new(Column::new(field.name(), index))),
                None => internal_err!(
                    "carried properties name column {index} of a {}-column schema",
                    schema.fields().len()
                ),
            }
        };
        let constants = self
            .constants
            .iter()
            .map(|constant| {
                let across = if constant.uniform {
                    AcrossPartitions::Uniform(None)
                } else {
                    AcrossPartitions::Heterogeneous
                };
                Ok(ConstExpr::new(column(constant.index)?, across))
            })
            .collect::<Result<Vec<_>>>()?;
        properties.add_constants(constants)?;
        for class in &self.equal_columns {
            if let Some((first, rest)) = class.split_first() {
                for other in rest {
                    properties.add_equal_conditions(column(*first)?, column(*other)?)?;
                }
            }
        }
        Ok(())
    }

    /// The wire form: `c=4u,7h;e=0.5,1.2.3` (constants with `u`niform or
    /// `h`eterogeneous values; equal-column classes joined by `.`).
    pub fn encode(&self) -> Vec<u8> {
        let constants: Vec<String> = self
            .constants
            .iter()
            .map(|c| format!("{}{}", c.index, if c.uniform { 'u' } else { 'h' }))
            .collect();
        let classes: Vec<String> = self
            .equal_columns
            .iter()
            .map(|class| {
                class
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect();
        format!("c={};e={}", constants.join(","), classes.join(",")).into_bytes()
    }

    /// Reads [`CarriedProperties::encode`]'s form.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let bad = || {
            DataFusionError::Internal(format!(
                "malformed {EXCHANGE_PROPERTIES} payload: {}",
                String::from_utf8_lossy(payload)
            ))
        };
        let text = std::str::from_utf8(payload).map_err(|_| bad())?;
        let (constants, classes) = text
            .strip_prefix("c=")
            .and_then(|rest| rest.split_once(";e="))
            .ok_or_else(bad)?;
        let index = |s: &str| s.parse::<usize>().map_err(|_| bad());
        let constants = constants
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (digits, kind) = item.split_at(item.len().saturating_sub(1));
                let uniform = match kind {
                    "u" => true,
                    "h" => false,
                    _ => return Err(bad()),
                };
                Ok(ConstantColumn {
                    index: index(digits)?,
                    uniform,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let equal_columns = classes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|class| class.split('.').map(index).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            constants,
            equal_columns,
        })
    }
}

/// Passes its input through and declares [`CarriedProperties`] about it;
/// see the module documentation.
#[derive(Debug)]
pub struct ExchangePropertiesExec {
    input: Arc<dyn ExecutionPlan>,
    carried: CarriedProperties,
    properties: Arc<PlanProperties>,
}

impl ExchangePropertiesExec {
    /// Declares `carried` about `input`'s output.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, carried: CarriedProperties) -> Result<Self> {
        let input_properties = input.properties();
        let mut eq_properties = input_properties.equivalence_properties().clone();
        carried.apply_to(&mut eq_properties)?;
        let properties = Arc::new(PlanProperties::new(
            eq_properties,
            input_properties.output_partitioning().clone(),
            input_properties.emission_type,
            input_properties.boundedness,
        ));
        Ok(Self {
            input,
            carried,
            properties,
        })
    }

    /// The facts it declares.
    pub fn carried(&self) -> &CarriedProperties {
        &self.carried
    }
}

impl DisplayAs for ExchangePropertiesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let constants: Vec<String> = self
            .carried
            .constants
            .iter()
            .map(|c| c.index.to_string())
            .collect();
        write!(
            f,
            "ExchangePropertiesExec: constant columns=[{}], equal columns={:?}",
            constants.join(", "),
            self.carried.equal_columns
        )
    }
}

impl ExecutionPlan for ExchangePropertiesExec {
    fn name(&self) -> &str {
        "ExchangePropertiesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(&children, "ExchangePropertiesExec")?;
        Ok(Arc::new(Self::try_new(input, self.carried.clone())?))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        match input_stats {
            [input] => Ok(Arc::clone(input)),
            _ => internal_err!("ExchangePropertiesExec has one input"),
        }
    }

    // Ballista's planner still asks for statistics this way (to decide
    // which joins to broadcast): answer as the input does.
    #[allow(deprecated)]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.input.partition_statistics(partition)
    }
}

/// Places an [`ExchangePropertiesExec`] above every hash repartition whose
/// output has constant or equal columns; see the module documentation. A
/// rule of the scheduler's session only: embedded, nothing is lost.
#[derive(Debug, Default)]
pub struct CarryExchangeProperties;

impl PhysicalOptimizerRule for CarryExchangeProperties {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(repartition) = node.downcast_ref::<RepartitionExec>() else {
                return Ok(Transformed::no(node));
            };
            if !matches!(repartition.partitioning(), Partitioning::Hash(..)) {
                return Ok(Transformed::no(node));
            }
            let carried = CarriedProperties::of(node.properties().equivalence_properties());
            if carried.is_empty() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(ExchangePropertiesExec::try_new(
                node, carried,
            )?)))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "carry_exchange_properties"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Encodes and decodes [`ExchangePropertiesExec`].
#[derive(Debug)]
pub struct ExchangePropertiesCodec;

impl ExtensionOperatorCodec for ExchangePropertiesCodec {
    fn name(&self) -> &str {
        EXCHANGE_PROPERTIES
    }

    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
        Ok(node
            .downcast_ref::<ExchangePropertiesExec>()
            .map(|exec| exec.carried.encode()))
    }

    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(inputs, "ExchangePropertiesExec")?;
        Ok(Arc::new(ExchangePropertiesExec::try_new(
            input,
            CarriedProperties::decode(payload)?,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;

    use super::*;

    fn input() -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(
            ["a", "b", "c"]
                .iter()
                .map(|name| Field::new(*name, DataType::Int32, true))
                .collect::<Vec<_>>(),
        ));
        Arc::new(EmptyExec::new(schema))
    }

    #[test]
    fn carried_properties_round_trip_and_reject_garbage() {
        let carried = CarriedProperties {
            constants: vec![
                ConstantColumn {
                    index: 2,
                    uniform: true,
                },
                ConstantColumn {
                    index: 0,
                    uniform: false,
                },
            ],
            equal_columns: vec![vec![0, 1]],
        };
        assert_eq!(carried.encode(), b"c=2u,0h;e=0.1".to_vec());
        assert_eq!(
            CarriedProperties::decode(&carried.encode()).unwrap(),
            carried
        );
        let empty = CarriedProperties::default();
        assert_eq!(CarriedProperties::decode(&empty.encode()).unwrap(), empty);
        for garbage in [&b"c=2x;e="[..], b"e=1", b"c=;e=1.z", &[0xff, 0xfe]] {
            assert!(CarriedProperties::decode(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn the_exec_declares_what_it_carries_and_the_codec_restores_it() {
        let carried = CarriedProperties {
            constants: vec![ConstantColumn {
                index: 1,
                uniform: false,
            }],
            equal_columns: vec![vec![0, 2]],
        };
        let exec = Arc::new(ExchangePropertiesExec::try_new(input(), carried.clone()).unwrap());
        let declared = CarriedProperties::of(exec.properties().equivalence_properties());
        assert_eq!(declared.constants, carried.constants);
        assert_eq!(declared.equal_columns, carried.equal_columns);

        let node: Arc<dyn ExecutionPlan> = exec;
        let payload = ExchangePropertiesCodec.try_encode(&node).unwrap().unwrap();
        let ctx = datafusion::prelude::SessionContext::new().task_ctx();
        let decoded = ExchangePropertiesCodec
            .decode(&payload, &[input()], &ctx)
            .unwrap();
        let decoded = decoded.downcast_ref::<ExchangePropertiesExec>().unwrap();
        assert_eq!(decoded.carried(), &carried);
        // A column the schema lacks is an error, not a panic.
        let wrong = CarriedProperties {
            constants: vec![ConstantColumn {
                index: 9,
                uniform: true,
            }],
            equal_columns: vec![],
        };
        assert!(ExchangePropertiesExec::try_new(input(), wrong).is_err());
    }

    #[test]
    fn the_rule_wraps_hash_repartitions_with_something_to_carry() {
        use datafusion::logical_expr::Operator;
        use datafusion::physical_plan::expressions::{binary, col, lit};
        use datafusion::physical_plan::filter::FilterExec;

        let source = input();
        let schema = source.schema();
        let hash_on_b = || Partitioning::Hash(vec![col("b", &schema).unwrap()], 2);
        // `a = 1` makes `a` constant: the repartition gets the declaration.
        let predicate =
            binary(col("a", &schema).unwrap(), Operator::Eq, lit(1i32), &schema).unwrap();
        let filter = Arc::new(FilterExec::try_new(predicate, source.clone()).unwrap());
        let repartition = Arc::new(RepartitionExec::try_new(filter, hash_on_b()).unwrap());
        let plan = CarryExchangeProperties
            .optimize(repartition, &ConfigOptions::default())
            .unwrap();
        let exec = plan
            .downcast_ref::<ExchangePropertiesExec>()
            .expect("the repartition is wrapped");
        assert_eq!(
            exec.carried().constants,
            vec![ConstantColumn {
                index: 0,
                uniform: true
            }]
        );
        assert!(
            exec.children()[0]
                .downcast_ref::<RepartitionExec>()
                .is_some()
        );
        // Nothing known, nothing added.
        let bare = Arc::new(RepartitionExec::try_new(source, hash_on_b()).unwrap());
        let plan = CarryExchangeProperties
            .optimize(bare, &ConfigOptions::default())
            .unwrap();
        assert!(plan.downcast_ref::<RepartitionExec>().is_some());
    }
}

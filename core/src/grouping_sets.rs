//! `ROLLUP`, `CUBE` and `GROUPING SETS` aggregated once at their finest
//! level, then expanded.
//!
//! DataFusion's partial aggregate for grouping sets evaluates every input
//! row once per grouping set: `GROUP BY ROLLUP (a, b, c, d)` hashes each
//! row five times, with the left-out columns as NULL and a
//! `__grouping_id` telling the sets apart (TPC-DS Q22 rolls up 11.7 M
//! `inventory` rows by four item columns, Q67 by eight columns). Every
//! grouping set is a coarsening of the set of all the grouping columns, so
//! the rows can first be aggregated by all of them, once, and each of those
//! groups then counted into every set: the aggregate functions' partial
//! states merge like their inputs do.
//!
//! [`AggregateBeforeGroupingSets`] runs once the exchanges are placed and
//! replaces each partial aggregate over grouping sets by three steps:
//!
//! 1. a partial aggregate by all the grouping columns (one set, one hash
//!    per row; DataFusion's own probe stops it grouping where nearly every
//!    row is a group of its own);
//! 2. an [`ExpandGroupingSetsExec`], which repeats each of its rows once per
//!    grouping set, with the set's left-out columns NULL and its
//!    `__grouping_id`: rows of partial states, shaped like the replaced
//!    aggregate's output;
//! 3. a partial aggregate in DataFusion's `PartialReduce` mode over those
//!    columns and `__grouping_id`, which merges the states of each set's
//!    groups, so that the exchange above moves as few rows as before.
//!
//! The final aggregate above the exchange is left as it was. A partition
//! that reads no row still sends the rows of the sets that leave every
//! column out (`()`), each with the states of an aggregate that saw
//! nothing, as DataFusion's partial aggregate does, so that a grand total
//! of no rows still answers one row. Aggregates that need ordered input
//! or an ordered aggregate function, and those with a limit, are left
//! alone. The setting `ember.aggregate_before_grouping_sets` turns the rule
//! off; [`ExpandGroupingSetsCodec`] carries the operator to executors.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ScalarValue, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::udaf::AggregateFunctionExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    Partitioning, PlanProperties, SendableRecordBatchStream, StatisticsArgs,
};
use futures::{StreamExt, stream};
use prost::Message;

use crate::codec::{ExtensionOperatorCodec, single_input};
use crate::config::EmberConfig;
use crate::memory_table::{decode_ipc_stream, encode_ipc_stream};

/// The wire name of [`ExpandGroupingSetsExec`].
pub const EXPAND_GROUPING_SETS: &str = "ember.expand_grouping_sets";

/// The name DataFusion gives the column that tells grouping sets apart.
const GROUPING_ID: &str = "__grouping_id";

/// Aggregates grouping sets by all their columns first, then expands each
/// group into every set (see the [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct AggregateBeforeGroupingSets;

impl PhysicalOptimizerRule for AggregateBeforeGroupingSets {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).aggregate_before_grouping_sets {
            return Ok(plan);
        }
        plan.transform_up(|node| match aggregate_first(&node)? {
            Some(replaced) => Ok(Transformed::yes(replaced)),
            None => Ok(Transformed::no(node)),
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "ember_aggregate_before_grouping_sets"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node`'s replacement where it is a partial aggregate over two or more
/// grouping sets that the rule may split: the `PartialReduce` aggregate
/// over the expansion of the aggregate by all grouping columns.
fn aggregate_first(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(partial) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let group_by = partial.group_expr();
    let splittable = *partial.mode() == AggregateMode::Partial
        && group_by.has_grouping_set()
        && !group_by.is_empty()
        && group_by.groups().len() > 1
        && partial.limit_options().is_none()
        && *partial.input_order_mode() == InputOrderMode::Linear
        && partial
            .aggr_expr()
            .iter()
            .all(|aggregate| aggregate.order_bys().is_empty());
    if !splittable {
        return Ok(None);
    }
    let finest = Arc::new(AggregateExec::try_new(
        AggregateMode::Partial,
        PhysicalGroupBy::new_single(group_by.expr().to_vec()),
        partial.aggr_expr().to_vec(),
        partial.filter_expr().to_vec(),
        Arc::clone(partial.input()),
        partial.input_schema(),
    )?);
    let expanded = Arc::new(ExpandGroupingSetsExec::try_new(
        finest,
        group_by.groups().to_vec(),
        empty_states(partial.aggr_expr())?,
    )?);
    let reduced = AggregateExec::try_new(
        AggregateMode::PartialReduce,
        group_by.as_final(),
        partial.aggr_expr().to_vec(),
        partial.filter_expr().to_vec(),
        expanded,
        partial.input_schema(),
    )?;
    // The operators above read the replaced aggregate's columns by
    // position and name: anything else, and the plan stays as it was.
    if reduced.schema() != node.schema() {
        tracing::debug!(
            "grouping sets kept in one aggregate: the split's schema differs\n{:?}\n{:?}",
            reduced.schema(),
            node.schema()
        );
        return Ok(None);
    }
    Ok(Some(Arc::new(reduced)))
}

/// The partial states, one value per state column, of `aggregates` before
/// they have seen a row.
fn empty_states(aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Vec<ScalarValue>> {
    let mut states = Vec::new();
    for aggregate in aggregates {
        states.extend(aggregate.create_accumulator()?.state()?);
    }
    Ok(states)
}

/// The `__grouping_id` of a grouping set as DataFusion numbers it: one bit
/// per grouping column, the first column's the highest, set where the
/// grouping set leaves the column out; above them the set's ordinal among
/// equal sets (`GROUPING SETS ((a), (a))`).
fn grouping_id(absent: &[bool], ordinal: usize) -> u64 {
    let bits = absent
        .iter()
        .fold(0u64, |id, &absent| (id << 1) | u64::from(absent));
    bits | ((ordinal as u64) << absent.len())
}

/// The narrowest unsigned integer type DataFusion gives `__grouping_id`
/// for `columns` grouping columns and sets repeated up to `max_ordinal`
/// times beyond the first.
fn grouping_id_type(columns: usize, max_ordinal: usize) -> Result<DataType> {
    let ordinal_bits = (usize::BITS - max_ordinal.leading_zeros()) as usize;
    match columns + ordinal_bits {
        0..=8 => Ok(DataType::UInt8),
        9..=16 => Ok(DataType::UInt16),
        17..=32 => Ok(DataType::UInt32),
        33..=64 => Ok(DataType::UInt64),
        bits => Err(DataFusionError::NotImplemented(format!(
            "grouping sets need {bits} bits to tell them apart, more than 64"
        ))),
    }
}

/// The schema of an expansion of `input_schema` into `sets` of `columns`
/// grouping columns: the grouping columns (nullable where a set leaves them
/// out), `__grouping_id`, then the input's state columns.
fn output_schema(input_schema: &Schema, sets: &[GroupingSet], columns: usize) -> Result<SchemaRef> {
    let max_ordinal = sets
        .iter()
        .map(|set| (set.id >> columns) as usize)
        .max()
        .unwrap_or(0);
    let mut fields: Vec<Field> = Vec::with_capacity(input_schema.fields().len() + 1);
    for (index, field) in input_schema.fields().iter().take(columns).enumerate() {
        let sometimes_absent = sets.iter().any(|set| set.absent[index]);
        fields.push(
            field
                .as_ref()
                .clone()
                .with_nullable(field.is_nullable() || sometimes_absent),
        );
    }
    fields.push(Field::new(
        GROUPING_ID,
        grouping_id_type(columns, max_ordinal)?,
        false,
    ));
    fields.extend(
        input_schema
            .fields()
            .iter()
            .skip(columns)
            .map(|field| field.as_ref().clone()),
    );
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        input_schema.metadata().clone(),
    )))
}

/// One grouping set of an [`ExpandGroupingSetsExec`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupingSet {
    /// For each grouping column, whether the set leaves it out.
    absent: Vec<bool>,
    /// Its `__grouping_id` (see [`grouping_id`]).
    id: u64,
}

/// Repeats each row of a partial aggregate by all grouping columns once
/// per grouping set, with the set's left-out columns NULL and its
/// `__grouping_id` after the grouping columns, followed by the row's
/// partial states; see the [module documentation](self).
#[derive(Debug)]
pub struct ExpandGroupingSetsExec {
    input: Arc<dyn ExecutionPlan>,
    expansion: Arc<Expansion>,
    properties: Arc<PlanProperties>,
}

/// What an [`ExpandGroupingSetsExec`]'s streams need: the sets and the
/// output's shape.
#[derive(Debug)]
struct Expansion {
    sets: Vec<GroupingSet>,
    /// The states of aggregates that saw no row, one row, as the input's
    /// state columns.
    empty_states: RecordBatch,
    schema: SchemaRef,
}

impl ExpandGroupingSetsExec {
    /// Expands `input`, whose first columns are the grouping columns (one
    /// for each flag of a grouping set) and whose other columns are partial
    /// states, into the grouping sets `absent` (for each set, which grouping
    /// columns it leaves out); `empty_states` holds a value for each state
    /// column.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        absent: Vec<Vec<bool>>,
        empty_states: Vec<ScalarValue>,
    ) -> Result<Self> {
        let expansion = Arc::new(Expansion::try_new(&input.schema(), absent, empty_states)?);
        let input_properties = input.properties();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&expansion.schema)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input_properties.emission_type,
            input_properties.boundedness,
        ));
        Ok(Self {
            input,
            expansion,
            properties,
        })
    }
}

/// The values of the first row of `batch`, one per column: the aggregates'
/// empty states as [`ExpandGroupingSetsExec::try_new`] takes them.
fn first_row(batch: &RecordBatch) -> Result<Vec<ScalarValue>> {
    batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0))
        .collect()
}

impl Expansion {
    fn try_new(
        input_schema: &Schema,
        absent: Vec<Vec<bool>>,
        empty_states: Vec<ScalarValue>,
    ) -> Result<Self> {
        let columns = absent.first().map_or(0, Vec::len);
        if absent.iter().any(|set| set.len() != columns)
            || columns + empty_states.len() != input_schema.fields().len()
        {
            return Err(DataFusionError::Internal(format!(
                "ExpandGroupingSetsExec: {} grouping sets of {columns} columns and {} states \
                 do not fit an input of {} columns",
                absent.len(),
                empty_states.len(),
                input_schema.fields().len()
            )));
        }
        let mut sets: Vec<GroupingSet> = Vec::with_capacity(absent.len());
        for set in absent {
            let ordinal = sets.iter().filter(|seen| seen.absent == set).count();
            let id = grouping_id(&set, ordinal);
            sets.push(GroupingSet { absent: set, id });
        }
        let schema = output_schema(input_schema, &sets, columns)?;
        let state_schema = Arc::new(Schema::new(
            input_schema
                .fields()
                .iter()
                .skip(columns)
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let state_columns = empty_states
            .iter()
            .zip(state_schema.fields())
            .map(|(state, field)| {
                let array = state.to_array_of_size(1)?;
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(cast(&array, field.data_type())?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        // One row, also where no aggregate function keeps a state (a
        // grouping without aggregates).
        let empty_states = RecordBatch::try_new_with_options(
            state_schema,
            state_columns,
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        Ok(Self {
            sets,
            empty_states,
            schema,
        })
    }

    /// The number of grouping columns.
    fn columns(&self) -> usize {
        self.sets.first().map_or(0, |set| set.absent.len())
    }

    /// `set`'s rows for a batch of `rows` rows whose grouping columns are
    /// `keys` and whose state columns are `states`.
    fn rows_of_set(
        &self,
        set: &GroupingSet,
        keys: &[ArrayRef],
        states: &[ArrayRef],
        rows: usize,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (index, key) in keys.iter().enumerate() {
            columns.push(if set.absent[index] {
                new_null_array(self.schema.field(index).data_type(), rows)
            } else {
                Arc::clone(key)
            });
        }
        let id_type = self.schema.field(keys.len()).data_type();
        columns.push(
            ScalarValue::UInt64(Some(set.id))
                .cast_to(id_type)?
                .to_array_of_size(rows)?,
        );
        columns.extend(states.iter().cloned());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// `batch`'s rows once per grouping set.
    fn expand(&self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let (keys, states) = batch.columns().split_at(self.columns());
        self.sets
            .iter()
            .map(|set| self.rows_of_set(set, keys, states, batch.num_rows()))
            .collect()
    }

    /// The rows a partition that read no row sends: one for each set that
    /// leaves every column out, with the states of aggregates that saw
    /// nothing.
    fn rows_of_no_input(&self) -> Result<Vec<RecordBatch>> {
        let keys: Vec<ArrayRef> = (0..self.columns())
            .map(|index| new_null_array(self.schema.field(index).data_type(), 1))
            .collect();
        self.sets
            .iter()
            .filter(|set| set.absent.iter().all(|&absent| absent))
            .map(|set| self.rows_of_set(set, &keys, self.empty_states.columns(), 1))
            .collect()
    }
}

impl DisplayAs for ExpandGroupingSetsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expansion = &self.expansion;
        let names: Vec<&str> = expansion
            .schema
            .fields()
            .iter()
            .take(expansion.columns())
            .map(|field| field.name().as_str())
            .collect();
        let sets: Vec<String> = expansion
            .sets
            .iter()
            .map(|set| {
                let kept: Vec<&str> = names
                    .iter()
                    .zip(&set.absent)
                    .filter(|(_, absent)| !**absent)
                    .map(|(name, _)| *name)
                    .collect();
                format!("({})", kept.join(", "))
            })
            .collect();
        write!(f, "ExpandGroupingSetsExec: sets=[{}]", sets.join(", "))
    }
}

impl ExecutionPlan for ExpandGroupingSetsExec {
    fn name(&self) -> &str {
        "ExpandGroupingSetsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(&children, "ExpandGroupingSetsExec")?;
        let absent = self
            .expansion
            .sets
            .iter()
            .map(|set| set.absent.clone())
            .collect();
        Ok(Arc::new(Self::try_new(
            input,
            absent,
            first_row(&self.expansion.empty_states)?,
        )?))
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
        let input = self.input.execute(partition, context)?;
        let expansion = Arc::clone(&self.expansion);
        let at_end = Arc::clone(&self.expansion);
        let read_rows = Arc::new(AtomicBool::new(false));
        let read_any = Arc::clone(&read_rows);
        let expanded = input.flat_map(move |batch| {
            let batches = batch.and_then(|batch| {
                if batch.num_rows() == 0 {
                    return Ok(Vec::new());
                }
                read_rows.store(true, Ordering::Relaxed);
                expansion.expand(&batch)
            });
            stream::iter(stream_items(batches))
        });
        let no_input = stream::once(async move {
            if read_any.load(Ordering::Relaxed) {
                Ok(Vec::new())
            } else {
                at_end.rows_of_no_input()
            }
        })
        .flat_map(|batches| stream::iter(stream_items(batches)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.expansion.schema),
            expanded.chain(no_input),
        )))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.expansion.schema)))
    }

    // Ballista's planner still asks for statistics this way.
    #[allow(deprecated)]
    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.expansion.schema)))
    }
}

/// `batches`, or its error, as the items of a stream.
fn stream_items(batches: Result<Vec<RecordBatch>>) -> Vec<Result<RecordBatch>> {
    match batches {
        Ok(batches) => batches.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e)],
    }
}

/// Carries [`ExpandGroupingSetsExec`] between processes: its grouping sets
/// and the aggregates' empty states (the rest follows from its input).
#[derive(Debug, Default)]
pub struct ExpandGroupingSetsCodec;

impl ExtensionOperatorCodec for ExpandGroupingSetsCodec {
    fn name(&self) -> &str {
        EXPAND_GROUPING_SETS
    }

    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
        let Some(exec) = node.downcast_ref::<ExpandGroupingSetsExec>() else {
            return Ok(None);
        };
        let states = &exec.expansion.empty_states;
        let empty_states = encode_ipc_stream(&states.schema(), std::slice::from_ref(states))?;
        let message = ember_proto::ExpandGroupingSets {
            sets: exec
                .expansion
                .sets
                .iter()
                .map(|set| ember_proto::GroupingSet {
                    absent: set.absent.clone(),
                })
                .collect(),
            empty_states,
        };
        Ok(Some(message.encode_to_vec()))
    }

    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(inputs, "ExpandGroupingSetsExec")?;
        let message = ember_proto::ExpandGroupingSets::decode(payload).map_err(|e| {
            DataFusionError::Internal(format!("an ExpandGroupingSetsExec does not decode: {e}"))
        })?;
        let batches = decode_ipc_stream(&message.empty_states)?;
        let [states] = batches.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "an ExpandGroupingSetsExec carries {} batches of empty states, not one",
                batches.len()
            )));
        };
        let empty_states = first_row(states)?;
        let absent = message.sets.into_iter().map(|set| set.absent).collect();
        Ok(Arc::new(ExpandGroupingSetsExec::try_new(
            input,
            absent,
            empty_states,
        )?))
    }
}

#[cfg(test)]
mod tests;

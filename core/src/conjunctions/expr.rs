//! [`OrderedConjunction`]: a filter predicate `a AND b AND …` whose
//! conjuncts are evaluated one after the other, each only on the rows the
//! ones before it kept.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::buffer::{BooleanBuffer, MutableBuffer};
use datafusion::arrow::compute::{filter, take};
use datafusion::arrow::datatypes::{DataType, Schema, UInt32Type};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::util::bit_util;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};
use datafusion::physical_expr::utils::collect_columns;

/// The name an [`OrderedConjunction`] travels under in Ember's codec; its
/// conjuncts travel as the node's inputs.
pub const ORDERED_CONJUNCTION_WIRE: &str = "ember.ordered_conjunction";

/// Below this share of a batch's rows still kept, a conjunct is evaluated
/// on those rows alone (its columns' values taken first); at or above it,
/// on the whole batch, where taking would copy most values.
const EVALUATE_ON_KEPT_ROWS_BELOW: f64 = 0.5;

/// A filter predicate `a AND b AND …` that evaluates its conjuncts in the
/// order given, each on the rows the earlier ones kept: once few rows
/// are left, a conjunct reads only its own columns of those rows. A row
/// passes when every conjunct is true for it.
///
/// It is meant as a `FilterExec`'s predicate only: a row that a conjunct
/// makes `NULL` comes out `false`, not `NULL` (a filter drops both alike),
/// and so later conjuncts never see it.
#[derive(Debug)]
pub struct OrderedConjunction {
    conjuncts: Vec<Arc<dyn PhysicalExpr>>,
    /// Per conjunct, the batch columns it reads and the conjunct rewritten
    /// to read them from a batch of only those columns; made on first use.
    projected: OnceLock<Vec<ProjectedConjunct>>,
}

/// One conjunct over a batch of only the columns it reads.
#[derive(Debug)]
struct ProjectedConjunct {
    columns: Vec<usize>,
    expr: Arc<dyn PhysicalExpr>,
}

impl OrderedConjunction {
    /// The conjunction of `conjuncts`, evaluated in this order; an error
    /// when there are fewer than two.
    pub fn try_new(conjuncts: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        if conjuncts.len() < 2 {
            return Err(DataFusionError::Internal(format!(
                "an ordered conjunction needs at least two conjuncts, got {}",
                conjuncts.len()
            )));
        }
        Ok(Self {
            conjuncts,
            projected: OnceLock::new(),
        })
    }

    /// The conjuncts, in the order they are evaluated.
    pub fn conjuncts(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.conjuncts
    }

    fn projected(&self) -> Result<&[ProjectedConjunct]> {
        if let Some(projected) = self.projected.get() {
            return Ok(projected);
        }
        let projected = self
            .conjuncts
            .iter()
            .map(project_conjunct)
            .collect::<Result<Vec<_>>>()?;
        Ok(self.projected.get_or_init(|| projected))
    }

    /// The rows of `kept` (row numbers of `batch`, ascending) for which the
    /// `index`th conjunct is true, evaluated on those rows of its own
    /// columns only.
    fn evaluate_on_kept_rows(
        &self,
        index: usize,
        batch: &RecordBatch,
        kept: &UInt32Array,
    ) -> Result<UInt32Array> {
        if kept.is_empty() {
            return Ok(kept.clone());
        }
        let projected = &self.projected()?[index];
        let columns = projected
            .columns
            .iter()
            .map(|&column| take(batch.column(column), kept, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // The row count keeps a conjunct that reads no column well-formed.
        let kept_rows = RecordBatch::try_new_with_options(
            Arc::new(batch.schema().project(&projected.columns)?),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(kept.len())),
        )?;
        let truths = true_rows(&projected.expr, &kept_rows)?;
        Ok(filter(kept, &BooleanArray::new(truths, None))?
            .as_primitive::<UInt32Type>()
            .clone())
    }
}

/// `conjunct` rewritten to read from a batch of only the columns it reads,
/// in their order in the full batch.
fn project_conjunct(conjunct: &Arc<dyn PhysicalExpr>) -> Result<ProjectedConjunct> {
    let mut columns: Vec<usize> = collect_columns(conjunct)
        .iter()
        .map(Column::index)
        .collect();
    columns.sort_unstable();
    columns.dedup();
    let expr = Arc::clone(conjunct)
        .transform_up(|node| {
            let Some(column) = node.downcast_ref::<Column>() else {
                return Ok(Transformed::no(node));
            };
            let at = columns.binary_search(&column.index()).map_err(|_| {
                DataFusionError::Internal(format!("column {column} was not collected"))
            })?;
            Ok(Transformed::yes(
                Arc::new(Column::new(column.name(), at)) as Arc<dyn PhysicalExpr>
            ))
        })?
        .data;
    Ok(ProjectedConjunct { columns, expr })
}

/// The rows of `batch` for which `conjunct` is true: `NULL` counts as
/// false.
fn true_rows(conjunct: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanBuffer> {
    let value = conjunct.evaluate(batch)?.into_array(batch.num_rows())?;
    let Some(booleans) = value.as_boolean_opt() else {
        return Err(DataFusionError::Internal(format!(
            "a conjunct of a filter evaluated to {}, not to booleans",
            value.data_type()
        )));
    };
    Ok(match booleans.nulls() {
        Some(valid) => booleans.values() & valid.inner(),
        None => booleans.values().clone(),
    })
}

/// A mask of `len` rows, set at `rows`.
fn rows_to_mask(rows: &UInt32Array, len: usize) -> BooleanBuffer {
    let mut bits = MutableBuffer::from_len_zeroed(bit_util::ceil(len, 8));
    let slice = bits.as_slice_mut();
    for &row in rows.values() {
        bit_util::set_bit(slice, row as usize);
    }
    BooleanBuffer::new(bits.into(), 0, len)
}

/// The rows kept so far: a mask over the batch, or, once fewer than
/// [`EVALUATE_ON_KEPT_ROWS_BELOW`] of them are left, their numbers.
enum KeptRows {
    Mask(BooleanBuffer),
    Rows(UInt32Array),
}

impl PartialEq for OrderedConjunction {
    fn eq(&self, other: &Self) -> bool {
        self.conjuncts == other.conjuncts
    }
}

impl Eq for OrderedConjunction {}

impl Hash for OrderedConjunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.conjuncts.hash(state);
    }
}

/// Writes `conjuncts` as `a AND b AND …`, a disjunction in parentheses,
/// each conjunct by `write`.
fn write_conjunction(
    f: &mut fmt::Formatter<'_>,
    conjuncts: &[Arc<dyn PhysicalExpr>],
    write: impl Fn(&Arc<dyn PhysicalExpr>, &mut fmt::Formatter<'_>) -> fmt::Result,
) -> fmt::Result {
    for (at, conjunct) in conjuncts.iter().enumerate() {
        if at > 0 {
            f.write_str(" AND ")?;
        }
        let disjunction = conjunct
            .downcast_ref::<BinaryExpr>()
            .is_some_and(|binary| *binary.op() == Operator::Or);
        if disjunction {
            f.write_str("(")?;
        }
        write(conjunct, f)?;
        if disjunction {
            f.write_str(")")?;
        }
    }
    Ok(())
}

impl fmt::Display for OrderedConjunction {
    /// As the conjunction `a AND b AND …` in evaluation order, as
    /// DataFusion shows a conjunction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_conjunction(f, &self.conjuncts, |conjunct, f| write!(f, "{conjunct}"))
    }
}

impl PhysicalExpr for OrderedConjunction {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _input_schema: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let few = EVALUATE_ON_KEPT_ROWS_BELOW * rows as f64;
        // `try_new` makes sure of two conjuncts or more.
        let first = self.conjuncts.first().ok_or_else(|| {
            DataFusionError::Internal("an ordered conjunction without conjuncts".to_string())
        })?;
        let mut kept = KeptRows::Mask(true_rows(first, batch)?);
        for (index, conjunct) in self.conjuncts.iter().enumerate().skip(1) {
            kept = match kept {
                KeptRows::Mask(mask) if (mask.count_set_bits() as f64) < few => {
                    let kept_rows = mask.set_indices().map(|row| row as u32).collect();
                    KeptRows::Rows(self.evaluate_on_kept_rows(index, batch, &kept_rows)?)
                }
                KeptRows::Mask(mask) => KeptRows::Mask(&mask & &true_rows(conjunct, batch)?),
                KeptRows::Rows(kept_rows) => {
                    KeptRows::Rows(self.evaluate_on_kept_rows(index, batch, &kept_rows)?)
                }
            };
        }
        let mask = match kept {
            KeptRows::Mask(mask) => mask,
            KeptRows::Rows(kept_rows) => rows_to_mask(&kept_rows, rows),
        };
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            mask, None,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.conjuncts.iter().collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(Self::try_new(children)?))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_conjunction(f, &self.conjuncts, |conjunct, f| conjunct.fmt_sql(f))
    }
}

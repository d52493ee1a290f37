//! DataFusion function implementations behind named functions: a scalar
//! function (one value per row, or a list for table-producing functions)
//! and a reduce aggregate.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::scalar::ScalarValue;

/// A named scalar function's body: the arguments (as arrays of the
/// declared types) and the row count, to the result array.
pub type BatchBody = Arc<dyn Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync>;

/// A named scalar (or list-returning) function.
pub(crate) struct NamedScalar {
    name: String,
    inputs: Vec<DataType>,
    output: DataType,
    signature: Signature,
    body: BatchBody,
    /// The portable library's descriptor, for a function that travels
    /// inside plans.
    descriptor: Option<Arc<[u8]>>,
}

impl NamedScalar {
    pub(crate) fn new(
        name: &str,
        inputs: Vec<DataType>,
        output: DataType,
        body: BatchBody,
    ) -> Self {
        Self {
            name: name.to_string(),
            signature: Signature::user_defined(Volatility::Immutable),
            inputs,
            output,
            body,
            descriptor: None,
        }
    }

    pub(crate) fn with_descriptor(mut self, descriptor: Option<Arc<[u8]>>) -> Self {
        self.descriptor = descriptor;
        self
    }

    /// The portable library's descriptor, if the function has one.
    pub(crate) fn descriptor(&self) -> Option<&[u8]> {
        self.descriptor.as_deref()
    }
}

impl fmt::Debug for NamedScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?}) -> {}", self.name, self.inputs, self.output)
    }
}

impl PartialEq for NamedScalar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.inputs == other.inputs
            && self.output == other.output
            && self.descriptor == other.descriptor
    }
}

impl Eq for NamedScalar {}

impl Hash for NamedScalar {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.inputs.hash(state);
    }
}

fn arity_error(name: &str, expected: usize, got: usize) -> DataFusionError {
    DataFusionError::Plan(format!(
        "function `{name}` takes {expected} argument(s), not {got}"
    ))
}

impl ScalarUDFImpl for NamedScalar {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.output.clone())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != self.inputs.len() {
            return Err(arity_error(&self.name, self.inputs.len(), arg_types.len()));
        }
        Ok(self.inputs.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.body)(&arrays, rows)?))
    }
}

/// A reduce function's body: folds a batch of values into the partial
/// result so far (`None` before the first non-NULL value).
pub type ReduceBody = Arc<dyn Fn(&ArrayRef, &mut Option<ScalarValue>) -> Result<()> + Send + Sync>;

/// A named reduce aggregate: `f(f(f(a, b), c), …)` over a column (for
/// `reduce` and `reduce_by_key`), its partial state being the value.
pub(crate) struct NamedReduce {
    name: String,
    value: DataType,
    signature: Signature,
    fold: ReduceBody,
    descriptor: Option<Arc<[u8]>>,
}

impl NamedReduce {
    pub(crate) fn new(name: &str, value: DataType, fold: ReduceBody) -> Self {
        Self {
            name: name.to_string(),
            signature: Signature::user_defined(Volatility::Immutable),
            value,
            fold,
            descriptor: None,
        }
    }

    pub(crate) fn with_descriptor(mut self, descriptor: Option<Arc<[u8]>>) -> Self {
        self.descriptor = descriptor;
        self
    }

    /// The portable library's descriptor, if the function has one.
    pub(crate) fn descriptor(&self) -> Option<&[u8]> {
        self.descriptor.as_deref()
    }
}

impl fmt::Debug for NamedReduce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reduce {}({})", self.name, self.value)
    }
}

impl PartialEq for NamedReduce {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value == other.value && self.descriptor == other.descriptor
    }
}

impl Eq for NamedReduce {}

impl Hash for NamedReduce {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.value.hash(state);
    }
}

impl AggregateUDFImpl for NamedReduce {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.value.clone())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 1 {
            return Err(arity_error(&self.name, 1, arg_types.len()));
        }
        Ok(vec![self.value.clone()])
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[value]", args.name),
            self.value.clone(),
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ReduceAccumulator {
            name: self.name.clone(),
            value: None,
            empty: ScalarValue::try_from(&self.value)?,
            fold: Arc::clone(&self.fold),
        }))
    }
}

struct ReduceAccumulator {
    name: String,
    value: Option<ScalarValue>,
    empty: ScalarValue,
    fold: ReduceBody,
}

impl fmt::Debug for ReduceAccumulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reduce {} = {:?}", self.name, self.value)
    }
}

impl Accumulator for ReduceAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values
            .first()
            .ok_or_else(|| arity_error(&self.name, 1, 0))?;
        (self.fold)(values, &mut self.value)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone().unwrap_or_else(|| self.empty.clone()))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.as_ref().map_or(0, ScalarValue::size)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

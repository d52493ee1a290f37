//! The RDD-style transformations over named functions (see
//! [`ember_core::functions`]): `map`, `flat_map`, `reduce_by_key`, and the
//! `reduce` action.

use datafusion::common::UnnestOptions;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::Expr;
use datafusion::prelude::col;
use ember_core::functions::SqlValue;

use super::{Dataset, planning};
use crate::context::EmberContext;
use crate::error::{ClientError, Result};

impl EmberContext {
    /// A call of the named scalar or table-producing function `name`.
    pub fn call(&self, name: &str, args: Vec<Expr>) -> Result<Expr> {
        let function = self.session().udf(name).map_err(|_| no_function(name))?;
        Ok(function.call(args))
    }

    /// A call of the named reduce (or any aggregate) function `name`.
    pub fn call_aggregate(&self, name: &str, args: Vec<Expr>) -> Result<Expr> {
        let function = self.session().udaf(name).map_err(|_| no_function(name))?;
        Ok(function.call(args))
    }
}

fn no_function(name: &str) -> ClientError {
    ClientError::Process(format!(
        "no named function `{name}` in this session: register its library with \
         ember_core::functions::register_library before creating the context, or load a \
         WebAssembly library with EmberContext::register_wasm_library"
    ))
}

fn columns(names: &[&str]) -> Vec<Expr> {
    names.iter().map(|n| col(*n)).collect()
}

impl Dataset {
    /// Adds (or replaces) the column `output` with the named scalar
    /// function `function` applied to each row's `inputs`.
    pub fn map(&self, function: &str, inputs: &[&str], output: &str) -> Result<Self> {
        let call = self.ctx.call(function, columns(inputs))?;
        self.with_column(output, call)
    }

    /// One row per value the named table-producing function `function`
    /// returns for each row's `input`, in the column `output` (the other
    /// columns repeat; rows producing no value disappear).
    pub fn flat_map(&self, function: &str, input: &str, output: &str) -> Result<Self> {
        let call = self.ctx.call(function, vec![col(input)])?;
        let listed = self.with_column(output, call)?;
        // A NULL input produces no rows, as an empty list does.
        let options = UnnestOptions::new().with_preserve_nulls(false);
        let frame = listed
            .frame
            .clone()
            .unnest_columns_with_options(&[output], options)
            .map_err(planning)?;
        Ok(self.with(frame))
    }

    /// The rows the named partition function `function` makes of each
    /// partition (Spark's `mapPartitions`): it receives one partition's
    /// batches at a time and returns batches of the schema it declared.
    pub fn map_partitions(&self, function: &str) -> Result<Self> {
        let input = self.frame.logical_plan().clone();
        let table = ember_core::functions::MapPartitionsTable::try_new(function, input)
            .map_err(planning)?;
        let frame = self
            .ctx
            .session()
            .read_table(std::sync::Arc::new(table))
            .map_err(planning)?;
        Ok(self.with(frame))
    }

    /// One row per distinct `keys`, with `value` folded by the named reduce
    /// function `function` (Spark's `reduceByKey`), in a column of the same
    /// name.
    pub fn reduce_by_key(&self, keys: &[&str], function: &str, value: &str) -> Result<Self> {
        let call = self.ctx.call_aggregate(function, vec![col(value)])?;
        self.group_by(columns(keys)).agg(vec![call.alias(value)])
    }

    /// Action: folds the column `value` with the named reduce function
    /// `function`; `None` when no row has a value.
    pub async fn reduce<T: SqlValue>(&self, function: &str, value: &str) -> Result<Option<T>> {
        let call = self.ctx.call_aggregate(function, vec![col(value)])?;
        let frame = self
            .frame
            .clone()
            .aggregate(vec![], vec![call.alias(value)])
            .map_err(planning)?;
        let batches = self.ctx.collect(frame).await?;
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let column = datafusion::arrow::compute::cast(batch.column(0), &T::data_type())
            .map_err(|e| planning(e.into()))?;
        Ok(T::from_array(&column, 0))
    }
}

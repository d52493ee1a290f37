//! Named functions: plain Rust functions over typed values, registered by
//! name in every Ember process, so that plans that call them can run on a
//! cluster.
//!
//! Rust closures cannot travel to another process; names can. A
//! [`FunctionLibrary`] turns Rust functions into SQL functions (scalar,
//! table-producing and reduce), and [`register_library`] adds it to this
//! process: every session built afterwards (client, scheduler, executor)
//! resolves its names. The client, the scheduler and every executor must
//! therefore hold the same libraries: Ember's [`standard_library`] is built
//! into every Ember binary, and a job's own library is registered by the job
//! and by executors built with it (`ember_executor` as a library). A plan
//! that calls a function an executor lacks fails with an error naming the
//! function.
//!
//! ```
//! use ember_core::functions::FunctionLibrary;
//!
//! let library = FunctionLibrary::new("trips")
//!     .scalar1("fare_band", |fare: f64| if fare < 10.0 { "low".to_string() } else { "high".to_string() })
//!     .flat("digits", |s: String| s.chars().filter(char::is_ascii_digit).map(String::from).collect())
//!     .reduce("longest", |a: String, b: String| if b.len() > a.len() { b } else { a });
//! assert_eq!(library.names(), vec!["fare_band", "digits", "longest"]);
//! ```

mod partitions;
mod portable;
mod udf;
mod values;

use std::sync::{Arc, OnceLock, RwLock};

use datafusion::arrow::array::{Array, ArrayRef, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

pub use partitions::{
    MAP_PARTITIONS, MapPartitionsCodec, MapPartitionsExec, MapPartitionsTable, PartitionBody,
    PartitionFunction,
};
pub use portable::{
    LibraryLoader, decode_portable_udaf, decode_portable_udf, encode_portable_udaf,
    encode_portable_udf, install_library_loader, load_portable_library,
};
pub use udf::{BatchBody, ReduceBody};
use udf::{NamedReduce, NamedScalar};
pub use values::SqlValue;

/// A set of named functions, built from Rust functions.
#[derive(Clone, Default)]
pub struct FunctionLibrary {
    name: String,
    scalars: Vec<Arc<ScalarUDF>>,
    aggregates: Vec<Arc<AggregateUDF>>,
    partition_functions: Vec<Arc<PartitionFunction>>,
    /// For a library that can be loaded in another process (a WebAssembly
    /// module, say): what [`LibraryLoader::load`] takes there. Its
    /// functions travel inside plans with it.
    descriptor: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for FunctionLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionLibrary")
            .field("name", &self.name)
            .field("functions", &self.names())
            .finish()
    }
}

fn argument<'a>(args: &'a [ArrayRef], i: usize, name: &str) -> Result<&'a ArrayRef> {
    args.get(i).ok_or_else(|| {
        DataFusionError::Execution(format!("function `{name}` is missing argument {i}"))
    })
}

impl FunctionLibrary {
    /// An empty library called `name` (for messages).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    /// An empty library called `name` that another process rebuilds from
    /// `descriptor` with its [`LibraryLoader`]: plans that call its
    /// functions carry the descriptor, so a process that never registered
    /// the library can still run them.
    pub fn portable(name: &str, descriptor: Vec<u8>) -> Self {
        Self {
            name: name.to_string(),
            descriptor: Some(descriptor.into()),
            ..Self::default()
        }
    }

    /// The library's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What rebuilds it in another process, for a portable library.
    pub fn descriptor(&self) -> Option<&[u8]> {
        self.descriptor.as_deref()
    }

    /// This library with only its function `name` (of any kind), or `None`
    /// when it has none of that name.
    pub fn only(&self, name: &str) -> Option<Self> {
        let library = Self {
            name: self.name.clone(),
            scalars: self
                .scalars
                .iter()
                .filter(|f| f.name() == name)
                .cloned()
                .collect(),
            aggregates: self
                .aggregates
                .iter()
                .filter(|f| f.name() == name)
                .cloned()
                .collect(),
            partition_functions: self
                .partition_functions
                .iter()
                .filter(|f| f.name() == name)
                .cloned()
                .collect(),
            descriptor: self.descriptor.clone(),
        };
        (!library.names().is_empty()).then_some(library)
    }

    /// Its scalar (or table-producing) function `name`.
    pub fn scalar_function(&self, name: &str) -> Option<&Arc<ScalarUDF>> {
        self.scalars.iter().find(|f| f.name() == name)
    }

    /// Its reduce function `name`.
    pub fn aggregate_function(&self, name: &str) -> Option<&Arc<AggregateUDF>> {
        self.aggregates.iter().find(|f| f.name() == name)
    }

    /// Its partition functions.
    pub fn partition_functions(&self) -> &[Arc<PartitionFunction>] {
        &self.partition_functions
    }

    /// `name(args…)` computed a batch at a time: `body` gets the arguments
    /// (cast to `inputs`) and the row count, and returns an array of
    /// `output` (a `List` for a table-producing function). For functions
    /// whose body is not a typed Rust closure, such as a WebAssembly
    /// module's.
    pub fn scalar_batch(
        mut self,
        name: &str,
        inputs: Vec<DataType>,
        output: DataType,
        body: BatchBody,
    ) -> Self {
        let scalar =
            NamedScalar::new(name, inputs, output, body).with_descriptor(self.descriptor.clone());
        self.scalars
            .push(Arc::new(ScalarUDF::new_from_impl(scalar)));
        self
    }

    /// A reduce function of values of type `value` whose `fold` takes a
    /// batch of values and the partial result so far (see
    /// [`FunctionLibrary::reduce`]).
    pub fn reduce_batch(mut self, name: &str, value: DataType, fold: ReduceBody) -> Self {
        let reduce = NamedReduce::new(name, value, fold).with_descriptor(self.descriptor.clone());
        self.aggregates
            .push(Arc::new(AggregateUDF::new_from_impl(reduce)));
        self
    }

    /// Its functions' names, scalar ones first.
    pub fn names(&self) -> Vec<&str> {
        self.scalars
            .iter()
            .map(|f| f.name())
            .chain(self.aggregates.iter().map(|f| f.name()))
            .chain(self.partition_functions.iter().map(|f| f.name()))
            .collect()
    }

    /// Its scalar and table-producing functions.
    pub fn scalar_functions(&self) -> &[Arc<ScalarUDF>] {
        &self.scalars
    }

    /// Its reduce functions.
    pub fn aggregate_functions(&self) -> &[Arc<AggregateUDF>] {
        &self.aggregates
    }

    /// `name(a)`: `f` applied to each row; NULL in, NULL out.
    pub fn scalar1<A: SqlValue, R: SqlValue>(
        self,
        name: &str,
        f: impl Fn(A) -> R + Send + Sync + 'static,
    ) -> Self {
        self.partial1(name, move |a| Some(f(a)))
    }

    /// `name(a)`: `f` applied to each row, `None` giving NULL (a partial
    /// function, such as a parser); NULL in, NULL out.
    pub fn partial1<A: SqlValue, R: SqlValue>(
        self,
        name: &str,
        f: impl Fn(A) -> Option<R> + Send + Sync + 'static,
    ) -> Self {
        let label = name.to_string();
        let body = move |args: &[ArrayRef], rows: usize| -> Result<ArrayRef> {
            let a = argument(args, 0, &label)?;
            Ok(R::into_array(
                (0..rows)
                    .map(|i| A::from_array(a, i).and_then(&f))
                    .collect(),
            ))
        };
        self.scalar_batch(name, vec![A::data_type()], R::data_type(), Arc::new(body))
    }

    /// `name(a, b)`: `f` applied to each row; NULL in, NULL out.
    pub fn scalar2<A: SqlValue, B: SqlValue, R: SqlValue>(
        self,
        name: &str,
        f: impl Fn(A, B) -> R + Send + Sync + 'static,
    ) -> Self {
        let label = name.to_string();
        let body = move |args: &[ArrayRef], rows: usize| -> Result<ArrayRef> {
            let (a, b) = (argument(args, 0, &label)?, argument(args, 1, &label)?);
            Ok(R::into_array(
                (0..rows)
                    .map(|i| Some(f(A::from_array(a, i)?, B::from_array(b, i)?)))
                    .collect(),
            ))
        };
        self.scalar_batch(
            name,
            vec![A::data_type(), B::data_type()],
            R::data_type(),
            Arc::new(body),
        )
    }

    /// A table-producing function: `name(a)` is the list `f(a)`, which
    /// `Dataset::flat_map` (or SQL `unnest`) turns into one row per value.
    pub fn flat<A: SqlValue, R: SqlValue>(
        self,
        name: &str,
        f: impl Fn(A) -> Vec<R> + Send + Sync + 'static,
    ) -> Self {
        let label = name.to_string();
        let item = Arc::new(Field::new_list_field(R::data_type(), true));
        let list_item = Arc::clone(&item);
        let body = move |args: &[ArrayRef], rows: usize| -> Result<ArrayRef> {
            let a = argument(args, 0, &label)?;
            let mut values = Vec::new();
            let mut lengths = Vec::with_capacity(rows);
            let mut valid = Vec::with_capacity(rows);
            for i in 0..rows {
                match A::from_array(a, i) {
                    Some(input) => {
                        let produced = f(input);
                        lengths.push(produced.len());
                        values.extend(produced.into_iter().map(Some));
                        valid.push(true);
                    }
                    None => {
                        lengths.push(0);
                        valid.push(false);
                    }
                }
            }
            let list = ListArray::try_new(
                Arc::clone(&list_item),
                OffsetBuffer::from_lengths(lengths),
                R::into_array(values),
                Some(valid.into()),
            )?;
            Ok(Arc::new(list))
        };
        self.scalar_batch(
            name,
            vec![A::data_type()],
            DataType::List(item),
            Arc::new(body),
        )
    }

    /// A partition function (for `Dataset::map_partitions`): `f` receives
    /// every batch of one partition and returns batches of schema `output`.
    /// The partition is held in memory while `f` runs.
    pub fn partitions(
        mut self,
        name: &str,
        output: datafusion::arrow::datatypes::SchemaRef,
        f: impl Fn(
            Vec<datafusion::arrow::record_batch::RecordBatch>,
        ) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.partition_functions.push(Arc::new(
            PartitionFunction::new(name, output, Arc::new(f))
                .with_descriptor(self.descriptor.clone()),
        ));
        self
    }

    /// A reduce function: the aggregate `name(x)` folds a column's non-NULL
    /// values with `f`, which must be associative and commutative (partial
    /// results are combined in any order); NULL when there is none.
    pub fn reduce<T: SqlValue>(
        self,
        name: &str,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> Self {
        self.try_reduce(name, move |a, b| Ok(f(a, b)))
    }

    /// [`FunctionLibrary::reduce`] with a fold that can fail (an overflow,
    /// say): its message fails the query, naming the function.
    pub fn try_reduce<T: SqlValue>(
        self,
        name: &str,
        f: impl Fn(T, T) -> std::result::Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        let label = name.to_string();
        let fold = move |values: &ArrayRef, state: &mut Option<datafusion::scalar::ScalarValue>| {
            let mut acc: Option<T> = match state.take() {
                Some(scalar) if !scalar.is_null() => T::from_array(&scalar.to_array()?, 0),
                _ => None,
            };
            for i in 0..values.len() {
                if let Some(v) = T::from_array(values, i) {
                    acc = Some(match acc {
                        Some(a) => f(a, v).map_err(|e| {
                            DataFusionError::Execution(format!("function `{label}`: {e}"))
                        })?,
                        None => v,
                    });
                }
            }
            *state = acc.map(|a| T::to_scalar(Some(a)));
            Ok(())
        };
        self.reduce_batch(name, T::data_type(), Arc::new(fold))
    }
}

/// The libraries registered in this process (the standard one first).
fn libraries() -> &'static RwLock<Vec<FunctionLibrary>> {
    static LIBRARIES: OnceLock<RwLock<Vec<FunctionLibrary>>> = OnceLock::new();
    LIBRARIES.get_or_init(|| RwLock::new(vec![standard_library()]))
}

/// Adds `library` to this process: sessions built from now on resolve its
/// functions. Register the same libraries in the client, the scheduler and
/// every executor. A library registered twice (by name) is kept once.
pub fn register_library(library: FunctionLibrary) {
    if let Ok(mut all) = libraries().write() {
        all.retain(|l| l.name != library.name);
        all.push(library);
    }
}

/// Removes the library called `name` from this process (sessions built
/// from now on no longer resolve its functions); whether there was one.
pub fn deregister_library(name: &str) -> bool {
    match libraries().write() {
        Ok(mut all) => {
            let before = all.len();
            all.retain(|l| l.name != name);
            all.len() != before
        }
        Err(_) => false,
    }
}

/// The registered library called `name`.
pub fn registered_library(name: &str) -> Option<FunctionLibrary> {
    let all = libraries().read().ok()?;
    all.iter().find(|l| l.name == name).cloned()
}

/// Every registered function, as (scalar, aggregate) lists.
pub fn registered_functions() -> (Vec<Arc<ScalarUDF>>, Vec<Arc<AggregateUDF>>) {
    let all = libraries()
        .read()
        .map(|l| l.clone())
        .unwrap_or_else(|_| vec![standard_library()]);
    let scalars = all.iter().flat_map(|l| l.scalars.iter().cloned()).collect();
    let aggregates = all
        .iter()
        .flat_map(|l| l.aggregates.iter().cloned())
        .collect();
    (scalars, aggregates)
}

/// The registered partition function `name`, if any.
pub fn partition_function(name: &str) -> Option<Arc<PartitionFunction>> {
    let all = libraries().read().ok()?;
    all.iter()
        .rev()
        .flat_map(|l| l.partition_functions.iter())
        .find(|f| f.name() == name)
        .cloned()
}

/// Registers every registered function on `ctx` (for sessions that another
/// layer rebuilt, such as a Ballista client session, which resets its
/// function lists).
pub fn register_into(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(crate::scalar_subquery::scalar_subquery_value());
    ctx.register_udf(crate::dialect::spark_decimal_divide());
    let (scalars, aggregates) = registered_functions();
    for function in scalars {
        ctx.register_udf(function.as_ref().clone());
    }
    for function in aggregates {
        ctx.register_udaf(function.as_ref().clone());
    }
}

/// The named functions every Ember binary holds:
///
/// * `normalize_space(text)`: the text trimmed, inner runs of whitespace
///   made one space;
/// * `parse_double(text)`: the text as a DOUBLE, NULL unless it is a
///   finite number (for cleaning raw data);
/// * `words(text)`: the lowercase words of a text (runs of letters, digits
///   and apostrophes), a list for `flat_map`;
/// * `plus(x)`: the sum of a BIGINT column as a reduce (`reduce_by_key`),
///   failing on overflow;
/// * `longest(s)`: the longest string of a column (the smallest of equally
///   long ones, so the answer does not depend on the order);
/// * `partition_size`: a partition function (`map_partitions`) giving one
///   row per partition, its number of rows in `rows` (to see skew).
pub fn standard_library() -> FunctionLibrary {
    FunctionLibrary::new("ember")
        .scalar1("normalize_space", |text: String| {
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .partial1("parse_double", |text: String| {
            text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
        })
        .flat("words", |text: String| {
            text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .map(|w| w.trim_matches('\'').to_lowercase())
                .filter(|w| !w.is_empty())
                .collect()
        })
        .try_reduce("plus", |a: i64, b: i64| {
            a.checked_add(b)
                .ok_or_else(|| format!("{a} + {b} overflows BIGINT"))
        })
        .reduce("longest", |a: String, b: String| {
            if b.len() > a.len() || (b.len() == a.len() && b < a) {
                b
            } else {
                a
            }
        })
        .partitions("partition_size", partition_size_schema(), |batches| {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let column = datafusion::arrow::array::Int64Array::from(vec![rows as i64]);
            Ok(vec![datafusion::arrow::record_batch::RecordBatch::try_new(
                partition_size_schema(),
                vec![Arc::new(column)],
            )?])
        })
}

/// The output of `partition_size`: one BIGINT column, `rows`.
fn partition_size_schema() -> datafusion::arrow::datatypes::SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(vec![Field::new(
        "rows",
        DataType::Int64,
        false,
    )]))
}

#[cfg(test)]
mod tests;

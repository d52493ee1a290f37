//! Filter + arithmetic projection + aggregates without GROUP BY, fused into
//! one pass (the shape of TPC-H Q6): one generated CUDA kernel, and a CPU
//! reference with the same semantics.
//!
//! Each thread filters and accumulates a grid-stride share of the rows;
//! warps reduce with shuffles, blocks through shared memory, and each block
//! writes one partial per aggregate slot, which the host combines (integer
//! sums in 128 bits). 64-bit overflow anywhere sets a flag and the result
//! is [`GpuError::Overflow`]: callers then use the CPU path.

use std::fmt::Write as _;

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::batch::{DeviceBatch, DeviceValues, HostBatch};
use crate::device::GpuDevice;
use crate::error::GpuError;
use crate::expr::{CudaEmitter, GpuExpr, GpuType, Value, evaluate};

/// Threads per block of the generated kernels.
pub(crate) const BLOCK: u32 = 256;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    /// `SUM(e)`: NULL when no row qualifies.
    Sum,
    /// `MIN(e)`
    Min,
    /// `MAX(e)`
    Max,
    /// `COUNT(e)` (non-NULL values), or `COUNT(*)` without an input.
    Count,
    /// `AVG(e)`, as a float.
    Avg,
}

/// One aggregate of a [`FusedAggregate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The function.
    pub function: AggregateFunction,
    /// Its input; `None` only for `COUNT(*)`.
    pub input: Option<GpuExpr>,
}

impl Aggregate {
    /// `function(input)`.
    pub fn new(function: AggregateFunction, input: GpuExpr) -> Self {
        Self {
            function,
            input: Some(input),
        }
    }

    /// `COUNT(*)`.
    pub fn count_star() -> Self {
        Self {
            function: AggregateFunction::Count,
            input: None,
        }
    }
}

/// An aggregate's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateValue {
    /// SQL NULL (no qualifying non-NULL input).
    Null,
    /// An integer or decimal: `value * 10^-scale`.
    Int {
        /// The unscaled value.
        value: i128,
        /// Digits after the decimal point.
        scale: i8,
    },
    /// A float.
    Float(f64),
    /// A count.
    Count(u64),
}

/// `SELECT aggregates FROM batch WHERE filter`, on the CPU or a GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedAggregate {
    /// Rows are kept where this is TRUE; `None` keeps every row.
    pub filter: Option<GpuExpr>,
    /// The aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
}

/// Per-aggregate accumulator: a value slot and a count slot.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Accumulator {
    pub(crate) int: Option<i128>,
    pub(crate) float: Option<f64>,
    pub(crate) count: u64,
}

impl Accumulator {
    /// Adds one non-NULL input value.
    pub(crate) fn update(&mut self, function: AggregateFunction, value: Value) {
        self.count += 1;
        match (function, value) {
            (AggregateFunction::Count, _) => {}
            (AggregateFunction::Sum | AggregateFunction::Avg, Value::Int(v)) => {
                self.int = Some(self.int.unwrap_or(0) + v);
            }
            (AggregateFunction::Sum | AggregateFunction::Avg, Value::Float(v)) => {
                self.float = Some(self.float.unwrap_or(0.0) + v);
            }
            (AggregateFunction::Min, Value::Int(v)) => {
                self.int = Some(self.int.map_or(v, |m| m.min(v)));
            }
            (AggregateFunction::Max, Value::Int(v)) => {
                self.int = Some(self.int.map_or(v, |m| m.max(v)));
            }
            (AggregateFunction::Min, Value::Float(v)) => {
                self.float = Some(self.float.map_or(v, |m| m.min(v)));
            }
            (AggregateFunction::Max, Value::Float(v)) => {
                self.float = Some(self.float.map_or(v, |m| m.max(v)));
            }
            (_, Value::Bool(_)) => {}
        }
    }
}

impl FusedAggregate {
    /// The name of the generated kernel.
    pub const KERNEL: &'static str = "ember_fused_aggregate";

    /// Checks that every expression type-checks over `types`.
    pub fn validate(&self, types: &[GpuType]) -> Result<(), GpuError> {
        if let Some(filter) = &self.filter
            && filter.data_type(types)? != GpuType::Bool
        {
            return Err(GpuError::Unsupported("a non-boolean filter".to_string()));
        }
        for aggregate in &self.aggregates {
            match &aggregate.input {
                Some(input)
                    if input.data_type(types)? == GpuType::Bool
                        && aggregate.function != AggregateFunction::Count =>
                {
                    return Err(GpuError::Unsupported(
                        "SUM/MIN/MAX/AVG of a boolean".to_string(),
                    ));
                }
                Some(_) => {}
                None if aggregate.function != AggregateFunction::Count => {
                    return Err(GpuError::Unsupported(
                        "only COUNT may have no input".to_string(),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn input_type(&self, index: usize, types: &[GpuType]) -> Result<GpuType, GpuError> {
        match &self.aggregates[index].input {
            Some(input) => input.data_type(types),
            None => Ok(GpuType::Int { scale: 0 }),
        }
    }

    /// The CPU reference: evaluates row by row with 128-bit integers.
    pub fn run_cpu(&self, batch: &HostBatch) -> Result<Vec<AggregateValue>, GpuError> {
        let types = batch.types();
        self.validate(&types)?;
        let column = |c: usize, row: usize| batch.columns[c].value(row);
        let mut accumulators = vec![Accumulator::default(); self.aggregates.len()];
        for row in 0..batch.rows {
            if let Some(filter) = &self.filter
                && evaluate(filter, &types, row, &column)? != Some(Value::Bool(true))
            {
                continue;
            }
            for (aggregate, acc) in self.aggregates.iter().zip(&mut accumulators) {
                let value = match &aggregate.input {
                    None => {
                        acc.count += 1;
                        continue;
                    }
                    Some(input) => evaluate(input, &types, row, &column)?,
                };
                let Some(value) = value else { continue };
                acc.update(aggregate.function, value);
            }
        }
        (0..self.aggregates.len())
            .map(|i| self.finish(i, &types, accumulators[i]))
            .collect()
    }

    fn finish(
        &self,
        index: usize,
        types: &[GpuType],
        acc: Accumulator,
    ) -> Result<AggregateValue, GpuError> {
        let function = self.aggregates[index].function;
        if function == AggregateFunction::Count {
            return Ok(AggregateValue::Count(acc.count));
        }
        if acc.count == 0 {
            return Ok(AggregateValue::Null);
        }
        let scale = match self.input_type(index, types)? {
            GpuType::Int { scale } => scale,
            _ => 0,
        };
        Ok(match (function, acc.int, acc.float) {
            (AggregateFunction::Avg, Some(sum), _) => {
                AggregateValue::Float(sum as f64 / 10f64.powi(scale as i32) / acc.count as f64)
            }
            (AggregateFunction::Avg, None, Some(sum)) => {
                AggregateValue::Float(sum / acc.count as f64)
            }
            (AggregateFunction::Min | AggregateFunction::Max, Some(v), _) => {
                AggregateValue::Int { value: v, scale }
            }
            (AggregateFunction::Sum, Some(v), _) => {
                // 64-bit per-row inputs summed exactly; the device reports
                // overflow of its 64-bit partials, the CPU never overflows.
                AggregateValue::Int { value: v, scale }
            }
            (_, None, Some(v)) => AggregateValue::Float(v),
            _ => AggregateValue::Null,
        })
    }

    /// The CUDA C source of this query's kernel over columns of `types`.
    pub fn kernel_source(&self, types: &[GpuType]) -> Result<String, GpuError> {
        self.validate(types)?;
        let mut src = String::from(KERNEL_PRELUDE);
        let mut params = column_params(types);
        params.push("long long rows".to_string());
        params.push("long long* __restrict__ partials".to_string());
        params.push("int* __restrict__ overflow_out".to_string());
        let _ = writeln!(
            src,
            "extern \"C\" __global__ void {}({}) {{",
            Self::KERNEL,
            params.join(", ")
        );
        src.push_str("  int overflow = 0;\n");
        // Accumulators.
        let mut slot_types = Vec::new();
        for (i, aggregate) in self.aggregates.iter().enumerate() {
            let float = self.input_type(i, types)? == GpuType::Float;
            let (c_type, init) = match (aggregate.function, float) {
                (AggregateFunction::Min, false) => ("long long", "EMBER_LLONG_MAX"),
                (AggregateFunction::Max, false) => ("long long", "EMBER_LLONG_MIN"),
                (AggregateFunction::Min, true) => ("double", "EMBER_INF"),
                (AggregateFunction::Max, true) => ("double", "-EMBER_INF"),
                (_, true) => ("double", "0.0"),
                (_, false) => ("long long", "0"),
            };
            let _ = writeln!(src, "  {c_type} acc{i} = {init}; long long cnt{i} = 0;");
            slot_types.push((c_type, aggregate.function));
        }
        src.push_str(
            "  for (long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x; row < rows;\n\
             \x20      row += (long long)blockDim.x * gridDim.x) {\n",
        );
        if let Some(filter) = &self.filter {
            let mut emitter = CudaEmitter::new(types);
            let n = emitter.emit(filter)?;
            src.push_str(&emitter.code);
            let _ = writeln!(src, "    if (!(ok{n} && v{n})) continue;");
        }
        for (i, aggregate) in self.aggregates.iter().enumerate() {
            let Some(input) = &aggregate.input else {
                let _ = writeln!(src, "    cnt{i} += 1;");
                continue;
            };
            let mut emitter = CudaEmitter::new(types);
            let n = emitter.emit(input)?;
            // Each aggregate's statements live in their own scope.
            src.push_str("    {\n");
            src.push_str(&emitter.code);
            let float = slot_types[i].0 == "double";
            let update = match (aggregate.function, float) {
                (AggregateFunction::Count, _) => String::new(),
                (AggregateFunction::Sum | AggregateFunction::Avg, false) => {
                    format!("acc{i} = add_checked(acc{i}, v{n}, &overflow);")
                }
                (AggregateFunction::Sum | AggregateFunction::Avg, true) => {
                    format!("acc{i} += v{n};")
                }
                (AggregateFunction::Min, false) => format!("acc{i} = min(acc{i}, v{n});"),
                (AggregateFunction::Max, false) => format!("acc{i} = max(acc{i}, v{n});"),
                (AggregateFunction::Min, true) => format!("acc{i} = fmin(acc{i}, v{n});"),
                (AggregateFunction::Max, true) => format!("acc{i} = fmax(acc{i}, v{n});"),
            };
            let _ = writeln!(src, "    if (ok{n}) {{ {update} cnt{i} += 1; }}\n    }}");
        }
        src.push_str("  }\n");
        // Reduction: warps by shuffle, then warps through shared memory.
        let slots = self.aggregates.len() * 2;
        let _ = writeln!(
            src,
            "  __shared__ long long shared[{}][{}];\n  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;",
            slots.max(1),
            BLOCK / 32
        );
        for (i, (c_type, function)) in slot_types.iter().enumerate() {
            let combine = combine_expression(*function, c_type, "a", "b");
            let _ = writeln!(
                src,
                "  for (int d = 16; d > 0; d >>= 1) {{ {c_type} a = acc{i}; {c_type} b = __shfl_down_sync(0xffffffffu, acc{i}, d); acc{i} = {combine}; \
                 cnt{i} += __shfl_down_sync(0xffffffffu, cnt{i}, d); }}"
            );
            let store = if *c_type == "double" {
                format!("__double_as_longlong(acc{i})")
            } else {
                format!("acc{i}")
            };
            let _ = writeln!(
                src,
                "  if (lane == 0) {{ shared[{}][warp] = {store}; shared[{}][warp] = cnt{i}; }}",
                2 * i,
                2 * i + 1
            );
        }
        src.push_str("  int block_overflow = __syncthreads_or(overflow);\n");
        src.push_str("  if (threadIdx.x == 0) {\n    const int warps = (blockDim.x + 31) >> 5;\n");
        for (i, (c_type, function)) in slot_types.iter().enumerate() {
            let load = |w: &str| {
                if *c_type == "double" {
                    format!("__longlong_as_double(shared[{}][{w}])", 2 * i)
                } else {
                    format!("shared[{}][{w}]", 2 * i)
                }
            };
            let combine = combine_expression(*function, c_type, "v", "b");
            let _ = writeln!(
                src,
                "    {{ {c_type} v = {}; long long n = shared[{}][0];\n      for (int w = 1; w < warps; ++w) {{ {c_type} b = {}; v = {combine}; n += shared[{}][w]; }}",
                load("0"),
                2 * i + 1,
                load("w"),
                2 * i + 1
            );
            let store = if *c_type == "double" {
                "__double_as_longlong(v)".to_string()
            } else {
                "v".to_string()
            };
            let _ = writeln!(
                src,
                "      partials[(long long)blockIdx.x * {slots} + {}] = {store}; partials[(long long)blockIdx.x * {slots} + {}] = n; }}",
                2 * i,
                2 * i + 1
            );
        }
        src.push_str("    if (block_overflow || overflow) atomicOr(overflow_out, 1);\n  }\n}\n");
        Ok(src)
    }

    /// Runs on `device` over a batch already in its memory.
    pub fn run_gpu(
        &self,
        device: &GpuDevice,
        batch: &DeviceBatch,
    ) -> Result<Vec<AggregateValue>, GpuError> {
        let types = batch.types();
        let source = self.kernel_source(&types)?;
        let kernel = device.kernel(Self::KERNEL, &source)?;
        let stream = device.stream();
        let blocks =
            (batch.rows.div_ceil(BLOCK as usize)).clamp(1, device.multiprocessors()? * 8) as u32;
        let slots = self.aggregates.len() * 2;
        let mut partials = stream.alloc_zeros::<i64>((blocks as usize * slots).max(1))?;
        let mut overflow = stream.alloc_zeros::<i32>(1)?;
        let rows = batch.rows as i64;
        let null: u64 = 0;
        let mut launch = stream.launch_builder(&kernel);
        push_columns(&mut launch, batch, &null);
        launch.arg(&rows).arg(&mut partials).arg(&mut overflow);
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel's parameters are exactly the ones pushed above,
        // in order: per column a value pointer and a validity pointer (or
        // null), then rows, partials (blocks * slots) and the overflow flag.
        unsafe { launch.launch(config) }?;
        let partials = stream.clone_dtoh(&partials)?;
        let overflow = stream.clone_dtoh(&overflow)?;
        if overflow.first().copied().unwrap_or(0) != 0 {
            return Err(GpuError::Overflow);
        }
        self.combine_partials(&types, &partials, blocks as usize)
    }

    /// Combines the per-block partials the kernel wrote.
    fn combine_partials(
        &self,
        types: &[GpuType],
        partials: &[i64],
        blocks: usize,
    ) -> Result<Vec<AggregateValue>, GpuError> {
        let slots = self.aggregates.len() * 2;
        (0..self.aggregates.len())
            .map(|i| {
                let float = self.input_type(i, types)? == GpuType::Float;
                let function = self.aggregates[i].function;
                let mut acc = Accumulator::default();
                for block in 0..blocks {
                    let value = partials[block * slots + 2 * i];
                    let count = partials[block * slots + 2 * i + 1] as u64;
                    if count == 0 {
                        continue;
                    }
                    acc.count += count;
                    if float {
                        let v = f64::from_bits(value as u64);
                        acc.float = Some(match (function, acc.float) {
                            (_, None) => v,
                            (AggregateFunction::Min, Some(m)) => m.min(v),
                            (AggregateFunction::Max, Some(m)) => m.max(v),
                            (_, Some(s)) => s + v,
                        });
                    } else {
                        let v = value as i128;
                        acc.int = Some(match (function, acc.int) {
                            (_, None) => v,
                            (AggregateFunction::Min, Some(m)) => m.min(v),
                            (AggregateFunction::Max, Some(m)) => m.max(v),
                            (_, Some(s)) => s + v,
                        });
                    }
                }
                self.finish(i, types, acc)
            })
            .collect()
    }
}

/// The kernel parameters of columns of `types`: per column its values and
/// its validity bitmap (`c{i}`, `valid{i}`).
pub(crate) fn column_params(types: &[GpuType]) -> Vec<String> {
    let mut params = Vec::new();
    for (i, ty) in types.iter().enumerate() {
        let c_type = if *ty == GpuType::Float {
            "double"
        } else {
            "long long"
        };
        params.push(format!("const {c_type}* __restrict__ c{i}"));
        params.push(format!("const unsigned int* __restrict__ valid{i}"));
    }
    params
}

/// Pushes the arguments [`column_params`] declares: per column of `batch`
/// its values and its validity bitmap, or `null` where every row is valid.
pub(crate) fn push_columns<'a>(
    launch: &mut cudarc::driver::LaunchArgs<'a>,
    batch: &'a DeviceBatch,
    null: &'a u64,
) {
    for column in &batch.columns {
        match &column.values {
            DeviceValues::Int(v) => launch.arg(v),
            DeviceValues::Float(v) => launch.arg(v),
        };
        match &column.validity {
            Some(bits) => launch.arg(bits),
            None => launch.arg(null),
        };
    }
}

/// The C expression combining two partial values of an aggregate.
fn combine_expression(function: AggregateFunction, c_type: &str, a: &str, b: &str) -> String {
    match (function, c_type == "double") {
        (AggregateFunction::Min, false) => format!("min({a}, {b})"),
        (AggregateFunction::Max, false) => format!("max({a}, {b})"),
        (AggregateFunction::Min, true) => format!("fmin({a}, {b})"),
        (AggregateFunction::Max, true) => format!("fmax({a}, {b})"),
        (_, false) => format!("add_checked({a}, {b}, &overflow)"),
        (_, true) => format!("{a} + {b}"),
    }
}

/// Helpers every generated kernel starts with.
pub(crate) const KERNEL_PRELUDE: &str = r#"// Generated by ember-gpu.
#define EMBER_LLONG_MAX 9223372036854775807LL
#define EMBER_LLONG_MIN (-EMBER_LLONG_MAX - 1LL)
#define EMBER_INF __longlong_as_double(0x7ff0000000000000LL)

__device__ __forceinline__ bool is_valid(const unsigned int* bits, long long row) {
  return bits == 0 || ((bits[row >> 5] >> (row & 31)) & 1u);
}
__device__ __forceinline__ long long add_checked(long long a, long long b, int* overflow) {
  long long r = (long long)((unsigned long long)a + (unsigned long long)b);
  if (((a ^ r) & (b ^ r)) < 0) *overflow = 1;
  return r;
}
__device__ __forceinline__ long long sub_checked(long long a, long long b, int* overflow) {
  long long r = (long long)((unsigned long long)a - (unsigned long long)b);
  if (((a ^ b) & (a ^ r)) < 0) *overflow = 1;
  return r;
}
__device__ __forceinline__ long long mul_checked(long long a, long long b, int* overflow) {
  long long lo = (long long)((unsigned long long)a * (unsigned long long)b);
  long long hi = __mul64hi(a, b);
  if (hi != (lo >> 63)) *overflow = 1;
  return lo;
}

"#;

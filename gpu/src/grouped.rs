//! Hash GROUP BY partial aggregation (the shape of TPC-H Q1): filter,
//! arithmetic and SUM/COUNT/MIN/MAX/AVG per group, in one generated CUDA
//! kernel, with a CPU reference of the same semantics.
//!
//! Keys are integer columns: integers, dates, and the codes of
//! dictionary-coded strings. Each row's keys are packed into one 64-bit
//! group code from the key columns' value ranges (`0` in a key's field
//! stands for NULL), so a hash table slot is claimed with a single
//! compare-and-swap. Keys whose ranges do not pack into 63 bits stay on the
//! CPU.
//!
//! On the device, each warp first combines the rows of equal code among its
//! lanes (`__match_any_sync` and shuffles), then one lane per group updates
//! a per-block table in shared memory; blocks merge into a global table at
//! the end, and the host reads it back. Integer sums are 128-bit in the
//! tables, so they never overflow; 64-bit overflow of a row's expression is
//! reported as [`GpuError::Overflow`], as in [`crate::FusedAggregate`].

use std::collections::HashMap;
use std::fmt::Write as _;

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::batch::{DeviceBatch, DeviceValues, HostBatch};
use crate::device::GpuDevice;
use crate::error::GpuError;
use crate::expr::{CudaEmitter, GpuExpr, GpuType, Value, evaluate};
use crate::fused::{
    Accumulator, Aggregate, AggregateFunction, AggregateValue, BLOCK, FusedAggregate,
    KERNEL_PRELUDE,
};

/// Hash table slots a group code can claim before the table counts as
/// full: more groups than this stay on the CPU.
const MAX_TABLE_SLOTS: u64 = 1 << 25;

/// Bytes of shared memory the per-block table may use.
const SHARED_TABLE_BYTES: usize = 40 * 1024;

/// One aggregate's partial state for one group: what a partial aggregate
/// emits and a final one merges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateState {
    /// SUM (the sum, also of AVG), MIN or MAX: [`AggregateValue::Null`]
    /// when no non-NULL input reached the group, and for COUNT.
    pub value: AggregateValue,
    /// Non-NULL inputs (rows, for `COUNT(*)`).
    pub count: u64,
}

/// One group of a [`GroupedAggregate`]'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The key columns' values (`None` is NULL), in key order.
    pub keys: Vec<Option<i64>>,
    /// One state per aggregate, in aggregate order.
    pub states: Vec<AggregateState>,
}

/// `SELECT keys, aggregates FROM batch WHERE filter GROUP BY keys`, on the
/// CPU or a GPU. Results are sorted by key.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedAggregate {
    /// Rows are kept where this is TRUE; `None` keeps every row.
    pub filter: Option<GpuExpr>,
    /// The key columns (indices into the batch), of `Int` type.
    pub keys: Vec<usize>,
    /// The aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
}

/// How the aggregate's words sit in a hash table slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// An integer SUM or AVG: low word, high word, count.
    IntSum,
    /// A float SUM or AVG: sum, count.
    FloatSum,
    /// An integer MIN or MAX: value, count.
    IntExtreme,
    /// A float MIN or MAX: value, count.
    FloatExtreme,
    /// COUNT: count.
    Count,
}

impl Layout {
    fn words(self) -> usize {
        self.initial_words(AggregateFunction::Count).len()
    }

    /// The C initial values of the words, for `function`.
    fn initial_words(self, function: AggregateFunction) -> Vec<&'static str> {
        let min = function == AggregateFunction::Min;
        match self {
            Layout::IntSum => vec!["0ull", "0ull", "0ull"],
            Layout::FloatSum => vec!["0ull", "0ull"],
            Layout::Count => vec!["0ull"],
            Layout::IntExtreme if min => vec!["(unsigned long long)EMBER_LLONG_MAX", "0ull"],
            Layout::IntExtreme => vec!["(unsigned long long)EMBER_LLONG_MIN", "0ull"],
            // +inf and -inf.
            Layout::FloatExtreme if min => vec!["0x7ff0000000000000ull", "0ull"],
            Layout::FloatExtreme => vec!["0xfff0000000000000ull", "0ull"],
        }
    }
}

/// How each key's field sits in the 64-bit group code.
#[derive(Debug, Clone, PartialEq)]
struct KeyPacking {
    /// Per key: the smallest value (field `1`).
    min: Vec<i64>,
    /// Per key: the field's lowest bit.
    shift: Vec<u32>,
    /// Per key: the field's width.
    bits: Vec<u32>,
    /// Groups there can be at most (before counting rows).
    bound: u128,
}

impl KeyPacking {
    /// The packing of keys with these value ranges, or why there is none.
    fn new(ranges: &[Option<(i64, i64)>]) -> Result<KeyPacking, GpuError> {
        let mut packing = KeyPacking {
            min: Vec::new(),
            shift: Vec::new(),
            bits: Vec::new(),
            bound: 1,
        };
        let mut shift = 0u32;
        for range in ranges {
            let (lo, hi) = range.unwrap_or((0, 0));
            // Fields 1..=span are values, 0 is NULL.
            let span = (hi as i128 - lo as i128 + 1) as u128;
            let bits = 128 - span.leading_zeros();
            packing.min.push(lo);
            packing.shift.push(shift);
            packing.bits.push(bits);
            packing.bound = packing.bound.saturating_mul(span + 1);
            shift += bits;
            if shift > 63 {
                return Err(GpuError::Unsupported(
                    "GROUP BY keys whose value ranges need more than 63 bits".to_string(),
                ));
            }
        }
        Ok(packing)
    }

    /// The keys of group `code`.
    fn unpack(&self, code: u64) -> Vec<Option<i64>> {
        (0..self.min.len())
            .map(|k| {
                let field = (code >> self.shift[k]) & ((1u64 << self.bits[k]) - 1);
                (field != 0).then(|| (self.min[k] as i128 + field as i128 - 1) as i64)
            })
            .collect()
    }
}

impl GroupedAggregate {
    /// The name of the generated aggregation kernel.
    pub const KERNEL: &'static str = "ember_grouped_aggregate";
    /// The name of the generated kernel that empties the global table.
    pub const INIT_KERNEL: &'static str = "ember_grouped_init";

    /// Checks the filter, the aggregates and the keys over `types`.
    pub fn validate(&self, types: &[GpuType]) -> Result<(), GpuError> {
        self.ungrouped().validate(types)?;
        if self.keys.is_empty() {
            return Err(GpuError::Unsupported("GROUP BY without keys".to_string()));
        }
        if self.aggregates.len() > 64 {
            return Err(GpuError::Unsupported(
                "more than 64 aggregates per GROUP BY".to_string(),
            ));
        }
        for &key in &self.keys {
            match types.get(key) {
                Some(GpuType::Int { .. }) => {}
                Some(other) => {
                    return Err(GpuError::Unsupported(format!(
                        "a GROUP BY key of type {other:?}"
                    )));
                }
                None => {
                    return Err(GpuError::Unsupported(format!(
                        "GROUP BY key column {key} outside the batch"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The same filter and aggregates without the grouping.
    fn ungrouped(&self) -> FusedAggregate {
        FusedAggregate {
            filter: self.filter.clone(),
            aggregates: self.aggregates.clone(),
        }
    }

    fn input_type(&self, index: usize, types: &[GpuType]) -> Result<GpuType, GpuError> {
        match &self.aggregates[index].input {
            Some(input) => input.data_type(types),
            None => Ok(GpuType::Int { scale: 0 }),
        }
    }

    fn layouts(&self, types: &[GpuType]) -> Result<Vec<Layout>, GpuError> {
        (0..self.aggregates.len())
            .map(|i| {
                let float = self.input_type(i, types)? == GpuType::Float;
                Ok(match (self.aggregates[i].function, float) {
                    (AggregateFunction::Count, _) => Layout::Count,
                    (AggregateFunction::Sum | AggregateFunction::Avg, false) => Layout::IntSum,
                    (AggregateFunction::Sum | AggregateFunction::Avg, true) => Layout::FloatSum,
                    (_, false) => Layout::IntExtreme,
                    (_, true) => Layout::FloatExtreme,
                })
            })
            .collect()
    }

    /// The CPU reference: row by row, with 128-bit integers.
    pub fn run_cpu(&self, batch: &HostBatch) -> Result<Vec<Group>, GpuError> {
        let types = batch.types();
        self.validate(&types)?;
        let column = |c: usize, row: usize| batch.columns[c].value(row);
        let mut groups: HashMap<Vec<Option<i64>>, Vec<Accumulator>> = HashMap::new();
        for row in 0..batch.rows {
            if let Some(filter) = &self.filter
                && evaluate(filter, &types, row, &column)? != Some(Value::Bool(true))
            {
                continue;
            }
            let key: Vec<Option<i64>> = self
                .keys
                .iter()
                .map(|&k| match batch.columns[k].value(row) {
                    Some(Value::Int(v)) => Some(v as i64),
                    _ => None,
                })
                .collect();
            let mut values = Vec::with_capacity(self.aggregates.len());
            for aggregate in &self.aggregates {
                values.push(match &aggregate.input {
                    None => Some(Value::Bool(true)),
                    Some(input) => evaluate(input, &types, row, &column)?,
                });
            }
            let accumulators = groups
                .entry(key)
                .or_insert_with(|| vec![Accumulator::default(); self.aggregates.len()]);
            for ((aggregate, acc), value) in self.aggregates.iter().zip(accumulators).zip(values) {
                if let Some(value) = value {
                    acc.update(aggregate.function, value);
                }
            }
        }
        let mut result = groups
            .into_iter()
            .map(|(keys, accumulators)| {
                let states = accumulators
                    .iter()
                    .enumerate()
                    .map(|(i, acc)| self.state(i, &types, acc))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Group { keys, states })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        result.sort_by(|a, b| a.keys.cmp(&b.keys));
        Ok(result)
    }

    /// Aggregate `index`'s state from its accumulator.
    fn state(
        &self,
        index: usize,
        types: &[GpuType],
        acc: &Accumulator,
    ) -> Result<AggregateState, GpuError> {
        let scale = match self.input_type(index, types)? {
            GpuType::Int { scale } => scale,
            _ => 0,
        };
        let value = match (self.aggregates[index].function, acc.int, acc.float) {
            (AggregateFunction::Count, _, _) => AggregateValue::Null,
            _ if acc.count == 0 => AggregateValue::Null,
            (_, Some(value), _) => AggregateValue::Int { value, scale },
            (_, None, Some(v)) => AggregateValue::Float(v),
            _ => AggregateValue::Null,
        };
        Ok(AggregateState {
            value,
            count: acc.count,
        })
    }

    /// Slots of the per-block shared-memory table for `words` words per
    /// slot: a power of two, at most 256.
    fn shared_slots(words: usize) -> Result<usize, GpuError> {
        let fit = SHARED_TABLE_BYTES / ((words + 1) * 8);
        if fit < 16 {
            return Err(GpuError::Unsupported(format!(
                "{words} aggregate words per group on the GPU"
            )));
        }
        Ok(1usize << (usize::BITS - 1 - fit.min(256).leading_zeros()))
    }

    /// The CUDA C source of this query's kernels over columns of `types`.
    pub fn kernel_source(&self, types: &[GpuType]) -> Result<String, GpuError> {
        self.validate(types)?;
        let layouts = self.layouts(types)?;
        let words: usize = layouts.iter().map(|l| l.words()).sum();
        let slots = Self::shared_slots(words)?;
        let mut src = String::from(KERNEL_PRELUDE);
        src.push_str(TABLE_HELPERS);

        // Word offsets and initial values.
        let mut offsets = Vec::new();
        let mut inits: Vec<&str> = Vec::new();
        for (layout, aggregate) in layouts.iter().zip(&self.aggregates) {
            offsets.push(inits.len());
            inits.extend(layout.initial_words(aggregate.function));
        }

        // The global table's initialization.
        let _ = writeln!(
            src,
            "extern \"C\" __global__ void {}(unsigned long long* keys, unsigned long long* acc, long long cap) {{\n\
             \x20 for (long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x; s < cap; s += (long long)blockDim.x * gridDim.x) {{\n\
             \x20   keys[s] = EMBER_EMPTY;",
            Self::INIT_KERNEL
        );
        for (w, init) in inits.iter().enumerate() {
            let _ = writeln!(src, "    acc[{w}LL * cap + s] = {init};");
        }
        src.push_str("  }\n}\n\n");

        // The aggregation kernel.
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
        params.push("long long rows".to_string());
        for k in 0..self.keys.len() {
            params.push(format!("long long kmin{k}"));
            params.push(format!("int kshift{k}"));
        }
        params.push("unsigned long long* __restrict__ gkeys".to_string());
        params.push("unsigned long long* __restrict__ gacc".to_string());
        params.push("long long cap".to_string());
        params.push("int* __restrict__ overflow_out".to_string());
        let _ = writeln!(
            src,
            "extern \"C\" __global__ void {}({}) {{",
            Self::KERNEL,
            params.join(", ")
        );
        let _ = writeln!(
            src,
            "  __shared__ unsigned long long skeys[{slots}];\n  __shared__ unsigned long long sacc[{}];",
            (words * slots).max(1)
        );
        let _ = writeln!(
            src,
            "  for (int s = threadIdx.x; s < {slots}; s += blockDim.x) {{\n    skeys[s] = EMBER_EMPTY;"
        );
        for (w, init) in inits.iter().enumerate() {
            let _ = writeln!(src, "    sacc[{w} * {slots} + s] = {init};");
        }
        src.push_str(
            "  }\n  __syncthreads();\n  int overflow = 0;\n  const int lane = threadIdx.x & 31;\n",
        );
        src.push_str(
            "  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);\n\
             \x20 for (long long base = ((long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * 32;\n\
             \x20      base < rows; base += warps * 32) {\n\
             \x20   const long long row = base + lane;\n\
             \x20   bool pass = row < rows;\n\
             \x20   unsigned long long code = 0;\n",
        );
        for (i, layout) in layouts.iter().enumerate() {
            let c_type = match layout {
                Layout::FloatSum | Layout::FloatExtreme => "double",
                _ => "long long",
            };
            let _ = writeln!(src, "    {c_type} a{i} = 0; bool h{i} = false;");
        }
        src.push_str("    if (pass) {\n");
        if let Some(filter) = &self.filter {
            let mut emitter = CudaEmitter::new(types);
            let n = emitter.emit(filter)?;
            src.push_str("    {\n");
            src.push_str(&emitter.code);
            let _ = writeln!(src, "    pass = ok{n} && v{n};\n    }}");
        }
        src.push_str("    }\n    if (pass) {\n");
        for (k, &column) in self.keys.iter().enumerate() {
            let _ = writeln!(
                src,
                "    if (is_valid(valid{column}, row)) code |= (unsigned long long)(c{column}[row] - kmin{k} + 1) << kshift{k};"
            );
        }
        for (i, aggregate) in self.aggregates.iter().enumerate() {
            let Some(input) = &aggregate.input else {
                let _ = writeln!(src, "    h{i} = true;");
                continue;
            };
            let mut emitter = CudaEmitter::new(types);
            let n = emitter.emit(input)?;
            src.push_str("    {\n");
            src.push_str(&emitter.code);
            if layouts[i] == Layout::Count {
                let _ = writeln!(src, "    h{i} = ok{n};\n    }}");
            } else {
                let _ = writeln!(src, "    h{i} = ok{n}; if (ok{n}) a{i} = v{n};\n    }}");
            }
        }
        src.push_str("    }\n");
        // Combine equal codes within the warp, then one lane per group
        // updates the block's table (or the global one when it is full).
        src.push_str(
            "    const unsigned active = __ballot_sync(0xffffffffu, pass);\n\
             \x20   if (pass) {\n\
             \x20     const unsigned peers = __match_any_sync(active, code);\n",
        );
        for (i, layout) in layouts.iter().enumerate() {
            let _ = match layout {
                Layout::IntSum => writeln!(
                    src,
                    "      unsigned long long lo{i} = 0, hi{i} = 0, n{i} = 0;"
                ),
                Layout::FloatSum => {
                    writeln!(src, "      double s{i} = 0.0; unsigned long long n{i} = 0;")
                }
                Layout::IntExtreme => {
                    let init = if self.aggregates[i].function == AggregateFunction::Min {
                        "EMBER_LLONG_MAX"
                    } else {
                        "EMBER_LLONG_MIN"
                    };
                    writeln!(
                        src,
                        "      long long m{i} = {init}; unsigned long long n{i} = 0;"
                    )
                }
                Layout::FloatExtreme => {
                    let init = if self.aggregates[i].function == AggregateFunction::Min {
                        "EMBER_INF"
                    } else {
                        "-EMBER_INF"
                    };
                    writeln!(
                        src,
                        "      double m{i} = {init}; unsigned long long n{i} = 0;"
                    )
                }
                Layout::Count => writeln!(src, "      unsigned long long n{i} = 0;"),
            };
        }
        // Which aggregates have a non-NULL input, one bit each, so that one
        // shuffle per lane carries them all.
        let bits: Vec<String> = (0..layouts.len())
            .map(|i| format!("((unsigned long long)h{i} << {i})"))
            .collect();
        let _ = writeln!(
            src,
            "      const unsigned long long hbits = {};",
            if bits.is_empty() {
                "0ull".to_string()
            } else {
                bits.join(" | ")
            }
        );
        src.push_str(
            "      for (unsigned p = peers; p != 0; p &= p - 1) {\n\
             \x20       const int from = __ffs(p) - 1;\n\
             \x20       const unsigned long long hv = __shfl_sync(peers, hbits, from);\n",
        );
        for (i, layout) in layouts.iter().enumerate() {
            let _ = writeln!(src, "        const bool hv{i} = (hv >> {i}) & 1ull;");
            let min = self.aggregates[i].function == AggregateFunction::Min;
            let _ = match layout {
                Layout::Count => writeln!(src, "        n{i} += hv{i};"),
                Layout::IntSum => writeln!(
                    src,
                    "        {{ const long long x = __shfl_sync(peers, a{i}, from); if (hv{i}) {{ add128_local(&lo{i}, &hi{i}, x); n{i} += 1; }} }}"
                ),
                Layout::FloatSum => writeln!(
                    src,
                    "        {{ const double x = __shfl_sync(peers, a{i}, from); if (hv{i}) {{ s{i} += x; n{i} += 1; }} }}"
                ),
                Layout::IntExtreme | Layout::FloatExtreme => {
                    let c_type = if *layout == Layout::IntExtreme {
                        "long long"
                    } else {
                        "double"
                    };
                    let pick = match (layout, min) {
                        (Layout::IntExtreme, true) => "min",
                        (Layout::IntExtreme, false) => "max",
                        (_, true) => "fmin",
                        (_, false) => "fmax",
                    };
                    writeln!(
                        src,
                        "        {{ const {c_type} x = __shfl_sync(peers, a{i}, from); if (hv{i}) {{ m{i} = {pick}(m{i}, x); n{i} += 1; }} }}"
                    )
                }
            };
        }
        src.push_str("      }\n");
        let _ = writeln!(
            src,
            "      if (lane == __ffs(peers) - 1) {{\n\
             \x20       long long slot = find_slot(skeys, {slots}, code);\n\
             \x20       unsigned long long* acc = sacc; long long stride = {slots};\n\
             \x20       if (slot < 0) {{ slot = find_slot(gkeys, cap, code); acc = gacc; stride = cap; }}\n\
             \x20       if (slot < 0) overflow |= 2; else {{"
        );
        for (i, layout) in layouts.iter().enumerate() {
            let w = offsets[i];
            let at = |word: usize| format!("&acc[{}LL * stride + slot]", w + word);
            let min = self.aggregates[i].function == AggregateFunction::Min;
            let _ = match layout {
                Layout::Count => writeln!(src, "          if (n{i}) atomicAdd({}, n{i});", at(0)),
                Layout::IntSum => writeln!(
                    src,
                    "          if (n{i}) {{ add128({}, {}, lo{i}, hi{i}); atomicAdd({}, n{i}); }}",
                    at(0),
                    at(1),
                    at(2)
                ),
                Layout::FloatSum => writeln!(
                    src,
                    "          if (n{i}) {{ atomicAdd((double*){}, s{i}); atomicAdd({}, n{i}); }}",
                    at(0),
                    at(1)
                ),
                Layout::IntExtreme => writeln!(
                    src,
                    "          if (n{i}) {{ {}((long long*){}, m{i}); atomicAdd({}, n{i}); }}",
                    if min { "atomicMin" } else { "atomicMax" },
                    at(0),
                    at(1)
                ),
                Layout::FloatExtreme => writeln!(
                    src,
                    "          if (n{i}) {{ {}({}, m{i}); atomicAdd({}, n{i}); }}",
                    if min { "min_double" } else { "max_double" },
                    at(0),
                    at(1)
                ),
            };
        }
        src.push_str("        }\n      }\n    }\n  }\n  __syncthreads();\n");
        // Merge the block's table into the global one.
        let _ = writeln!(
            src,
            "  for (int s = threadIdx.x; s < {slots}; s += blockDim.x) {{\n\
             \x20   const unsigned long long code = skeys[s];\n\
             \x20   if (code == EMBER_EMPTY) continue;\n\
             \x20   const long long g = find_slot(gkeys, cap, code);\n\
             \x20   if (g < 0) {{ overflow |= 2; continue; }}"
        );
        for (i, layout) in layouts.iter().enumerate() {
            let w = offsets[i];
            let from = |word: usize| format!("sacc[{} * {slots} + s]", w + word);
            let to = |word: usize| format!("&gacc[{}LL * cap + g]", w + word);
            let min = self.aggregates[i].function == AggregateFunction::Min;
            let count_word = layout.words() - 1;
            let merge = match layout {
                Layout::Count => String::new(),
                Layout::IntSum => {
                    format!("add128({}, {}, {}, {});", to(0), to(1), from(0), from(1))
                }
                Layout::FloatSum => format!(
                    "atomicAdd((double*){}, __longlong_as_double((long long){}));",
                    to(0),
                    from(0)
                ),
                Layout::IntExtreme => format!(
                    "{}((long long*){}, (long long){});",
                    if min { "atomicMin" } else { "atomicMax" },
                    to(0),
                    from(0)
                ),
                Layout::FloatExtreme => format!(
                    "{}({}, __longlong_as_double((long long){}));",
                    if min { "min_double" } else { "max_double" },
                    to(0),
                    from(0)
                ),
            };
            let _ = writeln!(
                src,
                "    if ({c}) {{ {merge} atomicAdd({}, {c}); }}",
                to(count_word),
                c = from(count_word)
            );
        }
        src.push_str("  }\n  if (overflow) atomicOr(overflow_out, overflow);\n}\n");
        Ok(src)
    }

    /// Runs on `device` over a batch already in its memory.
    pub fn run_gpu(&self, device: &GpuDevice, batch: &DeviceBatch) -> Result<Vec<Group>, GpuError> {
        let types = batch.types();
        let layouts = self.layouts(&types)?;
        let words: usize = layouts.iter().map(|l| l.words()).sum();
        let ranges: Vec<_> = self.keys.iter().map(|&k| batch.columns[k].range).collect();
        let packing = KeyPacking::new(&ranges)?;
        let groups = packing.bound.min(batch.rows.max(1) as u128) as u64;
        let cap = (groups * 2).max(64).next_power_of_two();
        if cap > MAX_TABLE_SLOTS {
            return Err(GpuError::Unsupported(format!(
                "up to {groups} groups (the GPU table holds {})",
                MAX_TABLE_SLOTS / 2
            )));
        }
        let table_bytes = cap as usize * (words + 1) * 8;
        device.reserve(table_bytes)?;

        let source = self.kernel_source(&types)?;
        let init = device.kernel(Self::INIT_KERNEL, &source)?;
        let kernel = device.kernel(Self::KERNEL, &source)?;
        let stream = device.stream();
        let mut keys = stream.alloc_zeros::<u64>(cap as usize)?;
        let mut acc = stream.alloc_zeros::<u64>((cap as usize * words).max(1))?;
        let mut overflow = stream.alloc_zeros::<i32>(1)?;
        let cap_arg = cap as i64;
        let sms = device.multiprocessors()?;

        let mut launch = stream.launch_builder(&init);
        launch.arg(&mut keys).arg(&mut acc).arg(&cap_arg);
        let config = LaunchConfig {
            grid_dim: (
                (cap as usize).div_ceil(BLOCK as usize).clamp(1, sms * 8) as u32,
                1,
                1,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the init kernel takes (keys, acc, cap), as pushed, and
        // writes keys[0..cap] and acc[0..words * cap], both allocated so.
        unsafe { launch.launch(config) }?;

        let rows = batch.rows as i64;
        let null: u64 = 0;
        let kmin: Vec<i64> = packing.min.clone();
        let kshift: Vec<i32> = packing.shift.iter().map(|&s| s as i32).collect();
        let mut launch = stream.launch_builder(&kernel);
        for column in &batch.columns {
            match &column.values {
                DeviceValues::Int(v) => launch.arg(v),
                DeviceValues::Float(v) => launch.arg(v),
            };
            match &column.validity {
                Some(bits) => launch.arg(bits),
                None => launch.arg(&null),
            };
        }
        launch.arg(&rows);
        for k in 0..self.keys.len() {
            launch.arg(&kmin[k]).arg(&kshift[k]);
        }
        launch
            .arg(&mut keys)
            .arg(&mut acc)
            .arg(&cap_arg)
            .arg(&mut overflow);
        let blocks = (batch.rows.div_ceil(BLOCK as usize)).clamp(1, sms * 4) as u32;
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the parameters are pushed in the kernel's order: per column
        // a value pointer and a validity pointer (or null), rows, per key its
        // minimum and shift, the global keys (cap), accumulators (words *
        // cap), cap, and the overflow flag.
        unsafe { launch.launch(config) }?;
        let keys = stream.clone_dtoh(&keys)?;
        let acc = stream.clone_dtoh(&acc)?;
        let overflow = stream.clone_dtoh(&overflow)?;
        match overflow.first().copied().unwrap_or(0) {
            0 => {}
            flags if flags & 2 != 0 => {
                return Err(GpuError::Unsupported(
                    "more groups than the GPU hash table holds".to_string(),
                ));
            }
            _ => return Err(GpuError::Overflow),
        }
        self.read_table(&types, &layouts, &packing, &keys, &acc, cap as usize)
    }

    /// The groups in the global table the kernel left.
    fn read_table(
        &self,
        types: &[GpuType],
        layouts: &[Layout],
        packing: &KeyPacking,
        keys: &[u64],
        acc: &[u64],
        cap: usize,
    ) -> Result<Vec<Group>, GpuError> {
        let mut groups = Vec::new();
        for (slot, &code) in keys.iter().enumerate() {
            if code == u64::MAX {
                continue;
            }
            let mut word = 0;
            let mut states = Vec::with_capacity(layouts.len());
            for (i, layout) in layouts.iter().enumerate() {
                let at = |w: usize| acc[(word + w) * cap + slot];
                let accumulator = match layout {
                    Layout::Count => Accumulator {
                        count: at(0),
                        ..Accumulator::default()
                    },
                    Layout::IntSum => Accumulator {
                        int: Some(((at(1) as i64 as i128) << 64) | at(0) as i128),
                        count: at(2),
                        ..Accumulator::default()
                    },
                    Layout::IntExtreme => Accumulator {
                        int: Some(at(0) as i64 as i128),
                        count: at(1),
                        ..Accumulator::default()
                    },
                    Layout::FloatSum | Layout::FloatExtreme => Accumulator {
                        float: Some(f64::from_bits(at(0))),
                        count: at(1),
                        ..Accumulator::default()
                    },
                };
                word += layout.words();
                states.push(self.state(i, types, &accumulator)?);
            }
            groups.push(Group {
                keys: packing.unpack(code),
                states,
            });
        }
        groups.sort_by(|a, b| a.keys.cmp(&b.keys));
        Ok(groups)
    }
}

/// Hash table helpers of the grouped kernels.
const TABLE_HELPERS: &str = r#"#define EMBER_EMPTY 0xffffffffffffffffull

// The slot holding `code`, claimed if need be; -1 when the table is full.
__device__ __forceinline__ long long find_slot(unsigned long long* keys, long long cap, unsigned long long code) {
  const unsigned long long start = (code * 0x9E3779B97F4A7C15ull) >> 17;
  for (long long i = 0; i < cap; ++i) {
    const long long s = (long long)((start + (unsigned long long)i) & (unsigned long long)(cap - 1));
    const unsigned long long k = ((volatile unsigned long long*)keys)[s];
    if (k == code) return s;
    if (k == EMBER_EMPTY) {
      const unsigned long long old = atomicCAS(&keys[s], EMBER_EMPTY, code);
      if (old == EMBER_EMPTY || old == code) return s;
    }
  }
  return -1;
}
// Adds a sign-extended 64-bit value to a 128-bit (lo, hi) pair.
__device__ __forceinline__ void add128_local(unsigned long long* lo, unsigned long long* hi, long long x) {
  const unsigned long long ux = (unsigned long long)x;
  *lo += ux;
  *hi += (*lo < ux ? 1ull : 0ull) + (x < 0 ? 0xffffffffffffffffull : 0ull);
}
// Adds the 128-bit (l, h) to the 128-bit pair at (lo, hi), atomically per word.
__device__ __forceinline__ void add128(unsigned long long* lo, unsigned long long* hi, unsigned long long l, unsigned long long h) {
  const unsigned long long old = atomicAdd(lo, l);
  const unsigned long long carry = (old + l) < old ? 1ull : 0ull;
  const unsigned long long add = h + carry;
  if (add) atomicAdd(hi, add);
}
__device__ __forceinline__ void min_double(unsigned long long* at, double v) {
  unsigned long long old = *(volatile unsigned long long*)at;
  while (v < __longlong_as_double((long long)old)) {
    const unsigned long long prev = atomicCAS(at, old, (unsigned long long)__double_as_longlong(v));
    if (prev == old) break;
    old = prev;
  }
}
__device__ __forceinline__ void max_double(unsigned long long* at, double v) {
  unsigned long long old = *(volatile unsigned long long*)at;
  while (v > __longlong_as_double((long long)old)) {
    const unsigned long long prev = atomicCAS(at, old, (unsigned long long)__double_as_longlong(v));
    if (prev == old) break;
    old = prev;
  }
}

"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pack_into_one_code_and_back_with_nulls() {
        let packing = KeyPacking::new(&[Some((-5, 10)), None, Some((0, 2))]).unwrap();
        // -5..=10 is 16 values + NULL: 5 bits; the all-NULL key 1 bit; 0..=2 2 bits.
        assert_eq!(packing.bits, vec![5, 1, 2]);
        assert_eq!(packing.bound, 17 * 2 * 4);
        for keys in [
            vec![Some(-5), None, Some(2)],
            vec![None, None, None],
            vec![Some(10), None, Some(0)],
        ] {
            let code = keys
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    v.map_or(0u64, |v| {
                        ((v - packing.min[k] + 1) as u64) << packing.shift[k]
                    })
                })
                .fold(0, |a, b| a | b);
            assert_eq!(packing.unpack(code), keys);
        }
        let wide = KeyPacking::new(&[Some((i64::MIN, i64::MAX))]);
        assert!(wide.is_err());
        let two = KeyPacking::new(&[Some((0, 1 << 40)), Some((0, 1 << 30))]);
        assert!(two.is_err(), "72 bits do not pack");
    }
}

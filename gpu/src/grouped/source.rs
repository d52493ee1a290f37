//! The CUDA C source of [`GroupedAggregate`]'s kernels: the global table's
//! initialization and the aggregation itself.

use std::fmt::Write as _;

use super::{GroupedAggregate, Layout, SHARED_TABLE_BYTES};
use crate::error::GpuError;
use crate::expr::{CudaEmitter, GpuType};
use crate::fused::{AggregateFunction, KERNEL_PRELUDE, column_params};

impl GroupedAggregate {
    /// Slots of the per-block shared-memory table for `words` words per
    /// slot: a power of two, at most 256.
    pub(super) fn shared_slots(words: usize) -> Result<usize, GpuError> {
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
        let mut params = column_params(types);
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

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

mod source;

use std::collections::HashMap;

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::batch::{DeviceBatch, HostBatch};
use crate::device::GpuDevice;
use crate::error::GpuError;
use crate::expr::{GpuExpr, GpuType, Value, evaluate};
use crate::fused::{
    Accumulator, Aggregate, AggregateFunction, AggregateValue, BLOCK, FusedAggregate, push_columns,
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
        push_columns(&mut launch, batch, &null);
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

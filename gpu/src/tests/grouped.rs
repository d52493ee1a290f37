//! GROUP BY aggregation: the CPU reference against a direct computation on
//! the Arrow arrays, key packing, the generated kernels with NVRTC, and the
//! device against the CPU reference where a GPU is present.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    StringViewArray,
};
use arrow::datatypes::{Date32Type, Decimal128Type, Float64Type, Int64Type};

use super::Rng;
use crate::{
    Aggregate, AggregateFunction, AggregateState, AggregateValue, GpuExpr, Group, GroupedAggregate,
    HostBatch, compile_ptx,
};

const SHIP_LIMIT: i32 = 10_471; // 1998-09-02

/// lineitem-like columns: returnflag (Utf8View), linestatus (Utf8),
/// quantity, extendedprice, discount (Decimal(15,2)), shipdate (Date32), a
/// Float64 weight, and an Int64 key of `int_groups` values around zero.
fn columns(rows: usize, seed: u64, null_one_in: u64, int_groups: u64) -> Vec<ArrayRef> {
    let mut rng = Rng(seed);
    let flag: StringViewArray = (0..rows)
        .map(|_| {
            let v = ["A", "N", "R"][rng.below(3) as usize];
            rng.maybe(null_one_in, v)
        })
        .collect();
    let status: StringArray = (0..rows)
        .map(|_| {
            let v = ["F", "O"][rng.below(2) as usize];
            rng.maybe(null_one_in, v)
        })
        .collect();
    let mut decimal = |lo: u64, span: u64| -> ArrayRef {
        let a: Decimal128Array = (0..rows)
            .map(|_| {
                let v = (lo + rng.below(span)) as i128;
                rng.maybe(null_one_in, v)
            })
            .collect();
        Arc::new(a.with_precision_and_scale(15, 2).unwrap())
    };
    let quantity = decimal(100, 5_000);
    let price = decimal(90_000, 10_400_000);
    let discount = decimal(0, 11);
    let shipdate: Date32Array = (0..rows)
        .map(|_| {
            let v = 8035 + rng.below(2526) as i32;
            rng.maybe(null_one_in, v)
        })
        .collect();
    let weight: Float64Array = (0..rows)
        .map(|_| {
            let v = rng.below(1_000_000) as f64 / 1000.0 - 250.0;
            rng.maybe(null_one_in, v)
        })
        .collect();
    let key: Int64Array = (0..rows)
        .map(|_| {
            let v = rng.below(int_groups) as i64 - (int_groups / 2) as i64;
            rng.maybe(null_one_in, v)
        })
        .collect();
    vec![
        Arc::new(flag),
        Arc::new(status),
        quantity,
        price,
        discount,
        Arc::new(shipdate),
        Arc::new(weight),
        Arc::new(key),
    ]
}

/// Q1's shape: `GROUP BY keys` over `shipdate <= SHIP_LIMIT`, with
/// aggregates of every kind.
fn q1_query(keys: Vec<usize>) -> GroupedAggregate {
    let (quantity, price, discount, shipdate, weight) = (
        GpuExpr::col(2),
        GpuExpr::col(3),
        GpuExpr::col(4),
        GpuExpr::col(5),
        GpuExpr::col(6),
    );
    GroupedAggregate {
        filter: Some(shipdate.lt_eq(GpuExpr::int(SHIP_LIMIT as i64))),
        keys,
        aggregates: vec![
            Aggregate::new(AggregateFunction::Sum, quantity.clone()),
            Aggregate::new(
                AggregateFunction::Sum,
                price.clone() * (GpuExpr::int(1) - discount.clone()),
            ),
            Aggregate::new(AggregateFunction::Avg, discount.clone()),
            Aggregate::count_star(),
            Aggregate::new(AggregateFunction::Count, discount),
            Aggregate::new(AggregateFunction::Min, price.clone()),
            Aggregate::new(AggregateFunction::Max, quantity),
            Aggregate::new(AggregateFunction::Sum, weight.clone()),
            Aggregate::new(AggregateFunction::Min, weight.clone()),
            Aggregate::new(AggregateFunction::Max, weight),
        ],
    }
}

/// A group key as the test sees it: strings for the string columns.
type Key = Vec<Option<String>>;

/// [`q1_query`] over string keys (returnflag, linestatus) and the Int64
/// key, computed directly on the Arrow arrays.
fn q1_by_hand(batches: &[Vec<ArrayRef>]) -> BTreeMap<Key, Vec<AggregateState>> {
    #[derive(Default, Clone)]
    struct Sums {
        quantity: (i128, u64),
        revenue: (i128, u64),
        discount: (i128, u64),
        rows: u64,
        min_price: Option<i128>,
        prices: u64,
        max_quantity: Option<i128>,
        weight: (f64, u64),
        min_weight: Option<f64>,
        max_weight: Option<f64>,
    }
    let mut groups: BTreeMap<Key, Sums> = BTreeMap::new();
    for batch in batches {
        let flag = arrow::compute::cast(&batch[0], &arrow::datatypes::DataType::Utf8).unwrap();
        let flag = flag.as_string::<i32>();
        let status = batch[1].as_string::<i32>();
        let q = batch[2].as_primitive::<Decimal128Type>();
        let p = batch[3].as_primitive::<Decimal128Type>();
        let d = batch[4].as_primitive::<Decimal128Type>();
        let s = batch[5].as_primitive::<Date32Type>();
        let w = batch[6].as_primitive::<Float64Type>();
        let k = batch[7].as_primitive::<Int64Type>();
        for i in 0..q.len() {
            if !(s.is_valid(i) && s.value(i) <= SHIP_LIMIT) {
                continue;
            }
            let key = vec![
                flag.is_valid(i).then(|| flag.value(i).to_string()),
                status.is_valid(i).then(|| status.value(i).to_string()),
                k.is_valid(i).then(|| k.value(i).to_string()),
            ];
            let g = groups.entry(key).or_default();
            g.rows += 1;
            if q.is_valid(i) {
                g.quantity.0 += q.value(i);
                g.quantity.1 += 1;
                g.max_quantity = Some(g.max_quantity.map_or(q.value(i), |m| m.max(q.value(i))));
            }
            if p.is_valid(i) && d.is_valid(i) {
                g.revenue.0 += p.value(i) * (100 - d.value(i));
                g.revenue.1 += 1;
            }
            if d.is_valid(i) {
                g.discount.0 += d.value(i);
                g.discount.1 += 1;
            }
            if p.is_valid(i) {
                g.prices += 1;
                g.min_price = Some(g.min_price.map_or(p.value(i), |m| m.min(p.value(i))));
            }
            if w.is_valid(i) {
                let v = w.value(i);
                g.weight.0 += v;
                g.weight.1 += 1;
                g.min_weight = Some(g.min_weight.map_or(v, |m| m.min(v)));
                g.max_weight = Some(g.max_weight.map_or(v, |m| m.max(v)));
            }
        }
    }
    let int = |(sum, count): (i128, u64), scale| AggregateState {
        value: if count == 0 {
            AggregateValue::Null
        } else {
            AggregateValue::Int { value: sum, scale }
        },
        count,
    };
    let extreme_int = |v: Option<i128>, count| AggregateState {
        value: v.map_or(AggregateValue::Null, |value| AggregateValue::Int {
            value,
            scale: 2,
        }),
        count,
    };
    let extreme_float = |v: Option<f64>, count| AggregateState {
        value: v.map_or(AggregateValue::Null, AggregateValue::Float),
        count,
    };
    let count = |count| AggregateState {
        value: AggregateValue::Null,
        count,
    };
    groups
        .into_iter()
        .map(|(key, g)| {
            let states = vec![
                int(g.quantity, 2),
                int(g.revenue, 4),
                int(g.discount, 2),
                count(g.rows),
                count(g.discount.1),
                extreme_int(g.min_price, g.prices),
                extreme_int(g.max_quantity, g.quantity.1),
                extreme_float((g.weight.1 > 0).then_some(g.weight.0), g.weight.1),
                extreme_float(g.min_weight, g.weight.1),
                extreme_float(g.max_weight, g.weight.1),
            ];
            (key, states)
        })
        .collect()
}

/// The groups with their keys turned back into strings (string columns
/// through their dictionaries).
fn readable(
    host: &HostBatch,
    keys: &[usize],
    groups: Vec<Group>,
) -> BTreeMap<Key, Vec<AggregateState>> {
    groups
        .into_iter()
        .map(|group| {
            let key = group
                .keys
                .iter()
                .zip(keys)
                .map(|(value, &column)| {
                    value.map(|v| match &host.columns[column].dictionary {
                        Some(strings) => strings.value(v as usize).to_string(),
                        None => v.to_string(),
                    })
                })
                .collect();
            (key, group.states)
        })
        .collect()
}

/// Exact for integers and counts; floats within a relative 1e-9 (sums
/// are added in different orders).
fn assert_same_groups(
    expected: &BTreeMap<Key, Vec<AggregateState>>,
    actual: &BTreeMap<Key, Vec<AggregateState>>,
    what: &str,
) {
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>(),
        "{what}: the groups"
    );
    for (key, expected) in expected {
        let actual = &actual[key];
        assert_eq!(expected.len(), actual.len(), "{what}");
        for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
            let same_value = match (e.value, a.value) {
                (AggregateValue::Float(e), AggregateValue::Float(a)) => {
                    (e - a).abs() <= 1e-9 * e.abs().max(a.abs()).max(1.0)
                }
                (e, a) => e == a,
            };
            assert!(
                same_value && e.count == a.count,
                "{what}: group {key:?}, aggregate {i}: expected {e:?}, got {a:?}"
            );
        }
    }
}

fn batches(sizes: &[usize], seed: u64, null_one_in: u64, int_groups: u64) -> Vec<Vec<ArrayRef>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| columns(n, seed + i as u64, null_one_in, int_groups))
        .collect()
}

#[test]
fn cpu_reference_matches_a_direct_computation() {
    for (sizes, null_one_in, int_groups) in [
        (vec![0], 0, 1),
        (vec![1], 0, 1),
        (vec![7, 0, 1023], 5, 3),
        (vec![50_001], 0, 2),
        (vec![4096, 333, 20_000], 3, 1_000),
    ] {
        let input = batches(&sizes, 42, null_one_in, int_groups);
        let host = HostBatch::from_arrow(&input).expect("coalesces");
        let keys = vec![0, 1, 7];
        let actual = q1_query(keys.clone()).run_cpu(&host).expect("CPU runs");
        assert_same_groups(
            &q1_by_hand(&input),
            &readable(&host, &keys, actual),
            &format!("sizes {sizes:?}"),
        );
    }
}

#[test]
fn strings_are_coded_against_a_dictionary_and_sliced_arrays_keep_their_offset() {
    let full = columns(5_000, 3, 4, 10);
    let sliced: Vec<ArrayRef> = full.iter().map(|a| a.slice(777, 2_000)).collect();
    let host = HostBatch::from_arrow(std::slice::from_ref(&sliced)).unwrap();
    assert_eq!(host.rows, 2_000);
    let flags = host.columns[0].dictionary.as_ref().expect("coded");
    let mut seen: Vec<&str> = flags.iter().flatten().collect();
    seen.sort_unstable();
    assert_eq!(seen, ["A", "N", "R"]);
    assert_eq!(host.columns[0].int_range(), Some((0, 2)));
    let keys = vec![0, 1, 7];
    let actual = q1_query(keys.clone()).run_cpu(&host).unwrap();
    assert_same_groups(
        &q1_by_hand(&[sliced]),
        &readable(&host, &keys, actual),
        "sliced",
    );
}

#[test]
fn generated_kernels_compile_with_nvrtc() {
    if !super::test_nvrtc() {
        return;
    }
    let types = HostBatch::from_arrow(&batches(&[1], 1, 2, 5))
        .unwrap()
        .types();
    for keys in [vec![0], vec![0, 1, 7]] {
        let source = q1_query(keys).kernel_source(&types).unwrap();
        for arch in [None, Some((8, 0)), Some((9, 0))] {
            for kernel in [GroupedAggregate::KERNEL, GroupedAggregate::INIT_KERNEL] {
                let ptx = compile_ptx(kernel, &source, arch)
                    .unwrap_or_else(|e| panic!("{arch:?}: {e}\n{source}"));
                assert!(ptx.to_src().contains(kernel));
            }
        }
    }
}

#[test]
fn needs_gpu_matches_the_cpu_reference() {
    let Some(device) = super::test_gpu() else {
        return;
    };
    // Few groups (the shared-memory tables), and many (the global table).
    for (sizes, null_one_in, int_groups) in [
        (vec![0], 0, 1),
        (vec![1], 0, 1),
        (vec![7, 0, 1023], 5, 3),
        (vec![1_000_003], 0, 2),
        (vec![4096, 333, 65_537], 3, 1_000),
        (vec![300_000], 7, 200_000),
    ] {
        let input = batches(&sizes, 9, null_one_in, int_groups);
        let host = HostBatch::from_arrow(&input).unwrap();
        let on_device = host.upload(&device).unwrap();
        for keys in [vec![0, 1], vec![0, 1, 7], vec![7]] {
            let query = q1_query(keys.clone());
            let expected = query.run_cpu(&host).unwrap();
            let actual = query.run_gpu(&device, &on_device).unwrap();
            assert_same_groups(
                &readable(&host, &keys, expected),
                &readable(&host, &keys, actual),
                &format!("GPU, sizes {sizes:?}, keys {keys:?}"),
            );
        }
    }
}

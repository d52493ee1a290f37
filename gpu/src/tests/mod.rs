//! The GPU path's tests. Without a GPU they check the CPU reference against
//! an independent computation on the Arrow arrays, the generated kernels
//! with NVRTC where the library is installed, and detection; with a GPU
//! (`ember.gpu = force` runs) they compare the device with the CPU
//! reference.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Float64Array};
use arrow::datatypes::{Date32Type, Decimal128Type, Float64Type};

use crate::{
    Aggregate, AggregateFunction, AggregateValue, FusedAggregate, GpuDevice, GpuError, GpuExpr,
    GpuMode, HostBatch, compile_ptx, nvrtc_available,
};

mod grouped;

/// A small deterministic generator (splitmix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `Some` except one time in `null_one_in` (never when 0).
    fn maybe<T>(&mut self, null_one_in: u64, value: T) -> Option<T> {
        (null_one_in == 0 || self.below(null_one_in) != 0).then_some(value)
    }
}

const Q6_FROM: i64 = 8766; // 1994-01-01
const Q6_TO: i64 = 9131; // 1995-01-01

/// lineitem-like columns: quantity, extendedprice, discount (Decimal(15,2)),
/// shipdate (Date32) and a Float64 column.
fn lineitem_columns(rows: usize, seed: u64, null_one_in: u64) -> Vec<ArrayRef> {
    let mut rng = Rng(seed);
    let quantity: Decimal128Array = (0..rows)
        .map(|_| {
            let v = (1 + rng.below(50)) as i128 * 100;
            rng.maybe(null_one_in, v)
        })
        .collect();
    let price: Decimal128Array = (0..rows)
        .map(|_| {
            let v = 90_000 + rng.below(10_400_000) as i128;
            rng.maybe(null_one_in, v)
        })
        .collect();
    let discount: Decimal128Array = (0..rows)
        .map(|_| {
            let v = rng.below(11) as i128;
            rng.maybe(null_one_in, v)
        })
        .collect();
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
    vec![
        Arc::new(quantity.with_precision_and_scale(15, 2).unwrap()),
        Arc::new(price.with_precision_and_scale(15, 2).unwrap()),
        Arc::new(discount.with_precision_and_scale(15, 2).unwrap()),
        Arc::new(shipdate),
        Arc::new(weight),
    ]
}

/// TPC-H Q6's filter and revenue, plus aggregates of every kind.
fn q6_query() -> FusedAggregate {
    let (quantity, price, discount, shipdate, weight) = (
        GpuExpr::col(0),
        GpuExpr::col(1),
        GpuExpr::col(2),
        GpuExpr::col(3),
        GpuExpr::col(4),
    );
    FusedAggregate {
        filter: Some(
            shipdate
                .clone()
                .gt_eq(GpuExpr::int(Q6_FROM))
                .and(shipdate.lt(GpuExpr::int(Q6_TO)))
                .and(discount.clone().gt_eq(GpuExpr::decimal(5, 2)))
                .and(discount.clone().lt_eq(GpuExpr::decimal(7, 2)))
                .and(quantity.clone().lt(GpuExpr::int(24))),
        ),
        aggregates: vec![
            Aggregate::new(AggregateFunction::Sum, price.clone() * discount.clone()),
            Aggregate::count_star(),
            Aggregate::new(AggregateFunction::Count, discount.clone()),
            Aggregate::new(AggregateFunction::Min, quantity),
            Aggregate::new(AggregateFunction::Max, price),
            Aggregate::new(AggregateFunction::Avg, discount),
            Aggregate::new(AggregateFunction::Sum, weight.clone()),
            Aggregate::new(AggregateFunction::Min, weight.clone()),
            Aggregate::new(AggregateFunction::Max, weight),
        ],
    }
}

/// The same query computed directly on the Arrow arrays, in 128 bits.
fn q6_by_hand(batches: &[Vec<ArrayRef>]) -> Vec<AggregateValue> {
    let (mut revenue, mut rows, mut discounts, mut discount_sum) = (0i128, 0u64, 0u64, 0i128);
    let (mut min_q, mut max_p): (Option<i128>, Option<i128>) = (None, None);
    let (mut weight_sum, mut weights) = (0f64, 0u64);
    let (mut min_w, mut max_w): (Option<f64>, Option<f64>) = (None, None);
    for batch in batches {
        let q = batch[0].as_primitive::<Decimal128Type>();
        let p = batch[1].as_primitive::<Decimal128Type>();
        let d = batch[2].as_primitive::<Decimal128Type>();
        let s = batch[3].as_primitive::<Date32Type>();
        let w = batch[4].as_primitive::<Float64Type>();
        for i in 0..q.len() {
            let valid = |a: &dyn Array| a.is_valid(i);
            // NULL in any filter column makes the predicate NULL or FALSE.
            if !(valid(s) && valid(d) && valid(q)) {
                continue;
            }
            let (sd, dv, qv) = (s.value(i) as i64, d.value(i), q.value(i));
            if !((Q6_FROM..Q6_TO).contains(&sd) && (5..=7).contains(&dv) && qv < 2400) {
                continue;
            }
            rows += 1;
            discounts += 1;
            discount_sum += dv;
            min_q = Some(min_q.map_or(qv, |m| m.min(qv)));
            if valid(p) {
                revenue += p.value(i) * dv;
                max_p = Some(max_p.map_or(p.value(i), |m| m.max(p.value(i))));
            }
            if valid(w) {
                let wv = w.value(i);
                weight_sum += wv;
                weights += 1;
                min_w = Some(min_w.map_or(wv, |m| m.min(wv)));
                max_w = Some(max_w.map_or(wv, |m| m.max(wv)));
            }
        }
    }
    let int = |v: Option<i128>, scale| {
        v.map_or(AggregateValue::Null, |value| AggregateValue::Int {
            value,
            scale,
        })
    };
    let float = |v: Option<f64>| v.map_or(AggregateValue::Null, AggregateValue::Float);
    vec![
        int((rows > 0 && max_p.is_some()).then_some(revenue), 4),
        AggregateValue::Count(rows),
        AggregateValue::Count(discounts),
        int(min_q, 2),
        int(max_p, 2),
        float((discounts > 0).then(|| discount_sum as f64 / 100.0 / discounts as f64)),
        float((weights > 0).then_some(weight_sum)),
        float(min_w),
        float(max_w),
    ]
}

/// Exact for integers and counts; floats within a relative 1e-9 (sums
/// are added in different orders).
fn assert_same(expected: &[AggregateValue], actual: &[AggregateValue], what: &str) {
    assert_eq!(expected.len(), actual.len(), "{what}");
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        let same = match (e, a) {
            (AggregateValue::Float(e), AggregateValue::Float(a)) => {
                (e - a).abs() <= 1e-9 * e.abs().max(a.abs()).max(1.0)
            }
            _ => e == a,
        };
        assert!(same, "{what}: aggregate {i}: expected {e:?}, got {a:?}");
    }
}

fn batches(sizes: &[usize], seed: u64, null_one_in: u64) -> Vec<Vec<ArrayRef>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| lineitem_columns(n, seed + i as u64, null_one_in))
        .collect()
}

#[test]
fn cpu_reference_matches_a_direct_computation_with_nulls_and_odd_sizes() {
    for (sizes, null_one_in) in [
        (vec![0], 0),
        (vec![1], 0),
        (vec![7, 0, 1023], 5),
        (vec![100_003], 0),
        (vec![4096, 333, 65_537], 3),
    ] {
        let input = batches(&sizes, 42, null_one_in);
        let host = HostBatch::from_arrow(&input).expect("coalesces");
        let actual = q6_query().run_cpu(&host).expect("CPU runs");
        assert_same(&q6_by_hand(&input), &actual, &format!("sizes {sizes:?}"));
    }
}

#[test]
fn sliced_arrays_are_read_from_their_offset() {
    let full = lineitem_columns(10_000, 7, 4);
    let sliced: Vec<ArrayRef> = full.iter().map(|a| a.slice(1_234, 5_555)).collect();
    let host = HostBatch::from_arrow(std::slice::from_ref(&sliced)).unwrap();
    assert_eq!(host.rows, 5_555);
    let actual = q6_query().run_cpu(&host).unwrap();
    assert_same(&q6_by_hand(&[sliced]), &actual, "sliced");
}

#[test]
fn null_logic_is_three_valued() {
    // a = NULL, 1, 2; b = 1, NULL, 5.
    let a: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![None, Some(1), Some(2)]));
    let b: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![Some(1), None, Some(5)]));
    let host = HostBatch::from_arrow(&[vec![a, b]]).unwrap();
    let count_where = |filter: GpuExpr| {
        FusedAggregate {
            filter: Some(filter),
            aggregates: vec![Aggregate::count_star()],
        }
        .run_cpu(&host)
        .unwrap()[0]
    };
    // NULL OR TRUE is TRUE: rows 0 (b = 1 > 0) and 1 (a = 1 > 0), and 2.
    assert_eq!(
        count_where(
            GpuExpr::col(0)
                .gt(GpuExpr::int(0))
                .or(GpuExpr::col(1).gt(GpuExpr::int(0)))
        ),
        AggregateValue::Count(3)
    );
    // NULL AND TRUE is NULL, not TRUE: only row 2.
    assert_eq!(
        count_where(
            GpuExpr::col(0)
                .gt(GpuExpr::int(0))
                .and(GpuExpr::col(1).gt(GpuExpr::int(0)))
        ),
        AggregateValue::Count(1)
    );
    // NOT (NULL) is NULL: only rows where a is known and not > 1: row 1.
    assert_eq!(
        count_where(GpuExpr::Not(Box::new(GpuExpr::col(0).gt(GpuExpr::int(1))))),
        AggregateValue::Count(1)
    );
    assert_eq!(
        count_where(GpuExpr::IsNull(Box::new(GpuExpr::col(1)))),
        AggregateValue::Count(1)
    );
}

#[test]
fn decimal_scales_align_in_comparisons_and_sums() {
    // 1.5 (scale 1) + 0.25 (scale 2) = 1.75; compared with the integer 2.
    let x: ArrayRef = Arc::new(
        Decimal128Array::from(vec![15i128, 25])
            .with_precision_and_scale(10, 1)
            .unwrap(),
    );
    let y: ArrayRef = Arc::new(
        Decimal128Array::from(vec![25i128, 1])
            .with_precision_and_scale(10, 2)
            .unwrap(),
    );
    let host = HostBatch::from_arrow(&[vec![x, y]]).unwrap();
    let query = FusedAggregate {
        filter: Some((GpuExpr::col(0) + GpuExpr::col(1)).lt(GpuExpr::int(2))),
        aggregates: vec![Aggregate::new(
            AggregateFunction::Sum,
            GpuExpr::col(0) + GpuExpr::col(1),
        )],
    };
    // Row 0: 1.75 < 2 kept; row 1: 2.5 + 0.01 = 2.51 dropped.
    assert_eq!(
        query.run_cpu(&host).unwrap(),
        vec![AggregateValue::Int {
            value: 175,
            scale: 2
        }]
    );
}

#[test]
fn sixty_four_bit_overflow_is_reported_not_wrapped() {
    let a: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![i64::MAX / 2 + 1]));
    let host = HostBatch::from_arrow(&[vec![a]]).unwrap();
    let query = FusedAggregate {
        filter: None,
        aggregates: vec![Aggregate::new(
            AggregateFunction::Sum,
            GpuExpr::col(0) * GpuExpr::int(2),
        )],
    };
    assert!(matches!(query.run_cpu(&host), Err(GpuError::Overflow)));
}

#[test]
fn unsupported_types_are_refused_with_the_type_named() {
    let b: ArrayRef = Arc::new(arrow::array::BooleanArray::from(vec![true]));
    let err = HostBatch::from_arrow(&[vec![b]]).unwrap_err().to_string();
    assert!(err.contains("Boolean"), "{err}");
}

/// Set to `1` on a machine that has a GPU (and NVRTC) to turn every test
/// that would skip for want of one into a failure, so that a device run
/// proves the GPU tests ran.
const REQUIRE_GPU_ENV: &str = "EMBER_REQUIRE_GPU";

fn gpu_required() -> bool {
    std::env::var(REQUIRE_GPU_ENV).is_ok_and(|v| v == "1")
}

/// The GPU a `needs_gpu_` test runs on; `None` (the test returns) where
/// there is none, unless `EMBER_REQUIRE_GPU=1` makes that a failure.
/// `scripts/test` leaves these tests out of a run on a machine without a
/// GPU, so that the run's summary counts them as skipped.
pub(crate) fn test_gpu() -> Option<Arc<GpuDevice>> {
    let device = GpuDevice::detect(GpuMode::Auto).unwrap();
    if device.is_none() {
        assert!(!gpu_required(), "{REQUIRE_GPU_ENV}=1, but no GPU was found");
        eprintln!("skipped: no GPU on this machine");
    }
    device
}

/// Whether NVRTC is here for a kernel-compilation test; without it the
/// test returns, unless `EMBER_REQUIRE_GPU=1` makes that a failure.
pub(crate) fn test_nvrtc() -> bool {
    let available = nvrtc_available();
    if !available {
        assert!(
            !gpu_required(),
            "{REQUIRE_GPU_ENV}=1, but libnvrtc is not installed (scripts/install-nvrtc)"
        );
        eprintln!("skipped: libnvrtc is not installed (pip install nvidia-cuda-nvrtc==13.0.*)");
    }
    available
}

#[test]
fn detection_never_panics_and_force_needs_a_gpu() {
    assert!(GpuDevice::detect(GpuMode::Off).unwrap().is_none());
    let auto = GpuDevice::detect(GpuMode::Auto).expect("auto never fails");
    match GpuDevice::detect(GpuMode::Force) {
        Ok(device) => assert!(device.is_some() && auto.is_some()),
        Err(e) => {
            assert!(auto.is_none());
            println!("no GPU here: {e}");
        }
    }
}

#[test]
fn generated_kernels_compile_with_nvrtc() {
    if !test_nvrtc() {
        return;
    }
    let types = HostBatch::from_arrow(&batches(&[1], 1, 2)).unwrap().types();
    let source = q6_query().kernel_source(&types).unwrap();
    for arch in [None, Some((8, 0)), Some((9, 0))] {
        let ptx = compile_ptx(FusedAggregate::KERNEL, &source, arch)
            .unwrap_or_else(|e| panic!("{arch:?}: {e}\n{source}"));
        assert!(ptx.to_src().contains(FusedAggregate::KERNEL));
    }
}

#[test]
fn needs_gpu_matches_the_cpu_reference() {
    let Some(device) = test_gpu() else {
        return;
    };
    for (sizes, null_one_in) in [
        (vec![0], 0),
        (vec![1], 0),
        (vec![7, 0, 1023], 5),
        (vec![1_000_003], 0),
        (vec![4096, 333, 65_537], 3),
    ] {
        let input = batches(&sizes, 9, null_one_in);
        let host = HostBatch::from_arrow(&input).unwrap();
        let expected = q6_query().run_cpu(&host).unwrap();
        let on_device = host.upload(&device).unwrap();
        let actual = q6_query().run_gpu(&device, &on_device).unwrap();
        assert_same(&expected, &actual, &format!("GPU, sizes {sizes:?}"));
    }
    // Overflow on the device is reported too.
    let a: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![i64::MAX / 2 + 1; 3]));
    let host = HostBatch::from_arrow(&[vec![a]]).unwrap();
    let query = FusedAggregate {
        filter: None,
        aggregates: vec![Aggregate::new(AggregateFunction::Sum, GpuExpr::col(0))],
    };
    let on_device = host.upload(&device).unwrap();
    assert!(matches!(
        query.run_gpu(&device, &on_device),
        Err(GpuError::Overflow)
    ));
}

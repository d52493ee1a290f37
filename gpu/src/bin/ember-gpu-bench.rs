//! `ember-gpu-bench`: measures the GPU path on the machine it runs on.
//!
//! * the device's own copy bandwidth (the roof kernels are measured against);
//! * host-to-device throughput from pageable and from pinned memory;
//! * TPC-H Q6 (fused filter + arithmetic + SUM) over lineitem generated
//!   in-process at the given scale factor: kernel time on device-resident
//!   columns (what a GPU-cached table gives), its bandwidth, and the same
//!   query on the CPU with every core, over the same columns in host memory.
//!   Results are checked against the CPU reference; a mismatch exits 1.
//! * TPC-H Q1 (hash GROUP BY over the dictionary-coded returnflag and
//!   linestatus, eight aggregates) the same way: kernel time on
//!   device-resident columns against an all-core CPU loop, results checked.
//!
//! `--gpu force` (the default) makes a missing GPU an error, so that no CPU
//! fallback can pass for a GPU result.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::ArrayRef;
use ember_gpu::{
    Aggregate, AggregateFunction, AggregateState, AggregateValue, ColumnValues, FusedAggregate,
    GpuDevice, GpuExpr, GpuMode, Group, GroupedAggregate, HostBatch,
};
use tpchgen::generators::LineItemGenerator;
use tpchgen_arrow::LineItemArrow;

const USAGE: &str =
    "usage: ember-gpu-bench [--scale-factor SF] [--iterations N] [--gpu off|auto|force]";

struct Options {
    scale_factor: f64,
    iterations: usize,
    mode: GpuMode,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        scale_factor: 10.0,
        iterations: 10,
        mode: GpuMode::Force,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--scale-factor" => {
                options.scale_factor = value("--scale-factor")?
                    .parse()
                    .map_err(|e| format!("--scale-factor: {e}"))?
            }
            "--iterations" => {
                options.iterations = value("--iterations")?
                    .parse()
                    .map_err(|e| format!("--iterations: {e}"))?
            }
            "--gpu" => options.mode = value("--gpu")?.parse()?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(message) = run(&options) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// lineitem's Q6 columns, in kernel order.
const Q6_COLUMNS: &[&str] = &["l_quantity", "l_extendedprice", "l_discount", "l_shipdate"];

/// lineitem's Q1 columns, in kernel order.
const Q1_COLUMNS: &[&str] = &[
    "l_returnflag",
    "l_linestatus",
    "l_quantity",
    "l_extendedprice",
    "l_discount",
    "l_tax",
    "l_shipdate",
];

/// lineitem's `names` columns, generated with one thread per part.
fn lineitem_columns(scale_factor: f64, names: &[&str]) -> Result<HostBatch, String> {
    let parts = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .max(1);
    let per_part: Vec<Result<Vec<Vec<ArrayRef>>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=parts)
            .map(|part| {
                scope.spawn(move || {
                    let generator = LineItemGenerator::new(scale_factor, part as i32, parts as i32);
                    LineItemArrow::new(generator)
                        .with_batch_size(1 << 20)
                        .map(|batch| {
                            let batch = batch.map_err(|e| format!("lineitem: {e}"))?;
                            names
                                .iter()
                                .map(|name| {
                                    batch
                                        .column_by_name(name)
                                        .cloned()
                                        .ok_or_else(|| format!("lineitem has no {name}"))
                                })
                                .collect::<Result<Vec<_>, String>>()
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a generator thread panicked".into()))
            })
            .collect()
    });
    let mut batches: Vec<Vec<ArrayRef>> = Vec::new();
    for part in per_part {
        batches.extend(part?);
    }
    HostBatch::from_arrow(&batches).map_err(|e| e.to_string())
}

/// TPC-H Q6 with the specification's validation parameters.
fn q6() -> FusedAggregate {
    let (quantity, price, discount, shipdate) = (
        GpuExpr::col(0),
        GpuExpr::col(1),
        GpuExpr::col(2),
        GpuExpr::col(3),
    );
    FusedAggregate {
        filter: Some(
            shipdate
                .clone()
                .gt_eq(GpuExpr::int(8766))
                .and(shipdate.lt(GpuExpr::int(9131)))
                .and(discount.clone().gt_eq(GpuExpr::decimal(5, 2)))
                .and(discount.clone().lt_eq(GpuExpr::decimal(7, 2)))
                .and(quantity.lt(GpuExpr::int(24))),
        ),
        aggregates: vec![Aggregate::new(AggregateFunction::Sum, price * discount)],
    }
}

/// Q6 as a tight loop over the host columns with every core: the CPU
/// baseline (faster than any interpreter, so the GPU's lead is not
/// flattered).
fn q6_cpu_all_cores(batch: &HostBatch) -> i128 {
    let column = |i: usize| match &batch.columns[i].values {
        ColumnValues::Int(v) => v.as_slice(),
        ColumnValues::Float(_) => unreachable!("Q6's columns are integers"),
    };
    let (quantity, price, discount, shipdate) = (column(0), column(1), column(2), column(3));
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let chunk = batch.rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..batch.rows)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(batch.rows);
                scope.spawn(move || {
                    let mut sum = 0i128;
                    for i in start..end {
                        let (d, s) = (discount[i], shipdate[i]);
                        if (8766..9131).contains(&s) && (5..=7).contains(&d) && quantity[i] < 2400 {
                            sum += (price[i] * d) as i128;
                        }
                    }
                    sum
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    })
}

/// Seconds each of `runs` calls of `f` took.
fn time_runs<E: std::fmt::Display>(
    runs: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Vec<f64>, String> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f().map_err(|e| e.to_string())?;
            Ok(started.elapsed().as_secs_f64())
        })
        .collect()
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn gib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / (1u64 << 30) as f64
}

fn run(options: &Options) -> Result<(), String> {
    let device = GpuDevice::detect(options.mode)
        .map_err(|e| e.to_string())?
        .ok_or("no GPU (ember.gpu = off or none found); nothing to measure")?;
    let (free, total) = device.memory().map_err(|e| e.to_string())?;
    println!("# ember-gpu-bench");
    println!(
        "device: {} (compute capability {}.{}, {} SMs, {:.1} GiB, {:.1} GiB free)",
        device.name(),
        device.compute_capability().0,
        device.compute_capability().1,
        device.multiprocessors().map_err(|e| e.to_string())?,
        total as f64 / (1u64 << 30) as f64,
        free as f64 / (1u64 << 30) as f64
    );
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("host: {cpus} CPU threads");
    let stream = device.stream();

    // 1. Device copy bandwidth: reads and writes 1 GiB each.
    let words = (1usize << 30) / 8;
    let source = stream
        .alloc_zeros::<u64>(words)
        .map_err(|e| e.to_string())?;
    let mut target = stream
        .alloc_zeros::<u64>(words)
        .map_err(|e| e.to_string())?;
    stream.synchronize().map_err(|e| e.to_string())?;
    let copies = time_runs(options.iterations.max(3), || {
        stream.memcpy_dtod(&source, &mut target)?;
        stream.synchronize()
    })?;
    let copy_bandwidth = gib_per_s(2 << 30, median(copies));
    println!("device copy (read + write): {copy_bandwidth:.0} GiB/s");
    drop((source, target));

    // 2. Host to device, 1 GiB, pageable and pinned.
    let host = vec![1u64; words];
    let mut on_device = stream
        .alloc_zeros::<u64>(words)
        .map_err(|e| e.to_string())?;
    let pageable = time_runs(3, || {
        stream.memcpy_htod(&host, &mut on_device)?;
        stream.synchronize()
    })?;
    // SAFETY: the pinned buffer is fully written before it is read.
    let mut pinned =
        unsafe { device.context().alloc_pinned::<u64>(words) }.map_err(|e| e.to_string())?;
    pinned
        .as_mut_slice()
        .map_err(|e| e.to_string())?
        .copy_from_slice(&host);
    let pinned_times = time_runs(3, || {
        stream.memcpy_htod(&pinned, &mut on_device)?;
        stream.synchronize()
    })?;
    println!(
        "host to device: pageable {:.1} GiB/s, pinned {:.1} GiB/s",
        gib_per_s(1 << 30, median(pageable)),
        gib_per_s(1 << 30, median(pinned_times))
    );
    drop((host, on_device, pinned));

    // 3. TPC-H Q6 over lineitem.
    let started = Instant::now();
    let batch = lineitem_columns(options.scale_factor, Q6_COLUMNS)?;
    let generate = started.elapsed().as_secs_f64();
    let bytes = batch.device_bytes();
    println!(
        "lineitem SF {}: {} rows, Q6 columns {:.2} GiB, generated and coalesced in {generate:.1}s",
        options.scale_factor,
        batch.rows,
        bytes as f64 / (1u64 << 30) as f64
    );
    let started = Instant::now();
    let resident = batch.upload(&device).map_err(|e| e.to_string())?;
    stream.synchronize().map_err(|e| e.to_string())?;
    let upload = started.elapsed().as_secs_f64();
    println!(
        "upload (pageable): {upload:.3}s, {:.1} GiB/s",
        gib_per_s(bytes, upload)
    );

    let query = q6();
    let started = Instant::now();
    let first = query
        .run_gpu(&device, &resident)
        .map_err(|e| e.to_string())?;
    println!(
        "first GPU run (NVRTC compile + load + run): {:.3}s",
        started.elapsed().as_secs_f64()
    );
    let mut gpu_times = Vec::new();
    for _ in 0..options.iterations {
        let started = Instant::now();
        let result = query
            .run_gpu(&device, &resident)
            .map_err(|e| e.to_string())?;
        gpu_times.push(started.elapsed().as_secs_f64());
        if result != first {
            return Err(format!(
                "GPU results differ between runs: {first:?} vs {result:?}"
            ));
        }
    }
    let gpu = median(gpu_times);

    let mut cpu_times = Vec::new();
    let mut cpu_sum = 0;
    for _ in 0..options.iterations.clamp(1, 5) {
        let started = Instant::now();
        cpu_sum = q6_cpu_all_cores(&batch);
        cpu_times.push(started.elapsed().as_secs_f64());
    }
    let cpu = median(cpu_times);

    let reference = if batch.rows <= 10_000_000 {
        Some(query.run_cpu(&batch).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let expected = AggregateValue::Int {
        value: cpu_sum,
        scale: 4,
    };
    if first != vec![expected] || reference.as_ref().is_some_and(|r| r != &first) {
        return Err(format!(
            "Q6 mismatch: GPU {first:?}, CPU loop {expected:?}, CPU reference {reference:?}"
        ));
    }
    let AggregateValue::Int { value, .. } = first[0] else {
        return Err("Q6 returned no revenue".to_string());
    };
    println!("Q6 revenue: {}.{:04}", value / 10_000, value % 10_000);
    println!(
        "Q6 on device-resident columns: {:.3} ms, {:.0} GiB/s read, {:.0}% of device copy bandwidth",
        gpu * 1e3,
        gib_per_s(bytes, gpu),
        100.0 * gib_per_s(bytes, gpu) / copy_bandwidth
    );
    println!(
        "Q6 on the CPU ({cpus} threads, same columns in host memory): {:.3} ms",
        cpu * 1e3
    );
    println!("GPU speed-up over all-core CPU: {:.1}x", cpu / gpu);
    println!(
        "(Q6 reads price only for the ~2% of rows that pass the filter, so its \
         rate above counts bytes it need not fetch; the next line is the memory-bound case.)"
    );

    // 4. A scan that must read every byte: aggregates of all four columns,
    // no filter.
    let full_scan = FusedAggregate {
        filter: None,
        aggregates: vec![
            Aggregate::new(AggregateFunction::Sum, GpuExpr::col(0)),
            Aggregate::new(AggregateFunction::Sum, GpuExpr::col(1)),
            Aggregate::new(AggregateFunction::Sum, GpuExpr::col(2)),
            Aggregate::new(AggregateFunction::Max, GpuExpr::col(3)),
        ],
    };
    let expected = full_scan.run_cpu(&batch).map_err(|e| e.to_string())?;
    let first = full_scan
        .run_gpu(&device, &resident)
        .map_err(|e| e.to_string())?;
    if first != expected {
        return Err(format!(
            "full scan mismatch: GPU {first:?}, CPU {expected:?}"
        ));
    }
    let mut scan_times = Vec::new();
    for _ in 0..options.iterations {
        let started = Instant::now();
        full_scan
            .run_gpu(&device, &resident)
            .map_err(|e| e.to_string())?;
        scan_times.push(started.elapsed().as_secs_f64());
    }
    let scan = median(scan_times);
    println!(
        "full scan (SUM x3 + MAX over the 4 columns, every byte read): {:.3} ms, {:.0} GiB/s, \
         {:.0}% of device copy bandwidth",
        scan * 1e3,
        gib_per_s(bytes, scan),
        100.0 * gib_per_s(bytes, scan) / copy_bandwidth
    );
    drop(resident);
    drop(batch);
    run_q1(options, &device)?;
    let _ = Arc::strong_count(device.context());
    Ok(())
}

/// TPC-H Q1 with the specification's validation parameters (DELTA 90:
/// shipdate <= 1998-09-02), over [`Q1_COLUMNS`].
fn q1() -> GroupedAggregate {
    let (quantity, price, discount, tax, shipdate) = (
        GpuExpr::col(2),
        GpuExpr::col(3),
        GpuExpr::col(4),
        GpuExpr::col(5),
        GpuExpr::col(6),
    );
    let discounted = price.clone() * (GpuExpr::int(1) - discount.clone());
    GroupedAggregate {
        filter: Some(shipdate.lt_eq(GpuExpr::int(10471))),
        keys: vec![0, 1],
        aggregates: vec![
            Aggregate::new(AggregateFunction::Sum, quantity.clone()),
            Aggregate::new(AggregateFunction::Sum, price.clone()),
            Aggregate::new(AggregateFunction::Sum, discounted.clone()),
            Aggregate::new(AggregateFunction::Sum, discounted * (GpuExpr::int(1) + tax)),
            Aggregate::new(AggregateFunction::Avg, quantity),
            Aggregate::new(AggregateFunction::Avg, price),
            Aggregate::new(AggregateFunction::Avg, discount),
            Aggregate::count_star(),
        ],
    }
}

/// Per group (returnflag code, linestatus code): the sums of quantity,
/// price, discounted price, charge and discount, and the row count.
type Q1Sums = std::collections::BTreeMap<(i64, i64), [i128; 6]>;

/// Q1 as a tight loop over the host columns with every core.
fn q1_cpu_all_cores(batch: &HostBatch) -> Q1Sums {
    let column = |i: usize| match &batch.columns[i].values {
        ColumnValues::Int(v) => v.as_slice(),
        ColumnValues::Float(_) => unreachable!("Q1's columns are integers"),
    };
    let (flag, status, quantity, price, discount, tax, shipdate) = (
        column(0),
        column(1),
        column(2),
        column(3),
        column(4),
        column(5),
        column(6),
    );
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let chunk = batch.rows.div_ceil(threads).max(1);
    let partials: Vec<Q1Sums> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..batch.rows)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(batch.rows);
                scope.spawn(move || {
                    // Codes are small: a dense table per thread.
                    let mut dense = vec![[0i128; 6]; 64];
                    for i in start..end {
                        if shipdate[i] > 10471 {
                            continue;
                        }
                        let g = &mut dense[(flag[i] * 8 + status[i]) as usize & 63];
                        let disc_price = price[i] as i128 * (100 - discount[i]) as i128;
                        g[0] += quantity[i] as i128;
                        g[1] += price[i] as i128;
                        g[2] += disc_price;
                        g[3] += disc_price * (100 + tax[i]) as i128;
                        g[4] += discount[i] as i128;
                        g[5] += 1;
                    }
                    dense
                        .iter()
                        .enumerate()
                        .filter(|(_, g)| g[5] > 0)
                        .map(|(code, g)| (((code / 8) as i64, (code % 8) as i64), *g))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut total = Q1Sums::new();
    for partial in partials {
        for (key, sums) in partial {
            let entry = total.entry(key).or_insert([0; 6]);
            for (t, s) in entry.iter_mut().zip(sums) {
                *t += s;
            }
        }
    }
    total
}

/// The GPU's groups as [`Q1Sums`], to compare with the CPU loop.
fn q1_sums(groups: &[Group]) -> Result<Q1Sums, String> {
    let int = |state: &AggregateState| match state.value {
        AggregateValue::Int { value, .. } => Ok(value),
        other => Err(format!("Q1 state {other:?} is not an integer")),
    };
    groups
        .iter()
        .map(|g| {
            let key = match g.keys.as_slice() {
                [Some(flag), Some(status)] => (*flag, *status),
                other => return Err(format!("Q1 group keys {other:?}")),
            };
            let s = &g.states;
            Ok((
                key,
                [
                    int(&s[0])?,
                    int(&s[1])?,
                    int(&s[2])?,
                    int(&s[3])?,
                    int(&s[6])?,
                    s[7].count as i128,
                ],
            ))
        })
        .collect()
}

fn run_q1(options: &Options, device: &GpuDevice) -> Result<(), String> {
    let started = Instant::now();
    let batch = lineitem_columns(options.scale_factor, Q1_COLUMNS)?;
    let bytes = batch.device_bytes();
    println!(
        "lineitem SF {}: Q1 columns {:.2} GiB (strings dictionary-coded), generated and coalesced in {:.1}s",
        options.scale_factor,
        bytes as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    let resident = batch.upload(device).map_err(|e| e.to_string())?;
    let query = q1();
    let started = Instant::now();
    let first = query
        .run_gpu(device, &resident)
        .map_err(|e| e.to_string())?;
    println!(
        "Q1 first GPU run (NVRTC compile + load + run): {:.3}s",
        started.elapsed().as_secs_f64()
    );
    let mut gpu_times = Vec::new();
    for _ in 0..options.iterations {
        let started = Instant::now();
        let result = query
            .run_gpu(device, &resident)
            .map_err(|e| e.to_string())?;
        gpu_times.push(started.elapsed().as_secs_f64());
        if result != first {
            return Err("Q1 GPU results differ between runs".to_string());
        }
    }
    let gpu = median(gpu_times);
    let mut cpu_times = Vec::new();
    let mut cpu = Q1Sums::new();
    for _ in 0..options.iterations.clamp(1, 5) {
        let started = Instant::now();
        cpu = q1_cpu_all_cores(&batch);
        cpu_times.push(started.elapsed().as_secs_f64());
    }
    let cpu_time = median(cpu_times);
    let on_gpu = q1_sums(&first)?;
    if on_gpu != cpu {
        return Err(format!("Q1 mismatch: GPU {on_gpu:?}, CPU loop {cpu:?}"));
    }
    if batch.rows <= 10_000_000 {
        let reference = query.run_cpu(&batch).map_err(|e| e.to_string())?;
        if reference != first {
            return Err("Q1 mismatch between the GPU and the CPU reference".to_string());
        }
    }
    println!("Q1 groups: {}, matching the CPU loop", first.len());
    println!(
        "Q1 on device-resident columns: {:.3} ms, {:.0} GiB/s read",
        gpu * 1e3,
        gib_per_s(bytes, gpu)
    );
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Q1 on the CPU ({cpus} threads, same columns in host memory): {:.3} ms",
        cpu_time * 1e3
    );
    println!("Q1 GPU speed-up over all-core CPU: {:.1}x", cpu_time / gpu);
    Ok(())
}

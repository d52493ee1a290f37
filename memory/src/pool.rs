//! Memory pools: how much memory a process's queries may hold, and the pool
//! that enforces it.
//!
//! An embedded session gets, by default, [`EMBEDDED_MEMORY_FRACTION`] of the
//! machine's memory, or of its container's limit where that is smaller
//! ([`machine_memory`]). The rest is headroom for what DataFusion does not
//! account (Parquet decoding buffers, batches in flight between operators,
//! the allocator's own overhead), so that a query which could spill is never
//! ended by the kernel's out-of-memory killer.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use datafusion::error::Result as DFResult;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;

use crate::size::ByteSize;

/// The share of the machine's (or container's) memory an embedded session's
/// queries may hold when no limit is set.
pub const EMBEDDED_MEMORY_FRACTION: f64 = 0.5;

/// The share of a process's memory (`--memory`) its query operators hold as
/// their pool. The rest is for what the pool does not see: Parquet pages and
/// shuffle blocks on their way in, batches between operators, hash tables
/// and vectors while they double in size, the allocator's free pages, the
/// process itself.
pub const POOL_FRACTION: f64 = 0.6;

/// The memory pool of a process that may use `memory` in all
/// ([`POOL_FRACTION`] of it).
pub fn pool_for_process(memory: ByteSize) -> ByteSize {
    ByteSize::new((memory.bytes() as f64 * POOL_FRACTION) as u64)
}

/// The share of a pool one sort sets aside to merge its spill files
/// (`datafusion.execution.sort_spill_reservation_bytes`, at most what the
/// session says): DataFusion's fixed 10 MiB would leave a small pool no room
/// to sort at all.
const SORT_MERGE_SHARE: u64 = 16;

/// The memory a sort should set aside for merging its spill files in a pool
/// of `pool` bytes, given the session's `configured` reservation: the
/// smaller of the two and a sixteenth of the pool (at least 64 KiB).
pub fn sort_merge_reservation(pool: ByteSize, configured: usize) -> usize {
    let share = (pool.bytes() / SORT_MERGE_SHARE).max(64 * 1024);
    configured.min(usize::try_from(share).unwrap_or(usize::MAX))
}

/// `context` made fit for running within its memory pool: its sorts' merge
/// reservation sized to the pool ([`sort_merge_reservation`]) and its
/// what would fail the query granted a little past the limit
/// ([`SoftLimitPool`]); `context`
/// itself when its pool is unbounded.
pub fn task_context_within_pool(context: Arc<TaskContext>) -> Arc<TaskContext> {
    let MemoryLimit::Finite(pool) = context.memory_pool().memory_limit() else {
        return context;
    };
    let mut config = context.session_config().clone();
    let execution = &mut config.options_mut().execution;
    execution.sort_spill_reservation_bytes = sort_merge_reservation(
        ByteSize::new(pool as u64),
        execution.sort_spill_reservation_bytes,
    );
    let runtime = context.runtime_env();
    let runtime = Arc::new(RuntimeEnv {
        memory_pool: Arc::new(SoftLimitPool::new(Arc::clone(&runtime.memory_pool))),
        ..RuntimeEnv::clone(&runtime)
    });
    task_context_with(&context, config, runtime)
}

/// A copy of `context` (its task, session and functions) with `config` and
/// `runtime` in place of its own.
pub fn task_context_with(
    context: &TaskContext,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> Arc<TaskContext> {
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        config,
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        runtime,
    ))
}

/// How many of the largest consumers a refused reservation's error names.
const CONSUMERS_NAMED_IN_ERRORS: usize = 5;

/// Where a machine's memory figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySource {
    /// The container's cgroup limit, smaller than the machine's memory.
    Cgroup,
    /// The machine's physical memory (`MemTotal` in `/proc/meminfo`).
    Machine,
}

/// The memory this process can use at most: the machine's, or its
/// container's limit where that is smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineMemory {
    /// The figure.
    pub total: ByteSize,
    /// Where it was read.
    pub source: MemorySource,
}

/// Reads the memory this process may use, `None` where neither `/proc` nor
/// the cgroup files tell (not Linux).
pub fn machine_memory() -> Option<MachineMemory> {
    machine_memory_from(Path::new("/proc/meminfo"), Path::new("/sys/fs/cgroup"))
}

fn machine_memory_from(meminfo: &Path, cgroup_root: &Path) -> Option<MachineMemory> {
    let machine = std::fs::read_to_string(meminfo)
        .ok()
        .and_then(|text| parse_meminfo_total(&text));
    let cgroup = cgroup_limit(cgroup_root);
    match (machine, cgroup) {
        (Some(m), Some(c)) if c < m => Some(MachineMemory {
            total: ByteSize::new(c),
            source: MemorySource::Cgroup,
        }),
        (Some(m), _) => Some(MachineMemory {
            total: ByteSize::new(m),
            source: MemorySource::Machine,
        }),
        (None, Some(c)) => Some(MachineMemory {
            total: ByteSize::new(c),
            source: MemorySource::Cgroup,
        }),
        (None, None) => None,
    }
}

/// `MemTotal` from the text of `/proc/meminfo`, in bytes.
fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The cgroup memory limit (v2 `memory.max`, else v1
/// `memory/memory.limit_in_bytes`), `None` when unlimited or unreadable.
fn cgroup_limit(root: &Path) -> Option<u64> {
    let v2 = std::fs::read_to_string(root.join("memory.max")).ok();
    let v1 = || std::fs::read_to_string(root.join("memory/memory.limit_in_bytes")).ok();
    let text = v2.or_else(v1)?;
    let limit: u64 = text.trim().parse().ok()?;
    // v1 reports "unlimited" as a number near i64::MAX, rounded to pages.
    (limit < (1u64 << 60)).then_some(limit)
}

/// The default memory limit of an embedded session:
/// [`EMBEDDED_MEMORY_FRACTION`] of [`machine_memory`], `None` where that is
/// unknown.
pub fn default_embedded_limit() -> Option<ByteSize> {
    machine_memory()
        .map(|m| ByteSize::new((m.total.bytes() as f64 * EMBEDDED_MEMORY_FRACTION) as u64))
}

/// The pool an embedded session's queries share: `limit` bytes, divided
/// fairly among the operators that can spill (sorts, aggregates, sort-merge
/// joins), with the largest consumers named in the error when a reservation
/// is refused, and a soft limit ([`SoftLimitPool`]).
pub fn memory_pool(limit: ByteSize) -> Arc<dyn MemoryPool> {
    let top = NonZeroUsize::new(CONSUMERS_NAMED_IN_ERRORS).unwrap_or(NonZeroUsize::MIN);
    Arc::new(SoftLimitPool::new(Arc::new(TrackConsumersPool::new(
        FairSpillPool::new(usize::try_from(limit.bytes()).unwrap_or(usize::MAX)),
        top,
    ))))
}

/// The prefix of the names of `RepartitionExec`'s reservations.
const REPARTITION_CONSUMER: &str = "RepartitionExec";

/// The prefix of the names of a hash join's build-side reservations, which
/// `AdaptiveJoinExec` answers by a grace hash join when they are refused.
const HASH_JOIN_BUILD_CONSUMER: &str = "HashJoinInput";

/// How far past its limit, in percent, [`SoftLimitPool`] may grant what
/// would otherwise fail a query.
pub const OVERCOMMIT_PERCENT: usize = 25;

/// A pool that counts every reservation against its inner pool and refuses
/// what that pool refuses, except where refusing would fail a query that
/// a little more memory lets finish:
///
/// * `RepartitionExec`'s reservations are always granted, so repartitions
///   keep their batches in memory. DataFusion 55's repartition spills a
///   refused batch into a per-input spill pool whose reader can wait forever
///   when two inputs spill at once (apache/datafusion#24883): the query
///   stops, idle, with no error. What a repartition holds is bounded by its
///   channels' back-pressure (about a batch per output and input partition).
/// * An operator that cannot spill (a top-k, a final aggregate without
///   groups), or one that holds nothing yet and so has nothing to spill (a
///   sort's first batch), is granted while the pool stays within
///   [`OVERCOMMIT_PERCENT`] past its limit. `FairSpillPool` lets the
///   operators that spill fill the pool to their fair shares, which leaves
///   such requests nothing. A hash join's build side is left to
///   `AdaptiveJoinExec`, which spills it when refused.
#[derive(Debug)]
pub struct SoftLimitPool {
    inner: Arc<dyn MemoryPool>,
}

impl SoftLimitPool {
    /// Wraps `inner`, which accounts for every reservation.
    pub fn new(inner: Arc<dyn MemoryPool>) -> Self {
        Self { inner }
    }

    /// Whether a refused request of `additional` bytes for `reservation` is
    /// granted anyway.
    fn grants_past_limit(&self, reservation: &MemoryReservation, additional: usize) -> bool {
        let consumer = reservation.consumer();
        let name = consumer.name();
        if name.starts_with(REPARTITION_CONSUMER) {
            return true;
        }
        let MemoryLimit::Finite(limit) = self.inner.memory_limit() else {
            return false;
        };
        let cannot_spill = !consumer.can_spill() || reservation.size() == 0;
        let ceiling = limit.saturating_add(limit / 100 * OVERCOMMIT_PERCENT);
        cannot_spill
            && !name.starts_with(HASH_JOIN_BUILD_CONSUMER)
            && self.inner.reserved().saturating_add(additional) <= ceiling
    }
}

impl std::fmt::Display for SoftLimitPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl MemoryPool for SoftLimitPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DFResult<()> {
        match self.inner.try_grow(reservation, additional) {
            Err(_) if self.grants_past_limit(reservation, additional) => {
                self.inner.grow(reservation, additional);
                Ok(())
            }
            result => result,
        }
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_pool_sets_aside_a_small_share_for_sort_merges() {
        let ten_mib = 10 << 20;
        assert_eq!(
            sort_merge_reservation(ByteSize::new(8 << 20), ten_mib),
            512 << 10
        );
        assert_eq!(
            sort_merge_reservation(ByteSize::new(1 << 30), ten_mib),
            ten_mib
        );
        assert_eq!(
            sort_merge_reservation(ByteSize::new(1 << 20), ten_mib),
            64 << 10
        );
        assert_eq!(sort_merge_reservation(ByteSize::new(8 << 20), 4096), 4096);
    }

    // `FairSpillPool` refuses an operator that can spill more than its fair
    // share (the pool, less what cannot spill, divided among those that
    // can), and one that cannot spill more than what is left.

    #[test]
    fn repartitions_are_granted_past_the_limit_and_still_counted() {
        let pool = memory_pool(ByteSize::new(1000));
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        let repartition = MemoryConsumer::new("RepartitionExec[1]")
            .with_can_spill(true)
            .register(&pool);
        repartition.try_grow(800).expect("past its share of 500");
        repartition
            .try_grow(800)
            .expect("a repartition is never refused");
        assert_eq!(pool.reserved(), 1600);
        let top_k = MemoryConsumer::new("TopK[0]").register(&pool);
        let refused = top_k.try_grow(10).expect_err("past the overcommit");
        assert!(refused.to_string().contains("TopK[0]"), "{refused}");
        sort.try_grow(600)
            .expect_err("past its share, and past the overcommit");
        drop(repartition);
        sort.try_grow(600).expect("the pool is its own again");
    }

    #[test]
    fn what_cannot_spill_is_granted_up_to_the_overcommit_and_no_further() {
        let pool = memory_pool(ByteSize::new(1000));
        let aggregate = MemoryConsumer::new("GroupedHashAggregateStream[0]")
            .with_can_spill(true)
            .register(&pool);
        aggregate.try_grow(700).unwrap();
        let top_k = MemoryConsumer::new("TopK[0]").register(&pool);
        top_k.try_grow(300).expect("what is left");
        top_k.try_grow(200).expect("within 25% past the limit");
        top_k.try_grow(100).expect_err("past the overcommit");
    }

    #[test]
    fn an_operator_holding_nothing_gets_its_first_request_but_a_build_side_does_not() {
        let pool = memory_pool(ByteSize::new(1000));
        let aggregate = MemoryConsumer::new("GroupedHashAggregateStream[0]")
            .with_can_spill(true)
            .register(&pool);
        aggregate.try_grow(500).unwrap();
        let sort = MemoryConsumer::new("ExternalSorter[1]")
            .with_can_spill(true)
            .register(&pool);
        sort.try_grow(600).expect("holds nothing to spill yet");
        sort.try_grow(1).expect_err("holds something it can spill");
        let build = MemoryConsumer::new("HashJoinInput[0]").register(&pool);
        build
            .try_grow(1)
            .expect_err("the adaptive join spills a refused build side");
    }

    #[test]
    fn a_task_with_a_small_pool_gets_a_small_sort_merge_reservation() {
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(memory_pool(ByteSize::new(8 << 20)))
            .build_arc()
            .unwrap();
        let context = Arc::new(TaskContext::default().with_runtime(runtime));
        let fitted = task_context_within_pool(context);
        let execution = &fitted.session_config().options().execution;
        assert_eq!(execution.sort_spill_reservation_bytes, 512 << 10);
        assert!(fitted.memory_pool().is::<SoftLimitPool>());
        assert!(matches!(
            fitted.memory_pool().memory_limit(),
            MemoryLimit::Finite(limit) if limit == 8 << 20
        ));
        let unbounded = task_context_within_pool(Arc::new(TaskContext::default()));
        assert_eq!(
            unbounded
                .session_config()
                .options()
                .execution
                .sort_spill_reservation_bytes,
            10 << 20
        );
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       24584708 kB\nMemFree:        1 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24_584_708 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB"), None);
    }

    #[test]
    fn a_smaller_cgroup_limit_wins() {
        let dir = tempfile::tempdir().unwrap();
        let meminfo = dir.path().join("meminfo");
        std::fs::write(&meminfo, "MemTotal: 8388608 kB\n").unwrap();
        let cgroup = dir.path().join("cgroup");
        std::fs::create_dir(&cgroup).unwrap();

        let machine = machine_memory_from(&meminfo, &cgroup).unwrap();
        assert_eq!(machine.source, MemorySource::Machine);
        assert_eq!(machine.total.bytes(), 8 << 30);

        std::fs::write(cgroup.join("memory.max"), "max\n").unwrap();
        let unlimited = machine_memory_from(&meminfo, &cgroup).unwrap();
        assert_eq!(unlimited.source, MemorySource::Machine);

        std::fs::write(cgroup.join("memory.max"), "2147483648\n").unwrap();
        let limited = machine_memory_from(&meminfo, &cgroup).unwrap();
        assert_eq!(limited.source, MemorySource::Cgroup);
        assert_eq!(limited.total.bytes(), 2 << 30);
    }

    #[test]
    fn a_cgroup_v1_limit_counts_and_its_unlimited_value_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let meminfo = dir.path().join("meminfo");
        std::fs::write(&meminfo, "MemTotal: 8388608 kB\n").unwrap();
        let v1 = dir.path().join("memory");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let unlimited = machine_memory_from(&meminfo, dir.path()).unwrap();
        assert_eq!(unlimited.source, MemorySource::Machine);
        std::fs::write(v1.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        let limited = machine_memory_from(&meminfo, dir.path()).unwrap();
        assert_eq!(limited.total.bytes(), 1 << 30);
    }

    #[test]
    fn the_pool_enforces_its_limit_and_names_consumers() {
        use datafusion::execution::memory_pool::MemoryConsumer;
        let pool = memory_pool(ByteSize::new(1000));
        let reservation = MemoryConsumer::new("HashJoinInput[0]").register(&pool);
        reservation.try_grow(900).unwrap();
        let err = reservation.try_grow(200).unwrap_err().to_string();
        assert!(err.contains("HashJoinInput[0]"), "{err}");
    }
}

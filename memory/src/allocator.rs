//! The allocator Ember's binaries use (mimalloc), tuned, in a process given
//! a memory budget (`--memory`), so that memory a query frees goes back to
//! the operating system at once.
//!
//! By default mimalloc keeps freed pages for a while (10 ms, and ten times
//! that for whole arenas) before returning them, in case the program asks
//! again. Under a memory limit that shows as resident memory the process
//! does not use: on TPC-H at SF 10, an executor given `--memory 256MiB`
//! peaked at 547 MiB resident with the delay and 470 MiB without it.

use std::os::raw::c_int;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, the
/// same in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Makes the process's allocator return freed pages to the operating system
/// immediately. Call it first thing in `main` of a binary whose global
/// allocator is `mimalloc::MiMalloc`; elsewhere it changes nothing.
pub fn return_freed_memory_promptly() {
    // SAFETY: mi_option_set only stores an option value; any option id and
    // value are accepted, and purge_delay is read at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

//! The allocator Ember's binaries use (mimalloc), and how the process's
//! memory is paged.
//!
//! [`return_freed_memory_promptly`]: in a process given a memory budget
//! (`--memory`), memory a query frees goes back to the operating system at
//! once.
//!
//! By default mimalloc keeps freed pages for a while (10 ms, and ten times
//! that for whole arenas) before returning them, in case the program asks
//! again. Under a memory limit that shows as resident memory the process
//! does not use: on TPC-H at SF 10, an executor given `--memory 256MiB`
//! peaked at 547 MiB resident with the delay and 470 MiB without it.
//!
//! [`disable_transparent_huge_pages`]: mimalloc asks the kernel for
//! transparent huge pages on every region it maps. The kernel zeroes a
//! whole 2 MiB page on the first touch of any byte in it, and again after
//! each time mimalloc hands freed memory back: a query that decodes
//! Parquet pages into fresh buffers spends much of its time there (15% of
//! the CPU time of TPC-H Q8 at SF 10 in the kernel's `clear_page_erms`;
//! 0.5% with huge pages off, and 5.8% less time for all 22 queries).

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

/// Turns transparent huge pages off for this process (and, as the kernel
/// keeps the flag across `fork` and `exec`, for the processes it starts):
/// memory is then paged in 4 KiB pages, zeroed as they are first touched.
/// Call it first thing in `main`. Elsewhere than on Linux it does nothing.
///
/// # Errors
///
/// The kernel's refusal (`prctl(PR_SET_THP_DISABLE)`), as an I/O error.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and
        // only sets a flag of the calling process.
        let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_after_disabling_them() {
        // The flag is the process's: at worst, other tests in this process
        // then run on 4 KiB pages.
        disable_transparent_huge_pages().unwrap();
        // SAFETY: PR_GET_THP_DISABLE takes no pointers.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}

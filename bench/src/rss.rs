//! Peak resident memory of processes, from Linux's `/proc`.
//!
//! `VmHWM` in `/proc/<pid>/status` is the peak resident set size; writing
//! `5` to `/proc/<pid>/clear_refs` resets it to the current size, so each
//! query's peak can be read on its own. Elsewhere these read nothing.

/// Resets the peak resident size of `pid` to its current size.
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The peak resident size of `pid` in bytes, if the system tells.
pub fn peak(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_on_linux() {
        let pid = std::process::id();
        reset_peak(pid);
        if cfg!(target_os = "linux") {
            let before = peak(pid).expect("VmHWM on Linux");
            let block = vec![1u8; 64 * 1024 * 1024];
            std::hint::black_box(&block);
            let after = peak(pid).expect("VmHWM on Linux");
            assert!(after >= before + 60 * 1024 * 1024, "{before} -> {after}");
        }
    }
}

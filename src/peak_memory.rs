//! The process's peak resident memory, so that heavy stages can say what they used: Linux's
//! `VmHWM` from `/proc/self/status`, reset between stages through `/proc/self/clear_refs` after
//! the allocators gave back what the stage before freed. Elsewhere (or where `/proc` is not
//! readable) there is no figure, not a wrong one. Knows nothing of the stages.

use std::fmt;

/// The largest resident set this process has had since it started or since the last
/// [`reset_peak`], in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Starts a new peak from the current resident set (Linux 4.0 and later), after
/// [`release_freed`]; false where the peak cannot be reset, and the next figure is the peak
/// since the process started. The kernel keeps one high-water mark: after a reset, an outside
/// `/usr/bin/time -v` (`ru_maxrss`) also reports only the peak since the reset.
pub fn reset_peak() -> bool {
    release_freed();
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hands memory the allocators keep after frees back to the kernel, so that what one stage of
/// a process freed neither counts in the next stage's peak nor is missing from the memory that
/// stage finds available. Measured in one `tessera run` of `pipelines/smollm2.toml`: after
/// profiling (9.08 GiB), the search and assemble stages peaked at 8.91 GiB and 984 MiB, where
/// the same commands alone peak at 1.02 GiB and 0.29 GiB. mimalloc (the `tessera` binary's
/// allocator) keeps freed pages in each thread's heap, so every thread of the pool collects
/// its own; glibc (a program's default elsewhere) trims its arenas.
pub fn release_freed() {
    // SAFETY: both calls only return memory no allocation uses.
    let collect = || unsafe { libmimalloc_sys::mi_collect(true) };
    rayon::broadcast(|_| collect());
    collect();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A byte count as people read memory sizes: MiB below a GiB, GiB with two decimals above.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: f64 = (1u64 << 20) as f64;
        const GIB: f64 = (1u64 << 30) as f64;
        let bytes = self.0 as f64;
        if bytes < GIB {
            write!(f, "{:.0} MiB", bytes / MIB)
        } else {
            write!(f, "{:.2} GiB", bytes / GIB)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_follows_an_allocation_and_resets() {
        let Some(before) = peak_resident_bytes() else {
            eprintln!("skipped: no /proc/self/status on this system");
            return;
        };
        let size = 256 << 20;
        let block = vec![1u8; size];
        std::hint::black_box(&block);
        let during = peak_resident_bytes().unwrap();
        assert!(
            during >= before.max(size as u64),
            "peak {during} after touching {size} bytes"
        );
        drop(block);
        if reset_peak() {
            assert!(peak_resident_bytes().unwrap() < during - (size as u64) / 2);
        }
        assert_eq!(Bytes(3 << 20).to_string(), "3 MiB");
        assert_eq!(Bytes(3 << 30).to_string(), "3.00 GiB");
    }
}

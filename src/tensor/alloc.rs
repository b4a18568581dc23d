//! Asking the system for memory before work needs it.
//!
//! Rust aborts the process when an allocation is refused, which a service
//! must not do for one job's sake. Work that will allocate much (a job's
//! outputs and scratch, an array a file declares) asks first: the memory
//! is reserved and given back at once, and a refusal becomes an error the
//! fronts report (exit 1, HTTP 507). Under `ulimit -v` or a container's
//! limit this is where a too-large job stops. (It cannot promise the
//! memory is still there a moment later; it catches the job that could
//! never have it.)

use crate::error::{Error, Result};

/// Sizes below this are not asked about: the allocator's usual business.
const ASK_FROM: u64 = 1 << 20;

/// Whether the system would give `bytes` now, for `what` (named in the
/// error).
pub fn check(bytes: u64, what: impl std::fmt::Display) -> Result<()> {
    if bytes < ASK_FROM {
        return Ok(());
    }
    let refused = || {
        Error::OutOfMemory(format!(
            "cannot get {} MiB of memory for {what}: the system refused it",
            bytes.div_ceil(1 << 20)
        ))
    };
    let len = usize::try_from(bytes).map_err(|_| refused())?;
    // Reserved, not touched: no page is written, and it is freed at once.
    Vec::<u8>::new()
        .try_reserve_exact(len)
        .map_err(|_| refused())
}

/// Asks the system to back `memory` (freshly allocated, not yet touched)
/// with huge pages where it does that on request (`madvise` mode of
/// transparent huge pages): faulting in 64 MiB of fresh 4 KiB pages took
/// 50 ms on one core here, longer than most kernels' pass over it. A
/// failure changes nothing; below 4 MiB nothing is asked.
pub fn advise_huge_pages<T>(memory: &[T]) {
    #[cfg(target_os = "linux")]
    {
        let bytes = std::mem::size_of_val(memory);
        if bytes < 4 << 20 {
            return;
        }
        // madvise takes whole pages: the ones inside the allocation.
        const PAGE: usize = 4096;
        let (start, end) = (memory.as_ptr() as usize, memory.as_ptr() as usize + bytes);
        let first = start.next_multiple_of(PAGE);
        let len = (end - first) / PAGE * PAGE;
        // SAFETY: madvise only advises the kernel about these pages, which
        // lie inside the allocation; its result is ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}

/// Half the machine's physical memory, or 4 GiB where it cannot be read:
/// the default memory budget of the service and of streamed runs.
pub fn default_budget() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions; it returns -1 on error.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if pages > 0 && size > 0 {
            return (pages as u64).saturating_mul(size as u64) / 2;
        }
    }
    4 << 30
}

/// The most memory this process has held at once (its peak resident set,
/// `VmHWM`), where the system says (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_possible_sizes_pass_and_impossible_ones_are_errors() {
        check(100, "a little").unwrap();
        check(64 << 20, "some").unwrap();
        let e = check(u64::MAX / 2, "everything").unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
        assert!(
            e.to_string().contains("for everything: the system refused"),
            "{e}"
        );
    }
}

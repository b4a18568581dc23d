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

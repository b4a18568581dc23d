//! The service's memory budget: the host memory that requests may hold at
//! once — bodies while they are read and decoded, then each admitted job's
//! or pipeline's own bytes (its inputs as decoded, its outputs, the
//! kernels' scratch, its encoded answer), all known before it runs from
//! the kernels' plans. A request that could never fit is refused (413,
//! naming the budget); one that does not fit now gets 503 with
//! `Retry-After`, like a full queue: the service never waits for room, so
//! it never hangs.
//!
//! Counted in KiB on a semaphore, rounded up; what a request holds goes
//! back when it is answered (for `wait=false`, when its job finishes).
//! Stored tensors and kept results have budgets of their own and are not
//! counted again here.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api_error::ApiError;

/// The bytes requests may hold at once.
pub(crate) struct Budget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

/// What one request holds of the budget; given back when dropped.
#[derive(Default)]
pub(crate) struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |p| p.num_permits() as u64 * 1024)
    }
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        // At most u32::MAX KiB (4 TiB): what one acquire can take.
        let total_kib = kib(bytes)
            .min(Semaphore::MAX_PERMITS as u64)
            .min(u64::from(u32::MAX)) as usize;
        Budget {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Grows what `held` holds to `bytes` for `what` (a request body, a
    /// job), or says why not: 413 if `bytes` is more than the whole
    /// budget, 503 if it is more than is free now. Holding more already,
    /// it gives the difference back.
    pub fn hold(&self, held: &mut Held, bytes: u64, what: &str) -> Result<(), ApiError> {
        let want = kib(bytes);
        let have = held.0.as_ref().map_or(0, |p| p.num_permits() as u64);
        if want <= have {
            if let Some(permit) = held.0.as_mut() {
                // Dropped at once: the surplus goes back.
                drop(permit.split((have - want) as usize));
            }
            return Ok(());
        }
        self.could_hold(bytes, what)?;
        // `want - have` fits in u32: the budget's total does (`new`).
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.kib)
            .try_acquire_many_owned(more)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!(
                        "{what} needs {} MiB of memory and less is free now; retry shortly",
                        mib(bytes)
                    ),
                )
            })?;
        match held.0.as_mut() {
            Some(mine) => mine.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }

    /// 413 if `bytes` for `what` is more than the whole budget: it could
    /// never be held.
    pub fn could_hold(&self, bytes: u64, what: &str) -> Result<(), ApiError> {
        if kib(bytes) <= self.total_kib as u64 {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "over_memory_budget",
            format!(
                "{what} needs {} MiB of memory, more than this service's whole budget of \
                 {} MiB (serve --memory-mib); make it smaller",
                mib(bytes),
                self.total_kib / 1024
            ),
        ))
    }

    /// Bytes of the whole budget.
    pub fn total(&self) -> u64 {
        self.total_kib as u64 * 1024
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        (self.total_kib - self.kib.available_permits()) as u64 * 1024
    }
}

/// Whole KiB holding `bytes`.
fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

/// MiB of `bytes`, rounded up, for messages.
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_grow_shrink_and_refuse_what_never_or_not_now_fits() {
        let budget = Budget::new(10 << 20);
        let (mut a, mut b) = (Held::default(), Held::default());
        budget.hold(&mut a, 6 << 20, "a").unwrap();
        assert_eq!(a.bytes(), 6 << 20);
        let busy = budget.hold(&mut b, 5 << 20, "b").unwrap_err();
        assert_eq!(
            (busy.status, busy.code),
            (StatusCode::SERVICE_UNAVAILABLE, "busy")
        );
        let never = budget.hold(&mut b, 11 << 20, "b").unwrap_err();
        assert_eq!(never.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(never.message.contains("10 MiB"), "{}", never.message);
        // Shrinking gives back; then the other fits.
        budget.hold(&mut a, 1000, "a").unwrap();
        assert_eq!(a.bytes(), 1024);
        budget.hold(&mut b, 5 << 20, "b").unwrap();
        assert_eq!(budget.used(), (5 << 20) + 1024);
        drop((a, b));
        assert_eq!(budget.used(), 0);
    }
}

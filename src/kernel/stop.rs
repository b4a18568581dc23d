//! Asking running work to stop.
//!
//! A job's cancellation flag is watched while it runs ([`watch`]), and the
//! kernels' long loops ask [`requested`] between pieces of work (a row, a
//! panel, a chunk, a sort's bucket, a scan's round; the reductions other
//! than the f32 sum do not ask, their one pass being short) and, when it
//! says yes, skip what is left: the results
//! are thrown away by whoever set the flag, so a half-computed output never
//! leaves the job. Work run outside a watch (tests, benchmarks, a program
//! calling a kernel directly) is never asked to stop.
//!
//! The flag is found through the thread: a CPU backend gives each of its
//! pool's threads one shared [`Watch`] ([`share`], from the pool's start
//! handler), so the job's flag set on the worker's thread reaches every
//! thread its parallel loops run on. Any other thread has a watch of its
//! own, made when first asked.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The flag of the work running where this watch is shared.
#[derive(Debug, Default)]
pub struct Watch(Mutex<Option<Arc<AtomicBool>>>);

impl Watch {
    fn set(&self, flag: Option<Arc<AtomicBool>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = flag;
    }

    fn requested(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

thread_local! {
    static WATCH: RefCell<Option<Arc<Watch>>> = const { RefCell::new(None) };
}

/// This thread's watch, made if it has none.
fn current() -> Arc<Watch> {
    WATCH.with(|w| Arc::clone(w.borrow_mut().get_or_insert_with(Arc::default)))
}

/// Makes this thread report the flag `watch` holds (for a thread pool's
/// threads, which run parts of work watched on another of its threads).
pub fn share(watch: Arc<Watch>) {
    WATCH.with(|w| *w.borrow_mut() = Some(watch));
}

/// Whether the work running on this thread was asked to stop.
pub fn requested() -> bool {
    WATCH.with(|w| w.borrow().as_ref().is_some_and(|w| w.requested()))
}

/// Watches `flag` on this thread (and the threads sharing its watch) until
/// the guard drops.
pub fn watch(flag: Arc<AtomicBool>) -> Watching {
    let watch = current();
    watch.set(Some(flag));
    Watching(watch)
}

/// Stops watching when dropped.
#[must_use = "the flag is watched only while the guard lives"]
pub struct Watching(Arc<Watch>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_flag_is_seen_on_threads_sharing_the_watch_and_forgotten_after() {
        let flag = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Watch::default());
        share(Arc::clone(&shared));
        let guard = watch(Arc::clone(&flag));
        let other = {
            let shared = Arc::clone(&shared);
            move || {
                share(shared);
                requested()
            }
        };
        assert!(!requested());
        flag.store(true, Ordering::Relaxed);
        assert!(requested());
        assert!(std::thread::spawn(other.clone()).join().unwrap());
        // A thread that shares nothing is never asked.
        assert!(!std::thread::spawn(requested).join().unwrap());
        drop(guard);
        assert!(!requested());
        assert!(!std::thread::spawn(other).join().unwrap());
    }
}

//! Tensors kept in device memory between jobs, within a budget.
//!
//! A [`Handle`] that more than one job (or a caller) holds gets a device
//! copy the first time a GPU job reads it, and a job's output that its
//! caller keeps stays on the device: both are [`Resident`] buffers,
//! attached to their handle and listed here with the time of their last
//! use. The bytes they hold stay within the budget: before a new one is
//! made, the least recently used others are spilled — copied home where
//! they have no host copy yet, then dropped from the device. A resident
//! buffer goes back to the buffer pool when its handle drops or spills.
//!
//! Only this backend's worker thread makes, reads and spills resident
//! buffers; handles may be dropped on any thread (which only frees).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::lock;
use super::pool::BufferPool;
use crate::tensor::{DeviceCopy, Handle, Spec, WeakHandle};

/// A tensor's copy in this device's memory.
pub(super) struct Resident {
    buffer: wgpu::Buffer,
    pool: Arc<BufferPool>,
    used: Arc<AtomicU64>,
}

impl DeviceCopy for Resident {
    fn bytes(&self) -> u64 {
        self.buffer.size()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        self.used.fetch_sub(self.buffer.size(), Ordering::Relaxed);
        self.pool.give(self.buffer.clone());
    }
}

/// The resident tensors of one device and their budget.
pub(super) struct Residency {
    budget: u64,
    used: Arc<AtomicU64>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    clock: u64,
    /// Handle id → (the handle, its last use).
    entries: HashMap<u64, (WeakHandle, u64)>,
}

impl Residency {
    /// No resident tensors yet; at most `budget` bytes of them.
    pub fn new(budget: u64) -> Self {
        Residency {
            budget,
            used: Arc::default(),
            table: Mutex::default(),
        }
    }

    /// Bytes resident tensors may hold.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes they hold now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// `handle`'s buffer on this device, if it has one (marked as used now).
    pub fn buffer(&self, handle: &Handle) -> Option<wgpu::Buffer> {
        let copy = handle.device()?;
        let resident = copy.as_any().downcast_ref::<Resident>()?;
        // A copy on another backend's device is no use here.
        if !Arc::ptr_eq(&resident.used, &self.used) {
            return None;
        }
        self.touch(handle);
        Some(resident.buffer.clone())
    }

    /// Attaches `buffer` (from `pool`) to `handle` as its device copy.
    pub fn attach(&self, handle: &Handle, buffer: wgpu::Buffer, pool: &Arc<BufferPool>) {
        self.used.fetch_add(buffer.size(), Ordering::Relaxed);
        handle.set_device(Some(Arc::new(Resident {
            buffer,
            pool: Arc::clone(pool),
            used: Arc::clone(&self.used),
        })));
        self.touch(handle);
    }

    /// A new handle of `spec` whose data is `buffer` (from `pool`), a
    /// kept output.
    pub fn adopt(&self, spec: Spec, buffer: wgpu::Buffer, pool: &Arc<BufferPool>) -> Handle {
        self.used.fetch_add(buffer.size(), Ordering::Relaxed);
        let resident = Resident {
            buffer,
            pool: Arc::clone(pool),
            used: Arc::clone(&self.used),
        };
        let handle = Handle::on_device(spec, Arc::new(resident));
        self.touch(&handle);
        handle
    }

    fn touch(&self, handle: &Handle) {
        let mut table = lock(&self.table);
        table.clock += 1;
        let now = table.clock;
        table
            .entries
            .entry(handle.id())
            .and_modify(|e| e.1 = now)
            .or_insert_with(|| (handle.downgrade(), now));
    }

    /// Resident handles to spill, least recently used first, until `bytes`
    /// more fit the budget; none of `pinned` (the running job's own). `None`
    /// when even spilling all the others would not make room.
    pub fn victims(&self, bytes: u64, pinned: &[u64]) -> Option<Vec<Handle>> {
        let mut table = lock(&self.table);
        // Forget handles that were dropped or spilled meanwhile.
        table
            .entries
            .retain(|_, (weak, _)| weak.upgrade().is_some_and(|h| self.buffer_of(&h)));
        let mut order: Vec<(u64, u64)> = table
            .entries
            .iter()
            .filter(|(id, _)| !pinned.contains(id))
            .map(|(&id, &(_, used))| (used, id))
            .collect();
        order.sort_unstable();
        let mut free = self.budget.saturating_sub(self.used());
        let mut victims = Vec::new();
        for (_, id) in order {
            if free >= bytes {
                break;
            }
            if let Some(h) = table.entries.get(&id).and_then(|(w, _)| w.upgrade()) {
                free += h.device().map_or(0, |c| c.bytes());
                victims.push(h);
            }
        }
        (free >= bytes).then_some(victims)
    }

    /// Whether `handle`'s device copy is on this device (without marking
    /// it used).
    fn buffer_of(&self, handle: &Handle) -> bool {
        handle.device().is_some_and(|c| {
            c.as_any()
                .downcast_ref::<Resident>()
                .is_some_and(|r| Arc::ptr_eq(&r.used, &self.used))
        })
    }

    /// Every live handle with a copy on this device.
    pub fn all(&self) -> Vec<Handle> {
        let table = lock(&self.table);
        table
            .entries
            .values()
            .filter_map(|(weak, _)| weak.upgrade())
            .filter(|h| self.buffer_of(h))
            .collect()
    }

    /// Drops `handle`'s device copy (its host copy must exist by now).
    pub fn evict(&self, handle: &Handle) {
        handle.set_device(None);
        lock(&self.table).entries.remove(&handle.id());
    }
}

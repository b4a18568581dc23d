//! Reuse of GPU buffers across jobs.
//!
//! Creating buffers costs driver calls and memory-manager work, so finished
//! jobs give theirs back and later jobs take them. Sizes are rounded up to
//! powers of two so that similar jobs share buffers. The pool keeps at most
//! [`BufferPool::MAX_POOLED_BYTES`]; past that, returned buffers are freed.

use std::collections::HashMap;
use std::sync::Mutex;

/// Buffers waiting for reuse, by (usage, size).
pub struct BufferPool {
    inner: Mutex<PoolInner>,
    limit: u64,
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::with_limit(Self::MAX_POOLED_BYTES)
    }
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<(wgpu::BufferUsages, u64), Vec<wgpu::Buffer>>,
    bytes: u64,
}

impl BufferPool {
    /// Bytes the pool may hold idle, unless told fewer.
    pub const MAX_POOLED_BYTES: u64 = 1 << 30;

    /// An empty pool that holds at most `limit` bytes idle.
    pub fn with_limit(limit: u64) -> Self {
        BufferPool {
            inner: Mutex::default(),
            limit,
        }
    }

    /// The size class a request of `bytes` is served from.
    pub fn size_class(bytes: u64) -> u64 {
        bytes.max(256).next_power_of_two()
    }

    /// The size of the buffer [`BufferPool::take`] gives for `bytes`: the
    /// size class, unless that would pass the device's limit.
    pub fn allocation(bytes: u64, max_buffer_size: u64) -> u64 {
        Self::size_class(bytes)
            .min(max_buffer_size.max(bytes))
            .next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
    }

    /// A buffer of at least `bytes` with exactly `usage`: a pooled one if
    /// there is one, else a new one. `max_buffer_size` caps the rounding-up.
    pub fn take(
        &self,
        device: &wgpu::Device,
        usage: wgpu::BufferUsages,
        bytes: u64,
        max_buffer_size: u64,
    ) -> wgpu::Buffer {
        let size = Self::allocation(bytes, max_buffer_size);
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(buf) = inner.free.get_mut(&(usage, size)).and_then(Vec::pop) {
                inner.bytes -= size;
                return buf;
            }
        }
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("anycore pooled buffer"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Returns a buffer for reuse. Only buffers no queued work still uses
    /// may come back.
    pub fn give(&self, buf: wgpu::Buffer) {
        let key = (buf.usage(), buf.size());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.bytes + key.1 <= self.limit {
            inner.bytes += key.1;
            inner.free.entry(key).or_default().push(buf);
        }
    }
}

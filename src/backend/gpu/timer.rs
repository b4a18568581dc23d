//! The device's own clock around compute passes (`TIMESTAMP_QUERY`).
//!
//! Submit-and-wait on the host counts the submission, the driver's
//! scheduling and the wake-up after the fence as kernel time; on a fast GPU
//! that is most of a small kernel's time. Where the adapter has timestamp
//! queries, each compute pass writes one at its start and one at its end,
//! and the difference, times the queue's timestamp period, is the time the
//! kernels took on the device. Adapters without the feature report `None`,
//! and callers fall back to host time (and say so).
//!
//! A kit (query set, resolve buffer, readback buffer) is taken per pass
//! from a small free list and put back after its value is read, so
//! concurrent jobs never share one and steady work allocates nothing.

use std::sync::mpsc;

use crate::error::{Error, Result};

/// Query set and buffers for one timed pass.
pub(super) struct Kit {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

/// Bytes of the two resolved timestamps.
const BYTES: u64 = 2 * std::mem::size_of::<u64>() as u64;

impl Kit {
    pub fn new(device: &wgpu::Device) -> Kit {
        Kit {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("anycore pass timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("anycore timestamps"),
                size: BYTES,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("anycore timestamps readback"),
                size: BYTES,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// Where a compute pass writes its start and end.
    pub fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Records, after the pass, the copy of its timestamps to the host.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, BYTES);
    }

    /// Milliseconds between the two timestamps, once the submission that
    /// resolved them is done.
    pub fn read_ms(&self, device: &wgpu::Device, period_ns: f32) -> Result<f64> {
        let (tx, rx) = mpsc::channel();
        let slice = self.readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("timestamp readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("cannot map the timestamps: {e}")))?;
        let ticks = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("cannot read the timestamps: {e}")))?;
            let t: &[u64] = bytemuck::cast_slice(&view);
            t[1].saturating_sub(t[0])
        };
        self.readback.unmap();
        Ok(ticks as f64 * f64::from(period_ns) / 1e6)
    }
}

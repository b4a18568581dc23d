//! Host↔device copies through reused, pipelined staging buffers.
//!
//! `queue.write_buffer` allocates a fresh staging buffer per call (wgpu-core
//! `queue.rs`; reuse is planned upstream in gfx-rs/wgpu#9123), and one
//! readback buffer the size of the whole result makes the host wait for the
//! whole copy before it reads a byte. Here each direction has a small ring
//! of [`SLOTS`] staging buffers of at most [`CHUNK`] bytes, made once and
//! reused for every job: while the device copies one chunk, host threads
//! fill or drain another.
//!
//! - Upload slots are `MAP_WRITE | COPY_SRC` and stay mapped between uses
//!   (created mapped, re-mapped right after their copy is submitted; the
//!   map completes when the copy has), so a chunk costs one host copy into
//!   mapped memory plus one device copy.
//! - Download slots are `MAP_READ | COPY_DST`, host-cached memory on
//!   Vulkan: up to [`SLOTS`] chunk copies are in flight, and each chunk is
//!   copied out as soon as its own map completes.
//!
//! Host copies of large chunks are split over the rayon pool: one thread
//! does not saturate host memory, and a fresh destination vector pays a
//! page fault per 4 KiB that several threads share.
//!
//! A ring is locked for a whole transfer, so transfers in one direction
//! run one at a time. After an error its buffers are dropped (their state
//! is unknown) and fresh ones are made on next use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::lock;
use crate::error::{Error, Result};

/// Bytes per staging buffer unless `GpuOptions::staging_chunk_bytes` says
/// otherwise: large enough that per-chunk submits cost little, small
/// enough that several fit beside any job.
pub const CHUNK: u64 = 16 << 20;

/// Staging buffers per direction.
pub const SLOTS: usize = 3;

/// Host copies smaller than this stay on the calling thread.
const PARALLEL_COPY_BYTES: usize = 1 << 20;

/// The two rings of one device.
pub(super) struct Staging {
    chunk: u64,
    upload: Mutex<Vec<Slot>>,
    download: Mutex<Vec<Slot>>,
}

/// What the map callback of a slot reported: `None` while it is pending.
type MapState = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// One staging buffer and the state of its mapping.
struct Slot {
    buf: wgpu::Buffer,
    /// The submission whose completion the pending map waits for.
    pending: Option<wgpu::SubmissionIndex>,
    state: MapState,
}

impl Slot {
    fn new(device: &wgpu::Device, usage: wgpu::BufferUsages, size: u64) -> Slot {
        let mapped = usage.contains(wgpu::BufferUsages::MAP_WRITE);
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("anycore staging"),
            size,
            usage,
            mapped_at_creation: mapped,
        });
        Slot {
            buf,
            pending: None,
            state: Arc::new(Mutex::new(mapped.then_some(Ok(())))),
        }
    }

    /// Asks for the buffer to be mapped once submission `after` is done.
    fn map(&mut self, mode: wgpu::MapMode, bytes: u64, after: wgpu::SubmissionIndex) {
        *lock(&self.state) = None;
        let state = Arc::clone(&self.state);
        self.buf.slice(..bytes).map_async(mode, move |r| {
            *lock(&state) = Some(r);
        });
        self.pending = Some(after);
    }

    /// Waits until the buffer is mapped.
    fn wait_mapped(&mut self, device: &wgpu::Device) -> Result<()> {
        if let Some(index) = self.pending.take() {
            device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(format!("waiting for a GPU copy failed: {e}")))?;
        }
        // Another thread's poll may have taken this map's callback off
        // wgpu's queue and not yet run it when ours returns: wait for it.
        let start = Instant::now();
        loop {
            match lock(&self.state).clone() {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => {
                    return Err(Error::Gpu(format!("cannot map a staging buffer: {e}")));
                }
                None if start.elapsed() > MAP_TIMEOUT => {
                    return Err(Error::Gpu("a staging buffer's map never completed".into()));
                }
                None => {}
            }
            device
                .poll(wgpu::PollType::Poll)
                .map_err(|e| Error::Gpu(format!("polling the GPU failed: {e}")))?;
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// How long a map may stay pending after its copy is done.
const MAP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes a copy of `len` bytes moves: copies go in whole 4-byte words.
fn words(len: usize) -> u64 {
    (len as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
}

/// The ring's slot `i`, made on first use.
fn slot<'r>(
    ring: &'r mut Vec<Slot>,
    i: usize,
    device: &wgpu::Device,
    usage: wgpu::BufferUsages,
    size: u64,
) -> &'r mut Slot {
    while ring.len() <= i {
        ring.push(Slot::new(device, usage, size));
    }
    &mut ring[i]
}

/// `WriteOnly<[u8]>` is not `Send` only because wgpu-types' impl asks for
/// `T: Sized` (write_only.rs); each piece is a disjoint range of mapped
/// memory written by one thread.
struct Piece<'a>(wgpu::WriteOnly<'a, [u8]>);
// SAFETY: the pieces are disjoint and each is written by exactly one thread.
unsafe impl Send for Piece<'_> {}

/// Bytes per thread for a host copy of `len` bytes: one piece per pool
/// thread, at least 256 KiB.
fn piece_len(len: usize) -> usize {
    len.div_ceil(rayon::current_num_threads()).max(1 << 18)
}

/// Copies `src` into mapped memory, over several threads when it is large.
fn fill(mut dst: wgpu::WriteOnly<'_, [u8]>, src: &[u8]) {
    if src.len() < PARALLEL_COPY_BYTES {
        dst.copy_from_slice(src);
        return;
    }
    let step = piece_len(src.len());
    let mut pieces = Vec::new();
    for part in src.chunks(step) {
        let (head, tail) = dst.split_at(part.len());
        pieces.push((Piece(head), part));
        dst = tail;
    }
    pieces.into_par_iter().for_each(|(mut piece, part)| {
        piece.0.copy_from_slice(part);
    });
}

/// Copies mapped memory into `dst`, over several threads when it is large.
fn drain(src: &[u8], dst: &mut [u8]) {
    if dst.len() < PARALLEL_COPY_BYTES {
        dst.copy_from_slice(src);
        return;
    }
    let step = piece_len(dst.len());
    dst.par_chunks_mut(step)
        .zip(src.par_chunks(step))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

impl Staging {
    /// Rings of staging buffers of `chunk` bytes (at least 4 KiB).
    pub fn new(chunk: u64) -> Staging {
        Staging {
            chunk: chunk
                .max(4096)
                .next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
            upload: Mutex::default(),
            download: Mutex::default(),
        }
    }

    /// Copies each host slice into its buffer (from offset 0) and waits
    /// until the device has it; returns the submissions made. Slices of any
    /// length; a partial last word is padded with zeros (buffers are whole
    /// words long).
    pub fn upload(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        max_buffer_size: u64,
        writes: &[(&wgpu::Buffer, &[u8])],
    ) -> Result<u64> {
        let mut ring = lock(&self.upload);
        let chunk = self.chunk.min(max_buffer_size);
        let result = upload(&mut ring, device, queue, chunk, writes);
        if result.is_err() {
            ring.clear();
        }
        result
    }

    /// Reads `out.len()` bytes of `src` from byte `offset` (a multiple of
    /// 4); returns the submissions made.
    pub fn download(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        max_buffer_size: u64,
        (src, offset): (&wgpu::Buffer, u64),
        out: &mut [u8],
    ) -> Result<u64> {
        let mut ring = lock(&self.download);
        let chunk = self.chunk.min(max_buffer_size);
        let result = download(&mut ring, device, queue, chunk, (src, offset), out);
        if result.is_err() {
            ring.clear();
        }
        result
    }
}

const UPLOAD: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_WRITE.union(wgpu::BufferUsages::COPY_SRC);
const DOWNLOAD: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

fn upload(
    ring: &mut Vec<Slot>,
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    chunk: u64,
    writes: &[(&wgpu::Buffer, &[u8])],
) -> Result<u64> {
    let chunk = chunk as usize;
    let mut next = 0;
    let mut last = None;
    for (dst, data) in writes {
        for (i, part) in data.chunks(chunk).enumerate() {
            let s = slot(ring, next % SLOTS, device, UPLOAD, chunk as u64);
            next += 1;
            s.wait_mapped(device)?;
            let bytes = words(part.len());
            {
                let mut view = s
                    .buf
                    .slice(..bytes)
                    .get_mapped_range_mut()
                    .map_err(|e| Error::Gpu(format!("cannot write a staging buffer: {e}")))?;
                let (body, mut pad) = view.slice(..).split_at(part.len());
                fill(body, part);
                pad.copy_from_slice(&[0u8; 4][..bytes as usize - part.len()]);
            }
            s.buf.unmap();
            let mut encoder = device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&s.buf, 0, dst, (i * chunk) as u64, bytes);
            let index = queue.submit([encoder.finish()]);
            s.map(wgpu::MapMode::Write, chunk as u64, index.clone());
            last = Some(index);
        }
    }
    if let Some(index) = last {
        device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("waiting for an upload failed: {e}")))?;
    }
    Ok(next as u64)
}

fn download(
    ring: &mut Vec<Slot>,
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    chunk: u64,
    (src, offset): (&wgpu::Buffer, u64),
    out: &mut [u8],
) -> Result<u64> {
    let chunk = chunk as usize;
    let lens: Vec<usize> = out.chunks(chunk).map(<[u8]>::len).collect();
    let request = |ring: &mut Vec<Slot>, i: usize, len: usize| {
        let s = slot(ring, i % SLOTS, device, DOWNLOAD, chunk as u64);
        let bytes = words(len);
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, offset + (i * chunk) as u64, &s.buf, 0, bytes);
        let index = queue.submit([encoder.finish()]);
        s.map(wgpu::MapMode::Read, bytes, index);
    };
    for (i, &len) in lens.iter().enumerate().take(SLOTS) {
        request(ring, i, len);
    }
    for (i, part) in out.chunks_mut(chunk).enumerate() {
        {
            let s = &mut ring[i % SLOTS];
            s.wait_mapped(device)?;
            let view = s
                .buf
                .slice(..words(part.len()))
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("cannot read a staging buffer: {e}")))?;
            drain(&view[..part.len()], part);
        }
        ring[i % SLOTS].buf.unmap();
        if let Some(&len) = lens.get(i + SLOTS) {
            request(ring, i + SLOTS, len);
        }
    }
    Ok(lens.len() as u64)
}

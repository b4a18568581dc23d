//! One run's traffic with the device: buffers, uploads, dispatches and
//! readbacks, each phase timed and waited for. Uploads and readbacks go
//! through the staging rings of [`super::staging`]; compute passes are
//! timed on the device's clock where it has one ([`super::timer`]).
//!
//! Waiting after every phase costs a little overlap but gives honest
//! upload/compute/download times and lets chunked jobs reuse one set of
//! buffers. Buffers taken here go back to the pool when the run finishes
//! cleanly; after a GPU error they are dropped instead.

use std::num::NonZeroU64;

use std::time::Instant;

use wgpu::util::DeviceExt;

use std::collections::BTreeMap;

use super::pool::BufferPool;
use super::{GpuBackend, lock, timer};
use crate::backend::{Timings, Traffic};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, TensorData};

/// One dispatch: a pipeline, its storage buffers in binding order (each
/// with the offset and number of bytes to bind), the bytes of its uniform
/// parameters (bound after the storage buffers), and the workgroup grid.
pub(super) struct Pass<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    storage: Vec<(&'a wgpu::Buffer, u64, u64)>,
    params: Vec<u8>,
    groups: (u32, u32, u32),
}

impl<'a> Pass<'a> {
    /// A dispatch of `groups` workgroups of `pipeline` over `storage`, with
    /// `params` as its uniform (a `#[repr(C)]` struct padded to 16 bytes).
    pub fn new<P: bytemuck::Pod>(
        pipeline: &'a wgpu::ComputePipeline,
        storage: Vec<(&'a wgpu::Buffer, u64)>,
        params: &P,
        groups: (u32, u32, u32),
    ) -> Self {
        let storage = storage
            .into_iter()
            .map(|(b, bytes)| (b, 0, bytes))
            .collect();
        Pass::at(pipeline, storage, params, groups)
    }

    /// Like [`Pass::new`], with each buffer bound from an offset (a
    /// multiple of the device's storage offset alignment): `(buffer,
    /// offset, bytes)`.
    pub fn at<P: bytemuck::Pod>(
        pipeline: &'a wgpu::ComputePipeline,
        storage: Vec<(&'a wgpu::Buffer, u64, u64)>,
        params: &P,
        groups: (u32, u32, u32),
    ) -> Self {
        Pass {
            pipeline,
            storage,
            params: bytemuck::bytes_of(params).to_vec(),
            groups,
        }
    }
}

impl<'a> Pass<'a> {
    /// Like [`Pass::at`], with the uniform given as words (a multiple of
    /// four: 16 bytes).
    pub fn with_words(
        pipeline: &'a wgpu::ComputePipeline,
        storage: Vec<(&'a wgpu::Buffer, u64, u64)>,
        params: &[u32],
        groups: (u32, u32, u32),
    ) -> Self {
        Pass {
            pipeline,
            storage,
            params: bytemuck::cast_slice(params).to_vec(),
            groups,
        }
    }
}

/// The state of one run on a [`GpuBackend`].
pub(super) struct Exec<'g> {
    gpu: &'g GpuBackend,
    timings: Timings,
    traffic: Traffic,
    held: Vec<wgpu::Buffer>,
    discard: bool,
    repeats: u32,
    /// Outputs the caller keeps on the device, by name.
    keep: Vec<String>,
    /// Those kept so far.
    kept: BTreeMap<String, Handle>,
    /// Ids of the handles this run reads: never spilled to make room.
    pinned: Vec<u64>,
    /// Why something was not kept on the device, for the job's report.
    note: Option<String>,
    /// Record compute passes into the backend's batch instead of
    /// submitting them ([`GpuBackend::batched`]).
    defer: bool,
}

/// Where one input of a run is: a buffer holding all of it on the device,
/// or host memory that is uploaded chunk by chunk into `scratch`.
pub(super) struct Source<'h> {
    device: Option<wgpu::Buffer>,
    host: &'h [u8],
    scratch: Option<wgpu::Buffer>,
}

impl Source<'_> {
    /// All of an input, in `buf` on the device.
    fn on_device(buf: wgpu::Buffer) -> Self {
        Source {
            device: Some(buf),
            host: &[],
            scratch: None,
        }
    }

    /// The buffer and offset to bind for the chunk starting `start` bytes
    /// into the tensor, once [`Exec::stage`] has put it there.
    pub fn at(&self, start: u64) -> (&wgpu::Buffer, u64) {
        match (&self.device, &self.scratch) {
            (Some(buf), _) => (buf, start),
            (None, Some(scratch)) => (scratch, 0),
            (None, None) => unreachable!("a host source has a scratch buffer"),
        }
    }
}

/// Where one output of a run goes: a buffer for all of it, kept on the
/// device, or a scratch buffer each chunk is read back from.
pub(super) struct Sink {
    buffer: wgpu::Buffer,
    whole: bool,
}

impl Sink {
    /// Whether the output stays on the device whole (else each chunk must
    /// be drained).
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// The buffer and offset to bind for the chunk starting `start` bytes
    /// into the output.
    pub fn at(&self, start: u64) -> (&wgpu::Buffer, u64) {
        (&self.buffer, if self.whole { start } else { 0 })
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl<'g> Exec<'g> {
    pub fn new(gpu: &'g GpuBackend) -> Self {
        Exec {
            gpu,
            timings: Timings::default(),
            traffic: Traffic::default(),
            held: Vec::new(),
            discard: false,
            repeats: 1,
            keep: Vec::new(),
            kept: BTreeMap::new(),
            pinned: Vec::new(),
            note: None,
            defer: gpu.batching(),
        }
    }

    /// Submits and waits for every compute call of this run, also inside a
    /// batch (whose passes recorded so far go first): for timing kernels.
    pub fn immediate(&mut self) {
        self.defer = false;
    }

    /// Submits the batch's passes recorded so far, before a transfer or an
    /// immediate dispatch that must come after them in the queue.
    fn submit_batch(&mut self) {
        if self.gpu.submit_batch() {
            self.traffic.submissions += 1;
        }
    }

    /// Keeps the outputs named in `keep` on the device where the kernel's
    /// encoding can ([`Exec::sink`]).
    pub fn keep_outputs(&mut self, keep: &[String]) {
        self.keep = keep.to_vec();
    }

    /// Where input `h` is for this run: its buffer if it is resident here;
    /// else, if other handles share it (it will be read again), uploaded
    /// whole into a new resident buffer attached to it, room made by
    /// spilling; else host memory, staged `chunk_bytes` at a time.
    pub fn source<'h>(&mut self, h: &'h Handle, chunk_bytes: u64) -> Result<Source<'h>> {
        self.pinned.push(h.id());
        let gpu = self.gpu;
        if let Some(buf) = gpu.residency.buffer(h) {
            return Ok(Source::on_device(buf));
        }
        let host = self.host(h)?;
        let padded = host.as_bytes().len().next_multiple_of(16) as u64;
        // Read again later: another holder than this run and the copies its
        // caller keeps to re-run it elsewhere ([`GpuBackend::batched`]).
        let keepable = h.holders() > 1 + gpu.spare_holders() && host.dtype() != DType::U8;
        let max = gpu.limits.max_buffer_size;
        if keepable && padded <= max && self.make_room(BufferPool::allocation(padded, max))? {
            let buf = gpu.pool.take(&gpu.device, STORAGE, padded, max);
            self.upload(&[(&buf, host.as_bytes())])?;
            gpu.residency.attach(h, buf.clone(), &gpu.pool);
            return Ok(Source::on_device(buf));
        }
        if keepable {
            self.note = Some(format!(
                "an input ({} MiB) was streamed through staging, not kept on the GPU: it is \
                 larger than the GPU's budget of {} MiB for kept tensors (or its largest buffer)",
                padded >> 20,
                gpu.residency.budget() >> 20
            ));
        }
        let scratch = self.storage(chunk_bytes.min(padded).max(16));
        Ok(Source {
            device: None,
            host: host.as_bytes(),
            scratch: Some(scratch),
        })
    }

    /// Uploads, in one pass through the staging ring, the chunks of the
    /// host sources among `parts` — each `(source, start byte, bytes)` —
    /// into their scratch buffers; resident sources need nothing.
    pub fn stage(&mut self, parts: &[(&Source, u64, u64)]) -> Result<()> {
        let writes: Vec<(&wgpu::Buffer, &[u8])> = parts
            .iter()
            .filter_map(|(src, start, len)| {
                let scratch = src.scratch.as_ref()?;
                let (start, len) = (*start as usize, *len as usize);
                Some((scratch, &src.host[start..start + len]))
            })
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        self.upload(&writes)
    }

    /// Puts `bytes` of `src`, from byte `start`, at the start of `dst`:
    /// uploaded from host memory, or copied on the device from its kept
    /// buffer.
    pub fn load(&mut self, src: &Source, start: u64, bytes: u64, dst: &wgpu::Buffer) -> Result<()> {
        match &src.device {
            Some(buf) => {
                self.copy_range((buf, start), (dst, 0), bytes);
                Ok(())
            }
            None => {
                let (start, len) = (start as usize, bytes as usize);
                self.upload(&[(dst, &src.host[start..start + len])])
            }
        }
    }

    /// Copies `bytes` on the device from `src` to `dst`, each `(buffer,
    /// offset)`, in order with the passes around it.
    pub fn copy_range(&mut self, src: (&wgpu::Buffer, u64), dst: (&wgpu::Buffer, u64), bytes: u64) {
        self.encode(|encoder| encoder.copy_buffer_to_buffer(src.0, src.1, dst.0, dst.1, bytes));
    }

    /// Zeroes the first `bytes` (a multiple of 4) of `buf` on the device,
    /// in order with the passes around it.
    pub fn clear(&mut self, buf: &wgpu::Buffer, bytes: u64) {
        self.encode(|encoder| encoder.clear_buffer(buf, 0, Some(bytes)));
    }

    /// Records device-side commands: into the batch inside one, else
    /// submitted at once (after the batch's; queue order keeps them before
    /// anything later, so no wait is needed).
    fn encode(&mut self, record: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let device = &self.gpu.device;
        if self.defer {
            let mut batch = lock(&self.gpu.batch);
            record(batch.get_or_insert_with(|| device.create_command_encoder(&Default::default())));
            return;
        }
        self.submit_batch();
        let mut encoder = device.create_command_encoder(&Default::default());
        record(&mut encoder);
        self.gpu.queue.submit([encoder.finish()]);
        self.traffic.submissions += 1;
    }

    /// `h`'s host copy, read back from this device first if it has none.
    pub fn host<'h>(&mut self, h: &'h Handle) -> Result<&'h TensorData> {
        if h.host().is_none() {
            let Some(buf) = self.gpu.residency.buffer(h) else {
                return Err(Error::bad(format!(
                    "an input ({}) is kept on another engine's GPU; read it there first",
                    h.spec().describe()
                )));
            };
            let mut words = vec![0u32; h.len()];
            self.download_into(&buf, 0, &mut words)?;
            h.set_host(TensorData::from_words(h.dtype(), words));
        }
        Ok(h.host().expect("set above"))
    }

    /// Makes room for `bytes` more of resident buffers within the budget,
    /// spilling the least recently used ones not read by this run (read
    /// home first where they have no host copy); false if they cannot fit.
    fn make_room(&mut self, bytes: u64) -> Result<bool> {
        let residency = &self.gpu.residency;
        let Some(victims) = residency.victims(bytes, &self.pinned) else {
            return Ok(false);
        };
        for victim in victims {
            self.host(&victim)?;
            residency.evict(&victim);
        }
        Ok(true)
    }

    /// Where output `name` of `total` bytes goes: a buffer for all of it,
    /// kept on the device, when the caller keeps it and it fits the device
    /// and its budget; else a scratch buffer of `chunk_bytes` that each
    /// chunk is read back from ([`Exec::drain`]).
    pub fn sink(&mut self, name: &str, total: u64, chunk_bytes: u64) -> Result<Sink> {
        let gpu = self.gpu;
        if self.keep.iter().any(|k| k == name) {
            let max = gpu.limits.max_buffer_size;
            if total <= max && self.make_room(BufferPool::allocation(total, max))? {
                let buf = gpu.pool.take(&gpu.device, STORAGE, total, max);
                self.poison(&buf, total);
                return Ok(Sink {
                    buffer: buf,
                    whole: true,
                });
            }
            self.note = Some(format!(
                "output '{name}' ({} MiB) was kept in host memory: it does not fit the GPU's \
                 budget of {} MiB for kept tensors",
                total >> 20,
                gpu.residency.budget() >> 20
            ));
        }
        Ok(Sink {
            buffer: self.output(chunk_bytes.min(total).max(16)),
            whole: false,
        })
    }

    /// Reads a chunk back from a scratch sink into `out`; a kept sink's
    /// data stays where it is.
    pub fn drain<T: bytemuck::Pod>(&mut self, sink: &Sink, out: &mut [T]) -> Result<()> {
        if sink.whole || out.is_empty() {
            return Ok(());
        }
        self.download_into(&sink.buffer, 0, out)
    }

    /// Ends a kept sink as output `name` of `spec`, kept on the device;
    /// false for a scratch sink (the encoding returns that output itself).
    pub fn finish_sink(&mut self, name: &str, sink: Sink, spec: Spec) -> bool {
        if !sink.whole {
            return false;
        }
        let handle = self.gpu.residency.adopt(spec, sink.buffer, &self.gpu.pool);
        self.kept.insert(name.to_owned(), handle);
        true
    }

    /// The outputs kept on the device, and why any was not.
    pub fn take_kept(&mut self) -> (BTreeMap<String, Handle>, Option<String>) {
        (std::mem::take(&mut self.kept), self.note.take())
    }

    /// Records every [`Exec::compute`] call's passes `repeats` times over,
    /// back to back in one compute pass, and counts the kernel time per
    /// repetition: the kernels' speed on a busy GPU with the data resident,
    /// for benchmarks. Kernels that update in place (`axpy`) then return
    /// the result of several applications.
    pub fn repeat_compute(&mut self, repeats: u32) {
        self.repeats = repeats.max(1);
    }

    /// The backend this run is on.
    pub fn gpu(&self) -> &'g GpuBackend {
        self.gpu
    }

    /// A storage buffer of at least `bytes`, from the pool.
    pub fn storage(&mut self, bytes: u64) -> wgpu::Buffer {
        let buf = self.gpu.pool.take(
            &self.gpu.device,
            STORAGE,
            bytes,
            self.gpu.limits.max_buffer_size,
        );
        self.held.push(buf.clone());
        buf
    }

    /// A storage buffer for results, poisoned when the options ask for it.
    pub fn output(&mut self, bytes: u64) -> wgpu::Buffer {
        let buf = self.storage(bytes);
        self.poison(&buf, bytes);
        buf
    }

    /// Fills the first `bytes` of a fresh output with 0xFF when the options
    /// ask for it, so that an element a kernel forgets shows.
    fn poison(&mut self, buf: &wgpu::Buffer, bytes: u64) {
        if self.gpu.poison {
            // A write lands before the next submission's passes: the
            // batch's recorded ones go first, as they may still read this
            // buffer's last contents (it came back to the pool). (So with
            // poisoning on, as in tests, a batch takes more submissions.)
            self.submit_batch();
            self.gpu
                .queue
                .write_buffer(buf, 0, &vec![0xFF; bytes as usize]);
        }
    }

    /// Copies host data into buffers (each from offset 0) through the
    /// staging ring, and waits.
    pub fn upload(&mut self, writes: &[(&wgpu::Buffer, &[u8])]) -> Result<()> {
        stopped()?;
        self.submit_batch();
        let start = Instant::now();
        let gpu = self.gpu;
        let submissions =
            gpu.staging
                .upload(&gpu.device, &gpu.queue, gpu.limits.max_buffer_size, writes)?;
        self.timings.upload += ms_since(start);
        self.traffic.uploaded_bytes += writes.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        self.traffic.submissions += submissions;
        Ok(())
    }

    /// Records the passes in order, submits them and waits — or, inside
    /// a batch, only records them into it (the batch is submitted before
    /// the next transfer, or at its end).
    pub fn compute(&mut self, passes: &[Pass]) -> Result<()> {
        stopped()?;
        if self.defer {
            let start = Instant::now();
            let (gpu, repeats) = (self.gpu, self.repeats);
            self.encode(|encoder| record(gpu, repeats, encoder, passes, None));
            self.timings.compute += ms_since(start);
            return Ok(());
        }
        self.submit_batch();
        let start = Instant::now();
        let device = &self.gpu.device;
        let timer = self
            .gpu
            .timers
            .as_ref()
            .map(|free| lock(free).pop().unwrap_or_else(|| timer::Kit::new(device)));
        let mut encoder = device.create_command_encoder(&Default::default());
        record(self.gpu, self.repeats, &mut encoder, passes, timer.as_ref());
        if let Some(kit) = &timer {
            kit.resolve(&mut encoder);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.traffic.submissions += 1;
        self.wait()?;
        if let (Some(kit), Some(free)) = (timer, &self.gpu.timers) {
            let ms = kit.read_ms(device, self.gpu.timestamp_period)? / f64::from(self.repeats);
            *self.timings.kernel_device.get_or_insert(0.0) += ms;
            lock(free).push(kit);
        }
        self.timings.compute += ms_since(start) / f64::from(self.repeats);
        Ok(())
    }

    /// Copies `bytes` between `a` and `b` on the device `reps` times (back
    /// and forth) in one submission, waits, and returns the milliseconds per
    /// copy: the device's own memory bandwidth. Many copies per submission
    /// keep the host's submit and wake-up out of the figure.
    pub fn copy(
        &mut self,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bytes: u64,
        reps: u32,
    ) -> Result<f64> {
        self.submit_batch();
        let start = Instant::now();
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for i in 0..reps {
            let (src, dst) = if i % 2 == 0 { (a, b) } else { (b, a) };
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.traffic.submissions += 1;
        self.wait()?;
        Ok(ms_since(start) / f64::from(reps.max(1)))
    }

    /// Reads `out.len()` elements from `buf`, starting `offset` bytes in.
    pub fn download_into<T: bytemuck::Pod>(
        &mut self,
        buf: &wgpu::Buffer,
        offset: u64,
        out: &mut [T],
    ) -> Result<()> {
        let bytes = std::mem::size_of_val(out) as u64;
        if bytes == 0 {
            return Ok(());
        }
        self.submit_batch();
        let start = Instant::now();
        let gpu = self.gpu;
        let submissions = gpu.staging.download(
            &gpu.device,
            &gpu.queue,
            gpu.limits.max_buffer_size,
            (buf, offset),
            bytemuck::cast_slice_mut::<T, u8>(out),
        )?;
        self.timings.download += ms_since(start);
        self.traffic.downloaded_bytes += bytes;
        self.traffic.submissions += submissions;
        Ok(())
    }

    fn wait(&self) -> Result<()> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(drop)
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))
    }

    /// Drops this run's buffers instead of pooling them (after an error
    /// they may be invalid or still in use).
    pub fn discard(&mut self) {
        self.discard = true;
    }

    /// Ends the run, returning the phase timings (total left at 0) and
    /// what moved. (The poisoning of fresh outputs in tests is not counted:
    /// it is not the job's data.)
    pub fn finish(self) -> (Timings, Traffic) {
        (self.timings, self.traffic)
    }
}

impl Drop for Exec<'_> {
    fn drop(&mut self) {
        if !self.discard {
            for buf in self.held.drain(..) {
                self.gpu.pool.give(buf);
            }
        }
    }
}

/// Records one compute pass of `passes` on `gpu`, each repeated `repeats`
/// times ([`Exec::repeat_compute`]), into `encoder`, timed by `timer`.
fn record(
    gpu: &GpuBackend,
    repeats: u32,
    encoder: &mut wgpu::CommandEncoder,
    passes: &[Pass],
    timer: Option<&timer::Kit>,
) {
    let device = &gpu.device;
    {
        let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: timer.map(timer::Kit::writes),
        });
        let mut groups = Vec::with_capacity(passes.len());
        for pass in passes {
            // Uniform parameters are tiny: a fresh buffer per pass, not pooled.
            let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("anycore params"),
                contents: &pass.params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bindings =
                pass.storage
                    .iter()
                    .copied()
                    .chain([(&params, 0, pass.params.len() as u64)]);
            let entries: Vec<wgpu::BindGroupEntry> = bindings
                .enumerate()
                .map(|(i, (buf, offset, bytes))| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buf,
                        offset,
                        size: NonZeroU64::new(bytes),
                    }),
                })
                .collect();
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pass.pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            groups.push(bind_group);
        }
        for _ in 0..repeats {
            for (pass, bind_group) in passes.iter().zip(&groups) {
                cpass.set_pipeline(pass.pipeline);
                cpass.set_bind_group(0, bind_group, &[]);
                let (x, y, z) = pass.groups;
                cpass.dispatch_workgroups(x, y, z);
            }
        }
    }
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// [`Error::Cancelled`] once the job was cancelled: checked before each
/// dispatch and upload, so that a cancelled job submits no more work.
fn stopped() -> Result<()> {
    if crate::kernel::stop::requested() {
        return Err(Error::Cancelled);
    }
    Ok(())
}

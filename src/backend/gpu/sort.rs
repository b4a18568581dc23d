//! Host side of `shaders/sort.wgsl`: the order bits (and payload) up, eight
//! passes of 4-bit digits in one submission — each a count, a scan of the
//! counts with the scan kernel's shader, and a scatter between two
//! buffers — and the sorted keys (and payload) down.
//!
//! A sort cannot be split into chunks like a stream: keys past one storage
//! binding are refused with an error that says so.

use super::exec::{Exec, Pass};
use super::grid;
use super::scan::ScanPipelines;
use crate::error::{Error, Result};
use crate::kernel::sort::{GPU_DIGIT_BITS, Payload, Sort, TILE};
use crate::kernel::{Kernel, Outputs};

/// Matches `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    tiles: u32,
    shift: u32,
    has_payload: u32,
}

/// Buckets per digit.
const RADIX: usize = 1 << GPU_DIGIT_BITS;

pub(super) fn run(exec: &mut Exec, t: &Sort) -> Result<Outputs> {
    // Sorted from the host copies (made first where they are missing).
    exec.host(&t.keys)?;
    if let Payload::Values(values) = &t.payload {
        exec.host(values)?;
    }
    let mut bits = t.order_bits();
    let mut payload = t.start_payload();
    let n = bits.len();
    if n < 2 {
        return Ok(t.outputs(bits, payload));
    }
    let gpu = exec.gpu();
    if n > gpu.binding_elements(4) {
        return Err(Error::Gpu(format!(
            "sort: {n} keys are more than one storage binding holds here ({}); the CPU \
             backend sorts any number",
            gpu.binding_elements(4)
        )));
    }
    let tiles = n.div_ceil(TILE as usize);
    if tiles > gpu.max_groups() as usize {
        return Err(Error::Gpu(format!(
            "sort: {n} keys need more workgroups than one dispatch holds here"
        )));
    }
    let count = gpu.pipeline_at(Kernel::Sort, "count", 0, &[]);
    let scatter = gpu.pipeline_at(Kernel::Sort, "scatter", 0, &[]);
    let scan = ScanPipelines::wrapping(gpu);
    let bytes = (n * 4) as u64;
    let keys = [exec.storage(bytes), exec.storage(bytes)];
    // Without a payload, two small stand-ins fill its bindings.
    let pay_bytes = if payload.is_some() { bytes } else { 4 };
    let pay = [exec.storage(pay_bytes), exec.storage(pay_bytes)];
    let counts_len = RADIX * tiles;
    let counts = exec.storage((counts_len * 4) as u64);
    let carry = exec.storage(ScanPipelines::sums_bytes(counts_len));
    let mut writes: Vec<(&wgpu::Buffer, &[u8])> = vec![(&keys[0], bytemuck::cast_slice(&bits))];
    if let Some(p) = &payload {
        writes.push((&pay[0], bytemuck::cast_slice(p)));
    }
    exec.upload(&writes)?;
    let groups = (grid::groups_for(n, TILE), 1, 1);
    let mut passes = Vec::new();
    for pass in 0..32 / GPU_DIGIT_BITS {
        let (from, to) = ((pass % 2) as usize, ((pass + 1) % 2) as usize);
        let params = Params {
            n: n as u32,
            tiles: tiles as u32,
            shift: pass * GPU_DIGIT_BITS,
            has_payload: u32::from(payload.is_some()),
        };
        let storage = || {
            vec![
                (&keys[from], bytes),
                (&counts, (counts_len * 4) as u64),
                (&carry, carry.size()),
                (&keys[to], bytes),
                (&pay[from], pay_bytes),
                (&pay[to], pay_bytes),
            ]
        };
        passes.push(Pass::new(&count, storage(), &params, groups));
        passes.extend(scan.passes(&counts, counts_len, &carry, false));
        passes.push(Pass::new(&scatter, storage(), &params, groups));
    }
    exec.compute(&passes)?;
    // An even number of passes: the result is back in the first buffers.
    exec.download_into(&keys[0], 0, &mut bits)?;
    if let Some(p) = &mut payload {
        exec.download_into(&pay[0], 0, p)?;
    }
    Ok(t.outputs(bits, payload))
}

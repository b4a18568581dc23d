//! The device's memory bandwidth as a WGSL kernel sees it: `shaders/copy.wgsl`
//! copies one buffer into another with the access pattern of the
//! memory-bound kernels. Not a catalog kernel; `anycore bench` uses it as
//! the GPU copy baseline beside `copy_buffer_to_buffer`, which on some
//! drivers runs far below the memory's speed (NVIDIA's Vulkan driver gave
//! 0.82 TB/s on an H100 whose CUDA copy moves 2.9 TB/s).

use super::GpuBackend;
use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::ShaderInfo;

/// The copy shader.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "copy.wgsl",
    source: include_str!("../../../shaders/copy.wgsl"),
    entry_points: &[("copy", [WORKGROUP, 1, 1])],
    trusted: true,
};

const WORKGROUP: u32 = 256;
/// Workgroups in the grid, as `axpy` uses.
const GROUPS: u32 = 4096;
/// Copies per submission: enough that one submission's overhead vanishes.
const REPS: u32 = 8;

/// Matches `Params` in the shader (padded to 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// Milliseconds per copy of the first `bytes` (whole vec4, at most one
/// binding) of `src` into `dst`: the mean over a batch of [`REPS`] copies
/// back and forth in one pass, on the device's clock where it has one.
pub(super) fn time(
    gpu: &GpuBackend,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    bytes: u64,
) -> Result<f64> {
    // Compiled as the catalog's shaders are (unchecked where trusted), but
    // not cached: the bench times it a few times per run.
    let module = gpu.module(&SHADER);
    let pipeline = gpu.compile(&SHADER, &module, SHADER.entry_points[0].0, &[]);
    let mut exec = Exec::new(gpu);
    let n = u32::try_from(bytes / 16).unwrap_or(u32::MAX);
    let groups = grid::stream_groups_for(bytes as usize / 4, WORKGROUP).clamp(1, GROUPS);
    let params = Params { n, _pad: [0; 3] };
    let passes: Vec<Pass> = (0..REPS)
        .map(|i| {
            let (a, b) = if i % 2 == 0 { (src, dst) } else { (dst, src) };
            Pass::new(
                &pipeline,
                vec![(a, bytes), (b, bytes)],
                &params,
                (groups, 1, 1),
            )
        })
        .collect();
    let run = exec.compute(&passes);
    run.inspect_err(|_| exec.discard())?;
    let (t, _) = exec.finish();
    Ok(t.kernel_device.unwrap_or(t.compute) / f64::from(REPS))
}

//! What a benchmark size means for each kernel — the task it builds, the
//! sizes swept by default, the unit its throughput is counted in — asked
//! of the kernel's own [`crate::kernel::Profile`].

use crate::error::{Error, Result};
use crate::kernel::{Kernel, Task};

pub use crate::kernel::axpy::BENCH_A as AXPY_A;
pub use crate::kernel::profile::{Bandwidth, Unit};

/// Sizes swept when `--sizes` is not given.
pub fn default_sizes(kernel: Kernel, quick: bool) -> Vec<usize> {
    let p = kernel.profile();
    if quick {
        p.sweep.quick_sizes
    } else {
        p.sweep.sizes
    }
    .to_vec()
}

/// Checks a size the user gave for a kernel.
pub fn check_size(kernel: Kernel, size: usize) -> Result<()> {
    let p = kernel.profile();
    if size == 0 || size > p.sweep.max_size {
        return Err(Error::bad(format!(
            "--sizes: {size} is out of range for {kernel} (choose 1 to {}, {})",
            p.sweep.max_size, p.sweep.size_means
        )));
    }
    Ok(())
}

/// A task of `size` for `kernel`, with random inputs from `seed`.
pub fn task(kernel: Kernel, size: usize, seed: u64) -> Result<Task> {
    (kernel.profile().task)(size, seed)
}

/// The unit a kernel is measured in.
pub fn unit(kernel: Kernel) -> Unit {
    kernel.profile().unit
}

/// Bytes, operations or pixels in one run of `kernel` at `size`.
pub fn amount(kernel: Kernel, size: usize) -> f64 {
    (kernel.profile().amount)(size)
}

/// Throughput, in the kernel's unit, of one run taking `ms`.
pub fn throughput(kernel: Kernel, size: usize, ms: f64) -> f64 {
    amount(kernel, size) / (ms * 1e-3) / unit(kernel).scale
}

/// The machine bandwidth a memory-bound kernel is held against, if any.
pub fn bandwidth(kernel: Kernel) -> Option<Bandwidth> {
    kernel.profile().bandwidth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_counts_the_units_the_table_names() {
        // 2·1000³ flops in 1 s is 2 GFLOP/s; 12·10⁹ bytes in 1 s is 12 GB/s.
        assert!((throughput(Kernel::Matmul, 1000, 1000.0) - 2.0).abs() < 1e-12);
        assert!((throughput(Kernel::Axpy, 1_000_000_000, 1000.0) - 12.0).abs() < 1e-9);
        assert!((throughput(Kernel::Mandelbrot, 1000, 1.0) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn sizes_out_of_range_are_refused_with_the_kernel_named() {
        let e = check_size(Kernel::Matmul, 0).unwrap_err().to_string();
        assert!(e.contains("matmul") && e.contains("--sizes"), "{e}");
        assert!(check_size(Kernel::Mandelbrot, 100_000).is_err());
        assert!(check_size(Kernel::Axpy, 1 << 20).is_ok());
    }
}

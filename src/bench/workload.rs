//! What a benchmark size means for each kernel: the task it builds, the
//! sizes swept by default, and the unit its throughput is counted in.

use crate::error::{Error, Result};
use crate::kernel::axpy::Axpy;
use crate::kernel::mandelbrot::Mandelbrot;
use crate::kernel::matmul::Matmul;
use crate::kernel::random::random_tensor;
use crate::kernel::reduce::{Reduce, ReduceOp};
use crate::kernel::{Kernel, Task};
use crate::tensor::{DType, TensorData};

/// The scale `axpy` runs with (any value does; this one keeps repeated
/// in-place runs of the baseline loop from growing without bound).
pub const AXPY_A: f32 = 0.5;

/// Sizes swept when `--sizes` is not given.
pub fn default_sizes(kernel: Kernel, quick: bool) -> Vec<usize> {
    let powers = |from: u32, to: u32, step: usize| -> Vec<usize> {
        (from..=to).step_by(step).map(|p| 1usize << p).collect()
    };
    match (kernel, quick) {
        (Kernel::Axpy | Kernel::Reduce, true) => powers(12, 24, 4),
        (Kernel::Axpy | Kernel::Reduce, false) => powers(10, 26, 2),
        (Kernel::Matmul, true) => vec![128, 512, 1024],
        (Kernel::Matmul, false) => powers(6, 11, 1),
        (Kernel::Mandelbrot, true) => vec![256, 1024],
        (Kernel::Mandelbrot, false) => powers(6, 12, 1),
    }
}

/// Checks a size the user gave for a kernel.
pub fn check_size(kernel: Kernel, size: usize) -> Result<()> {
    let max = match kernel {
        // 2³⁰ f32 is 4 GiB per vector.
        Kernel::Axpy | Kernel::Reduce => 1 << 30,
        Kernel::Matmul => 16_384,
        Kernel::Mandelbrot => 46_340,
    };
    if size == 0 || size > max {
        return Err(Error::bad(format!(
            "--sizes: {size} is out of range for {kernel} (choose 1 to {max}{})",
            match kernel {
                Kernel::Matmul => ", the n of n×n matrices",
                Kernel::Mandelbrot => ", the n of an n×n image",
                _ => " elements",
            }
        )));
    }
    Ok(())
}

/// A task of `size` for `kernel`, with random inputs from `seed`.
pub fn task(kernel: Kernel, size: usize, seed: u64) -> Result<Task> {
    let f32s = |n: usize, seed: u64| -> Result<Vec<f32>> {
        match random_tensor(DType::F32, &[n], seed)?.into_data() {
            TensorData::F32(v) => Ok(v),
            _ => unreachable!("asked for f32"),
        }
    };
    Ok(match kernel {
        Kernel::Axpy => Task::Axpy(Axpy::new(AXPY_A, f32s(size, seed)?, f32s(size, seed + 1)?)?),
        Kernel::Reduce => Task::Reduce(Reduce::new(
            ReduceOp::Sum,
            TensorData::F32(f32s(size, seed)?),
        )?),
        Kernel::Matmul => {
            let (a, b) = (f32s(size * size, seed)?, f32s(size * size, seed + 1)?);
            Task::Matmul(Matmul::new(size, size, size, a, b)?)
        }
        Kernel::Mandelbrot => Task::Mandelbrot(Mandelbrot::new(size as u32, size as u32)?),
    })
}

/// How a kernel's throughput is counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    /// Shown after the number: "GB/s", "GFLOP/s", "Mpixel/s".
    pub name: &'static str,
    /// What one unit of work is, for the table's heading.
    pub counts: &'static str,
    scale: f64,
}

/// The unit a kernel is measured in.
pub fn unit(kernel: Kernel) -> Unit {
    match kernel {
        Kernel::Axpy => Unit {
            name: "GB/s",
            counts: "12 bytes per element: x and y read, y written",
            scale: 1e9,
        },
        Kernel::Reduce => Unit {
            name: "GB/s",
            counts: "4 bytes per element read (f32 sum)",
            scale: 1e9,
        },
        Kernel::Matmul => Unit {
            name: "GFLOP/s",
            counts: "2·n³ floating-point operations for n×n by n×n (f32)",
            scale: 1e9,
        },
        Kernel::Mandelbrot => Unit {
            name: "Mpixel/s",
            counts: "n² pixels, 256 iterations at most",
            scale: 1e6,
        },
    }
}

/// Bytes, operations or pixels in one run of `kernel` at `size`.
pub fn amount(kernel: Kernel, size: usize) -> f64 {
    let n = size as f64;
    match kernel {
        Kernel::Axpy => 12.0 * n,
        Kernel::Reduce => 4.0 * n,
        Kernel::Matmul => 2.0 * n * n * n,
        Kernel::Mandelbrot => n * n,
    }
}

/// Throughput, in the kernel's unit, of one run taking `ms`.
pub fn throughput(kernel: Kernel, size: usize, ms: f64) -> f64 {
    amount(kernel, size) / (ms * 1e-3) / unit(kernel).scale
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

//! What the rest of the tree needs to know about a kernel beyond running
//! it: what a "size" means for it, the sizes the bench sweeps, the unit its
//! throughput is counted in, the memory bandwidth it is bound by (if any),
//! a task of a given size with random inputs (for the bench and the cost
//! model's probe), and its work units (for the cost model). Each kernel's
//! module declares its [`Profile`]; [`super::Kernel::profile`] finds it.

use super::Task;
use crate::error::Result;

/// A kernel's facts for the bench, the probe and the cost model.
#[derive(Debug)]
pub struct Profile {
    /// What a size means and which sizes it is measured at.
    pub sweep: Sweep,
    /// The unit of its throughput.
    pub unit: Unit,
    /// Units of work (bytes, operations, pixels) in one run at a size.
    pub amount: fn(usize) -> f64,
    /// The machine bandwidth a memory-bound kernel is held against.
    pub bandwidth: Option<Bandwidth>,
    /// A task of a size, with random inputs drawn from a seed.
    pub task: fn(usize, u64) -> Result<Task>,
    /// What the bench times beside it, in order of preference: at each size
    /// the first one available is the baseline its rows are compared with
    /// (timed in turn with the CPU, run after run); the others are timed
    /// apart, with fewer runs.
    pub baselines: &'static [Baseline],
    /// Other forms of the kernel (other parameters) the bench times at one
    /// size beside NumPy and the plain rayon loop: `map`'s other
    /// expressions.
    pub variants: &'static [Variant],
}

/// A kernel with other parameters, as the bench times it
/// ([`Profile::variants`]).
#[derive(Debug)]
pub struct Variant {
    /// What it is, as the report names it.
    pub label: &'static str,
    /// The size it is measured at (`anycore bench --quick`: `quick_size`;
    /// `--sizes` overrides both).
    pub size: usize,
    /// The size `--quick` measures it at.
    pub quick_size: usize,
    /// A task of a size, random inputs drawn from a seed.
    pub task: fn(usize, u64) -> Result<Task>,
    /// NumPy doing the same, if it can.
    pub numpy: Option<NumpyCode>,
}

/// A baseline the bench times beside a kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Baseline {
    /// The plain rayon loop of the operation ([`super::Task::plain_loop`]),
    /// up to `max_size` (past it, one run takes many seconds).
    RayonLoop {
        /// The largest size it is timed at.
        max_size: usize,
    },
    /// NumPy doing the same in a Python process that stays up for the whole
    /// bench (when there is Python with NumPy).
    Numpy(NumpyCode),
    /// One thread's run divided by the thread count, and beside it one
    /// single-thread run per thread started together: what the cores give
    /// alone and when all are busy.
    SingleThreads,
}

/// Python that NumPy runs as a baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NumpyCode {
    /// Makes the inputs for a size `n`, with `np` (NumPy) and `rng` (a
    /// seeded `np.random.Generator`) at hand.
    pub setup: &'static str,
    /// The expression timed, on what `setup` made.
    pub run: &'static str,
}

/// What one size of a kernel is, and the sizes it is measured at.
#[derive(Debug)]
pub struct Sweep {
    /// What one size is: "elements", "the n of n×n matrices", …
    pub size_means: &'static str,
    /// Sizes that are powers of two from 1024 up print as 2^k (vectors).
    pub sizes_as_powers: bool,
    /// The largest size the bench accepts.
    pub max_size: usize,
    /// Sizes `anycore bench --quick` sweeps.
    pub quick_sizes: &'static [usize],
    /// Sizes `anycore bench` sweeps.
    pub sizes: &'static [usize],
    /// A small and a larger size that run in milliseconds, for the probe.
    pub probe_sizes: [usize; 2],
}

/// The one-dimensional kernels' sweep: element counts from 2^10 to 2^26
/// (2^12 to 2^24 quick), at most 2^30.
pub const VECTOR_SWEEP: Sweep = Sweep {
    size_means: "elements",
    sizes_as_powers: true,
    max_size: VECTOR_MAX,
    quick_sizes: &VECTOR_QUICK_SIZES,
    sizes: &VECTOR_SIZES,
    probe_sizes: [1 << 12, 1 << 20],
};

/// How a kernel's throughput is counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    /// Shown after the number: "GB/s", "GFLOP/s", "Mpixel/s".
    pub name: &'static str,
    /// What one unit of work is, for the table's heading.
    pub counts: &'static str,
    /// Units of work per unit shown (1e9 for GB/s).
    pub scale: f64,
}

/// Which of the machine's bandwidths bounds a memory-bound kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bandwidth {
    /// Reads and writes: a copy.
    Copy,
    /// Reads only: a sum.
    Read,
}

/// The vector kernels' largest size: 2³⁰ f32 is 4 GiB per vector.
pub const VECTOR_MAX: usize = 1 << 30;
/// The vector kernels' quick sweep: 2^12 … 2^24.
pub const VECTOR_QUICK_SIZES: [usize; 4] = powers(12, 4);
/// The plain rayon loop at every size.
pub const RAYON_LOOP: Baseline = Baseline::RayonLoop {
    max_size: usize::MAX,
};
/// The vector kernels' sweep: 2^10 … 2^26.
pub const VECTOR_SIZES: [usize; 9] = powers(10, 2);

/// `N` powers of two from 2^`from`, `step` apart in the exponent.
pub const fn powers<const N: usize>(from: u32, step: u32) -> [usize; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = 1 << (from + step * i as u32);
        i += 1;
    }
    out
}

/// `n` f32 uniform in [-1, 1) from `seed`.
pub fn random_f32(n: usize, seed: u64) -> Result<Vec<f32>> {
    match super::random::random_tensor(crate::tensor::DType::F32, &[n], seed)?.into_data() {
        crate::tensor::TensorData::F32(v) => Ok(v),
        _ => unreachable!("asked for f32"),
    }
}

#[cfg(test)]
mod tests {
    use crate::kernel::Kernel;

    /// Every kernel's profile holds together: its sweeps lie within its
    /// limit, its tasks are of that kernel and do the work `amount` counts
    /// (checked against the cost model's work units, which grow with it).
    #[test]
    fn every_profile_is_consistent() {
        for kernel in Kernel::ALL {
            let p = kernel.profile();
            let s = &p.sweep;
            for &size in s.quick_sizes.iter().chain(s.sizes).chain(&s.probe_sizes) {
                assert!(size >= 1 && size <= s.max_size, "{kernel}: size {size}");
            }
            assert!(!s.quick_sizes.is_empty() && s.sizes.len() >= s.quick_sizes.len());
            let [small, large] = s.probe_sizes;
            let (a, b) = ((p.task)(small, 1).unwrap(), (p.task)(large, 2).unwrap());
            assert_eq!(a.kernel(), kernel);
            assert!(
                a.work_units() < b.work_units(),
                "{kernel}: probe sizes grow"
            );
            assert!(
                (p.amount)(small) < (p.amount)(large),
                "{kernel}: amount grows"
            );
            assert!(p.unit.scale > 0.0 && !p.unit.name.is_empty());
        }
    }
}

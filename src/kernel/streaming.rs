//! How a kernel runs over arrays larger than memory: in chunks along its
//! inputs' elements, read, computed and written one after another
//! ([`crate::stream`] drives them). Each kernel's module says which of
//! these it is (its `STREAMING`); a kernel whose outputs need all of
//! its input at once is [`Streaming::Whole`] and runs only within the
//! memory budget.

use super::{Outputs, Params};
use crate::error::Result;
use crate::tensor::Tensor;

/// How a job splits into chunks of its inputs' elements.
#[derive(Debug)]
pub enum Streaming {
    /// Only whole: every output element may need every input element.
    Whole,
    /// Output element `i` depends only on input element `i`: a chunk's
    /// outputs are the same chunk of the whole's. Inputs of one element
    /// are broadcast, given whole to every chunk.
    Elementwise,
    /// The whole's outputs combine the chunks' outputs: `fold(params,
    /// so_far, chunk's)` folds one chunk's in, in order. `check` says
    /// whether these parameters allow it (a histogram's default range
    /// needs the whole array).
    Fold {
        /// Whether the job can be folded from chunks.
        check: fn(&Params) -> Result<()>,
        /// Folds a chunk's outputs into the outputs so far.
        fold: fn(&Params, &mut Outputs, Outputs) -> Result<()>,
    },
    /// A running total: a chunk's output is its own result plus what came
    /// before. `carry(params, x, out, total)` adds `total` (the running
    /// total before chunk `x`) to the chunk's output `out` and moves
    /// `total` past it. The total is kept as f64: exactly, for 32-bit
    /// integers kept modulo 2³²; wide, for floats.
    Carry(fn(&Params, &Tensor, &mut Tensor, &mut f64)),
}

impl Streaming {
    /// Its name, as `anycore kernels` shows it: `whole`, `elementwise`,
    /// `fold` or `carry`.
    pub fn name(&self) -> &'static str {
        match self {
            Streaming::Whole => "whole",
            Streaming::Elementwise => "elementwise",
            Streaming::Fold { .. } => "fold",
            Streaming::Carry(_) => "carry",
        }
    }
}

//! Seeded random tensors, for jobs that ask for generated inputs
//! (`{"random": {"dtype": "f32", "shape": [1024], "seed": 1}}`): the same
//! seed gives the same data on every machine.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorData};

/// Largest generated tensor: 2³⁰ elements.
const MAX_ELEMENTS: usize = 1 << 30;

/// A tensor of `shape` with elements drawn from `seed`: floats uniform in
/// [-1, 1), integers over their whole range.
pub fn random_tensor(dtype: DType, shape: &[usize], seed: u64) -> Result<Tensor> {
    let n = crate::tensor::element_count(shape)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            Error::BadInput(format!(
                "random shape {shape:?} has more than {MAX_ELEMENTS} elements"
            ))
        })?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let data = match dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()),
        DType::U32 => TensorData::U32((0..n).map(|_| rng.random()).collect()),
        DType::I32 => TensorData::I32((0..n).map(|_| rng.random()).collect()),
        DType::U8 => TensorData::U8((0..n).map(|_| rng.random()).collect()),
    };
    Ok(Tensor::new(shape.to_vec(), data))
}

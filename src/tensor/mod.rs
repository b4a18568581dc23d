//! Arrays as anycore passes them around: a shape and a typed, contiguous
//! (C-order) buffer. `npy` reads and writes them as NumPy `.npy` files.

pub mod alloc;
pub mod handle;
pub mod npy;
pub mod output_file;
pub mod png;

pub use handle::{DeviceCopy, Handle, Location, WeakHandle};

use std::fmt;

/// Element types anycore understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 32-bit unsigned integer.
    U32,
    /// 32-bit signed integer.
    I32,
    /// 8-bit unsigned integer.
    U8,
}

impl DType {
    /// Parses `f32`, `u32`, `i32` or `u8` (NumPy's `float32` and friends too).
    pub fn from_name(name: &str) -> Option<DType> {
        match name {
            "f32" | "float32" => Some(DType::F32),
            "u32" | "uint32" => Some(DType::U32),
            "i32" | "int32" => Some(DType::I32),
            "u8" | "uint8" => Some(DType::U8),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 | DType::I32 => 4,
            DType::U8 => 1,
        }
    }

    /// The short name used in messages and JSON (`f32`, `u32`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
            DType::I32 => "i32",
            DType::U8 => "u8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a tensor, one variant per [`DType`]. Serialises as a
/// plain list of numbers (floats in their shortest `f32` form; NaN and
/// infinities, which JSON lacks, as null).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum TensorData {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `u8` elements.
    U8(Vec<u8>),
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::U32(_) => DType::U32,
            TensorData::I32(_) => DType::I32,
            TensorData::U8(_) => DType::U8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No elements, of `dtype`.
    pub fn empty(dtype: DType) -> Self {
        match dtype {
            DType::F32 => TensorData::F32(Vec::new()),
            DType::U32 => TensorData::U32(Vec::new()),
            DType::I32 => TensorData::I32(Vec::new()),
            DType::U8 => TensorData::U8(Vec::new()),
        }
    }

    /// The raw bits of 4-byte elements (f32, u32, i32); `None` for u8.
    pub fn words(&self) -> Option<&[u32]> {
        match self {
            TensorData::F32(v) => Some(bytemuck::cast_slice(v)),
            TensorData::U32(v) => Some(v),
            TensorData::I32(v) => Some(bytemuck::cast_slice(v)),
            TensorData::U8(_) => None,
        }
    }

    /// 4-byte elements of `dtype` from their raw bits, without copying
    /// (u8 takes each word's low byte).
    pub fn from_words(dtype: DType, words: Vec<u32>) -> Self {
        match dtype {
            DType::F32 => TensorData::F32(bytemuck::cast_vec(words)),
            DType::U32 => TensorData::U32(words),
            DType::I32 => TensorData::I32(bytemuck::cast_vec(words)),
            DType::U8 => TensorData::U8(words.into_iter().map(|w| w as u8).collect()),
        }
    }

    /// 4-byte elements as their raw bits, without copying; u8 data comes
    /// back as the error.
    pub fn into_words(self) -> std::result::Result<Vec<u32>, Self> {
        match self {
            TensorData::F32(v) => Ok(bytemuck::cast_vec(v)),
            TensorData::U32(v) => Ok(v),
            TensorData::I32(v) => Ok(bytemuck::cast_vec(v)),
            u8s @ TensorData::U8(_) => Err(u8s),
        }
    }

    /// Every element as `f64` (exact for all four types), for comparing
    /// results.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }

    /// The raw little-endian bytes (what a GPU buffer holds).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::U32(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
            TensorData::U8(v) => v,
        }
    }
}

/// A tensor's dtype and shape without its elements: what the later steps
/// of a pipeline are checked against before anything runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Spec {
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
}

impl Spec {
    /// `dtype[d0, d1, …]`, as used in messages.
    pub fn describe(&self) -> String {
        describe(self.dtype, &self.shape)
    }

    /// Bytes its elements take (saturating: a spec is not yet checked).
    pub fn bytes(&self) -> u64 {
        self.shape
            .iter()
            .fold(self.dtype.size() as u64, |n, &d| n.saturating_mul(d as u64))
    }
}

/// What a kernel's input checks look at: a tensor, or only its [`Spec`].
pub trait Described {
    /// The element type.
    fn dtype(&self) -> DType;
    /// The shape.
    fn shape(&self) -> &[usize];
    /// `dtype[d0, d1, …]`, as used in messages.
    fn describe(&self) -> String {
        describe(self.dtype(), self.shape())
    }
}

impl Described for Spec {
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Described for Tensor {
    fn dtype(&self) -> DType {
        Tensor::dtype(self)
    }
    fn shape(&self) -> &[usize] {
        Tensor::shape(self)
    }
}

/// An n-dimensional array in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// Most elements in any tensor anycore builds from sizes a user gave (a
/// kernel's output, an array a file declares): 2³¹, 8 GiB of f32. Checked
/// before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Reads an array file: a `.png` as a picture ([`png::read`]), anything
/// else as `.npy` ([`npy::read`]).
pub fn read_file(path: &std::path::Path) -> crate::error::Result<Tensor> {
    let picture = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if picture {
        png::read(path)
    } else {
        npy::read(path)
    }
}

/// The number of elements of `shape`, or `None` when the product
/// overflows `usize` (a shape such as `(2**60, 16)` must not wrap around to
/// a small count).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Tensor {
    /// Builds a tensor; the shape's product must equal the number of elements.
    ///
    /// # Panics
    /// If the shape does not match the data: that is a bug in the caller,
    /// never a user error (user input is checked before it gets here).
    pub fn new(shape: Vec<usize>, data: TensorData) -> Self {
        assert_eq!(
            element_count(&shape),
            Some(data.len()),
            "shape {shape:?} does not match {} elements",
            data.len()
        );
        Tensor { shape, data }
    }

    /// A one-dimensional `f32` tensor.
    pub fn from_f32(data: Vec<f32>) -> Self {
        Tensor::new(vec![data.len()], TensorData::F32(data))
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The elements, to change in place (not in number: the shape stays).
    pub(crate) fn data_mut(&mut self) -> &mut TensorData {
        &mut self.data
    }

    /// Consumes the tensor, giving back its elements.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The elements as `f32`, if that is the dtype.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `u32`, if that is the dtype.
    pub fn as_u32(&self) -> Option<&[u32]> {
        match &self.data {
            TensorData::U32(v) => Some(v),
            _ => None,
        }
    }

    /// `dtype[d0, d1, …]`, as used in messages.
    pub fn describe(&self) -> String {
        describe(self.dtype(), &self.shape)
    }

    /// Its dtype and shape.
    pub fn spec(&self) -> Spec {
        Spec {
            dtype: self.dtype(),
            shape: self.shape.clone(),
        }
    }
}

/// `dtype[d0, d1, …]` for a dtype and a shape.
pub fn describe(dtype: DType, shape: &[usize]) -> String {
    describe_name(dtype.name(), shape)
}

/// `dtype[d0, d1, …]` for a dtype name and a shape.
pub fn describe_name(dtype: &str, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{dtype}[{}]", dims.join(", "))
}

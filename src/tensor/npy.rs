//! NumPy `.npy` files: read into and write from [`Tensor`]s.
//!
//! The format is parsed by the `npyz` crate; this module decides what anycore
//! accepts (plain `f32`, `u32`, `i32`, `u8` arrays in C order, either byte
//! order) and turns everything else into an error that names the file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use npyz::{DType as NpyDType, Order, TypeChar, WriterBuilder};

use super::{DType, MAX_ELEMENTS, Tensor, TensorData, element_count};
use crate::error::{Error, Result};

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Tensor> {
    let bad = |message: String| Error::BadFile {
        path: path.to_owned(),
        message,
    };
    let file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| bad(format!("cannot open: {e}")))?
        .len();
    parse(BufReader::new(file), size).map_err(bad)
}

/// Reads `.npy` bytes held in memory; the error says what is wrong.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor, String> {
    parse(bytes, bytes.len() as u64)
}

/// Parses a `.npy` stream of `size` bytes in all, or says what is wrong
/// with it. The header's shape is checked against `size` before the data
/// is read: the reader allocates what the header promises, so a 100-byte
/// file must not get to promise 2⁶⁴ elements.
fn parse(mut reader: impl Read, size: u64) -> Result<Tensor, String> {
    let preamble = read_preamble(&mut reader)?;
    let npy = npyz::NpyFile::new(std::io::Cursor::new(preamble).chain(reader))
        .map_err(|e| format!("not a valid .npy file ({e})"))?;
    if npy.order() == Order::Fortran {
        return Err(
            "Fortran-order arrays are not supported; save it with numpy.ascontiguousarray(a)"
                .into(),
        );
    }
    let dtype = match npy.dtype() {
        NpyDType::Plain(ts) => match (ts.type_char(), ts.size_field()) {
            (TypeChar::Float, 4) => DType::F32,
            (TypeChar::Uint, 4) => DType::U32,
            (TypeChar::Int, 4) => DType::I32,
            (TypeChar::Uint, 1) => DType::U8,
            _ => {
                return Err(format!(
                    "dtype '{ts}' is not supported (use float32, uint32, int32 or uint8)"
                ));
            }
        },
        other => {
            return Err(format!(
                "structured dtype {} is not supported (use float32, uint32, int32 or uint8)",
                other.descr()
            ));
        }
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d} is too large")))
        .collect::<Result<_, _>>()?;
    let elements = element_count(&shape)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!("shape {shape:?} has more than {MAX_ELEMENTS} elements, the most anycore reads")
        })?;
    // Both factors are at most 2³¹ and 4: no overflow.
    let bytes = elements as u64 * dtype.size() as u64;
    if bytes > size {
        return Err(format!(
            "header promises shape {shape:?} ({bytes} bytes of {dtype}) but the file holds {size} bytes in all"
        ));
    }
    super::alloc::check(bytes, "the array").map_err(|e| e.to_string())?;
    let truncated = |e: std::io::Error| format!("cannot read the array data ({e})");
    let data = match dtype {
        DType::F32 => TensorData::F32(npy.into_vec().map_err(truncated)?),
        DType::U32 => TensorData::U32(npy.into_vec().map_err(truncated)?),
        DType::I32 => TensorData::I32(npy.into_vec().map_err(truncated)?),
        DType::U8 => TensorData::U8(npy.into_vec().map_err(truncated)?),
    };
    if elements != data.len() {
        return Err(format!(
            "header promises shape {shape:?} but the file holds {} elements",
            data.len()
        ));
    }
    Ok(Tensor::new(shape, data))
}

/// Longest header accepted: NumPy writes a few hundred bytes at most.
const MAX_HEADER: usize = 64 * 1024;

/// Reads the magic, version, header length and header, and checks the
/// shape the header declares before `npyz` sees it: `npyz` multiplies the
/// dimensions without overflow checks (npyz 0.9.1, read.rs
/// `NpyHeader::from_parts`), which panics or wraps around to a small count,
/// and allocates whatever a header length field claims. Returns the bytes
/// read, for `npyz` to parse again.
fn read_preamble(reader: &mut impl Read) -> Result<Vec<u8>, String> {
    let not_npy = |what: &str| format!("not a valid .npy file ({what})");
    let mut head = vec![0u8; 8];
    reader
        .read_exact(&mut head)
        .map_err(|_| not_npy("too short"))?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(not_npy("no .npy magic string"));
    }
    let len_bytes = if head[6] == 1 { 2 } else { 4 };
    let mut len = [0u8; 4];
    reader
        .read_exact(&mut len[..len_bytes])
        .map_err(|_| not_npy("too short"))?;
    head.extend_from_slice(&len[..len_bytes]);
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > MAX_HEADER {
        return Err(not_npy(&format!(
            "its header claims {header_len} bytes; at most {MAX_HEADER} are accepted"
        )));
    }
    let start = head.len();
    head.resize(start + header_len, 0);
    reader
        .read_exact(&mut head[start..])
        .map_err(|_| not_npy("the header is cut short"))?;
    let header = String::from_utf8_lossy(&head[start..]);
    let shape =
        header_shape(&header).ok_or_else(|| not_npy("cannot read the shape in its header"))?;
    let count = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    // npyz also multiplies the dimensions into strides, zeros or not.
    let strides = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1u64, |n, &d| n.checked_mul(d));
    if strides.is_none() || count.is_none_or(|n| n > MAX_ELEMENTS as u64) {
        return Err(format!(
            "shape {shape:?} has more than {MAX_ELEMENTS} elements, the most anycore reads"
        ));
    }
    Ok(head)
}

/// The dimensions of the `'shape': (…)` entry of a header, or `None`.
fn header_shape(header: &str) -> Option<Vec<u64>> {
    let key = header
        .find("'shape'")
        .or_else(|| header.find("\"shape\""))?;
    let rest = &header[key..];
    let open = rest.find('(')?;
    let close = open + rest[open..].find(')')?;
    rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<u64>().ok())
        .collect()
}

/// A tensor as `.npy` bytes.
pub fn to_bytes(tensor: &Tensor) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_to(&mut bytes, tensor).expect("writing to memory cannot fail");
    bytes
}

/// Writes a tensor as a little-endian, C-order `.npy` file.
pub fn write(path: &Path, tensor: &Tensor) -> Result<()> {
    let io_err = |source: std::io::Error| Error::Write {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(io_err)?;
    let mut out = BufWriter::new(file);
    write_to(&mut out, tensor)
        .and_then(|()| out.flush())
        .map_err(io_err)
}

fn write_to(out: &mut impl Write, tensor: &Tensor) -> std::io::Result<()> {
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    match tensor.data() {
        TensorData::F32(v) => write_items(out, &shape, v),
        TensorData::U32(v) => write_items(out, &shape, v),
        TensorData::I32(v) => write_items(out, &shape, v),
        TensorData::U8(v) => write_items(out, &shape, v),
    }
}

fn write_items<T, W>(out: &mut W, shape: &[u64], items: &[T]) -> std::io::Result<()>
where
    T: npyz::AutoSerialize + Copy,
    W: Write,
{
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(out)
        .begin_nd()?;
    writer.extend(items.iter().copied())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            Tensor::new(
                vec![2, 3],
                TensorData::F32(vec![1.5, -2.0, 0.0, 7.25, -0.5, 3.0]),
            ),
            Tensor::new(vec![4], TensorData::U32(vec![0, 1, u32::MAX, 42])),
            Tensor::new(vec![1, 3], TensorData::I32(vec![i32::MIN, -1, i32::MAX])),
            Tensor::new(vec![2, 1, 2], TensorData::U8(vec![0, 255, 9, 128])),
            Tensor::new(vec![0], TensorData::F32(vec![])),
        ];
        for (i, t) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.npy"));
            write(&path, t).unwrap();
            assert_eq!(&read(&path).unwrap(), t);
            assert_eq!(&from_bytes(&to_bytes(t)).unwrap(), t);
        }
    }

    /// A file as NumPy writes it (`np.save('x.npy', np.array([[1, 2]], dtype='<i4'))`),
    /// byte for byte, so the reader is checked against the format, not only itself.
    #[test]
    fn reads_a_numpy_written_file() {
        let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        bytes.extend((padded.len() as u16).to_le_bytes());
        bytes.extend(padded.as_bytes());
        bytes.extend(1i32.to_le_bytes());
        bytes.extend(2i32.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, bytes).unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.shape(), &[1, 2]);
        assert_eq!(t.data(), &TensorData::I32(vec![1, 2]));
    }

    #[test]
    fn rejects_unsupported_files_with_the_path_in_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.npy");
        std::fs::write(&text, "hello").unwrap();
        let msg = read(&text).unwrap_err().to_string();
        assert!(
            msg.contains("notes.npy") && msg.contains("not a valid .npy"),
            "{msg}"
        );

        let f64_path = dir.path().join("f64.npy");
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2])
            .writer(BufWriter::new(File::create(&f64_path).unwrap()))
            .begin_nd()
            .unwrap();
        w.extend([1.0f64, 2.0]).unwrap();
        w.finish().unwrap();
        let msg = read(&f64_path).unwrap_err().to_string();
        assert!(msg.contains("f64.npy") && msg.contains("<f8"), "{msg}");

        let missing = dir.path().join("missing.npy");
        let msg = read(&missing).unwrap_err().to_string();
        assert!(
            msg.contains("missing.npy") && msg.contains("cannot open"),
            "{msg}"
        );
    }
}

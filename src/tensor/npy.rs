//! NumPy `.npy` files: read into and write from [`Tensor`]s.
//!
//! The format is parsed by the `npyz` crate; this module decides what anycore
//! accepts (plain `f32`, `u32`, `i32`, `u8` arrays in C order, either byte
//! order) and turns everything else into an error that names the file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use npyz::{DType as NpyDType, Order, TypeChar, WriterBuilder};

use super::{DType, Tensor, TensorData};
use crate::error::{Error, Result};

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Tensor> {
    let bad = |message: String| Error::BadFile {
        path: path.to_owned(),
        message,
    };
    let file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    parse(BufReader::new(file)).map_err(bad)
}

/// Reads `.npy` bytes held in memory; the error says what is wrong.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor, String> {
    parse(bytes)
}

/// Parses a `.npy` stream, or says what is wrong with it.
fn parse(reader: impl Read) -> Result<Tensor, String> {
    let npy = npyz::NpyFile::new(reader).map_err(|e| format!("not a valid .npy file ({e})"))?;
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
    let truncated = |e: std::io::Error| format!("cannot read the array data ({e})");
    let data = match dtype {
        DType::F32 => TensorData::F32(npy.into_vec().map_err(truncated)?),
        DType::U32 => TensorData::U32(npy.into_vec().map_err(truncated)?),
        DType::I32 => TensorData::I32(npy.into_vec().map_err(truncated)?),
        DType::U8 => TensorData::U8(npy.into_vec().map_err(truncated)?),
    };
    if shape.iter().product::<usize>() != data.len() {
        return Err(format!(
            "header promises shape {shape:?} but the file holds {} elements",
            data.len()
        ));
    }
    Ok(Tensor::new(shape, data))
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

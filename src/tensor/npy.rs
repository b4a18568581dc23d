//! NumPy `.npy` files: read into and write from [`Tensor`]s.
//!
//! The format is parsed by the `npyz` crate; this module decides what anycore
//! accepts (plain `f32`, `u32`, `i32`, `u8` arrays in C order, either byte
//! order) and turns everything else into an error that names the file.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use npyz::{DType as NpyDType, Order, TypeChar, WriterBuilder};

use super::output_file::OutputFile;
use super::{DType, MAX_ELEMENTS, Spec, Tensor, TensorData, element_count};
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
    // The file itself, not a BufReader: the data is read straight into
    // the tensor ([`ReadInto`]).
    parse(file, size).map_err(bad)
}

/// Reads `.npy` bytes held in memory; the error says what is wrong.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor, String> {
    parse(bytes, bytes.len() as u64)
}

/// Parses a `.npy` stream of `size` bytes in all, or says what is wrong
/// with it. The header's shape is checked against `size` before the data
/// is read, so a 100-byte file must not get to promise 2⁶⁴ elements.
fn parse(mut reader: impl ReadInto, size: u64) -> Result<Tensor, String> {
    let layout = read_layout(&mut reader, size)?;
    let bytes = layout.spec.bytes();
    super::alloc::check(bytes, "the array").map_err(|e| e.to_string())?;
    let data = read_elements(&mut reader, &layout, layout.len())?;
    Ok(Tensor::new(layout.spec.shape, data))
}

/// What a `.npy` file's header says: the array's dtype and shape, and
/// how its elements are stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Dtype and shape.
    pub spec: Spec,
    /// Bytes before the first element (the magic and the header).
    pub data_offset: u64,
    /// Whether the elements are big-endian.
    big_endian: bool,
}

impl Layout {
    /// Elements in all (bounded by [`MAX_ELEMENTS`] when read).
    pub fn len(&self) -> usize {
        element_count(&self.spec.shape).expect("checked when read")
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the header of a `.npy` stream of `size` bytes in all, leaving
/// `reader` at the first element; checks that the data the header
/// promises is there.
fn read_layout(reader: &mut impl Read, size: u64) -> Result<Layout, String> {
    let preamble = read_preamble(reader)?;
    let data_offset = preamble.len() as u64;
    let npy = npyz::NpyFile::new(std::io::Cursor::new(preamble))
        .map_err(|e| format!("not a valid .npy file ({e})"))?;
    if npy.order() == Order::Fortran {
        return Err(
            "Fortran-order arrays are not supported; save it with numpy.ascontiguousarray(a)"
                .into(),
        );
    }
    let (dtype, big_endian) = match npy.dtype() {
        NpyDType::Plain(ts) => {
            let dtype = match (ts.type_char(), ts.size_field()) {
                (TypeChar::Float, 4) => DType::F32,
                (TypeChar::Uint, 4) => DType::U32,
                (TypeChar::Int, 4) => DType::I32,
                (TypeChar::Uint, 1) => DType::U8,
                _ => {
                    return Err(format!(
                        "dtype '{ts}' is not supported (use float32, uint32, int32 or uint8)"
                    ));
                }
            };
            (dtype, ts.endianness() == npyz::Endianness::Big)
        }
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
    let held = size.saturating_sub(data_offset);
    if bytes > held {
        return Err(format!(
            "header promises shape {shape:?} ({bytes} bytes of {dtype}) but the file holds \
             {held} bytes of data"
        ));
    }
    Ok(Layout {
        spec: Spec { dtype, shape },
        data_offset,
        big_endian,
    })
}

/// Reads the next `n` elements of an array laid out as `layout`.
fn read_elements(
    reader: &mut impl ReadInto,
    layout: &Layout,
    n: usize,
) -> Result<TensorData, String> {
    fn read<T: bytemuck::Pod>(
        reader: &mut impl ReadInto,
        n: usize,
        swap: Option<fn(T) -> T>,
    ) -> std::io::Result<Vec<T>> {
        let mut items = Vec::<T>::with_capacity(n);
        let bytes = n * std::mem::size_of::<T>();
        let start = items.as_mut_ptr().cast::<u8>();
        let mut done = 0;
        while done < bytes {
            let want = (bytes - done).min(IO_PIECE);
            // SAFETY: `start + done .. + want` lies in the vector's
            // capacity (`n` elements of `T`, `bytes` bytes).
            let got = unsafe { reader.read_into(start.add(done), want)? };
            debug_assert!(got <= want, "read_into wrote past its length");
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += got;
        }
        // SAFETY: every byte of the first `n` elements was written above,
        // and any bytes are a valid `T` (`Pod`).
        unsafe { items.set_len(n) };
        if let Some(swap) = swap {
            items.iter_mut().for_each(|x| *x = swap(*x));
        }
        Ok(items)
    }
    let big = layout.big_endian;
    let swap_u32 = |x: u32| x.swap_bytes();
    let data = match layout.spec.dtype {
        DType::F32 => read(
            reader,
            n,
            big.then_some(|x: f32| f32::from_bits(x.to_bits().swap_bytes())),
        )
        .map(TensorData::F32),
        DType::U32 => {
            read(reader, n, big.then_some(swap_u32 as fn(u32) -> u32)).map(TensorData::U32)
        }
        DType::I32 => {
            read(reader, n, big.then_some(i32::swap_bytes as fn(i32) -> i32)).map(TensorData::I32)
        }
        DType::U8 => read(reader, n, None).map(TensorData::U8),
    };
    data.map_err(|e| format!("cannot read the array data ({e})"))
}

/// A reader that can read into memory not yet initialised: elements go
/// straight from the file into a new vector. Zeroing it first (a `memset`
/// of every 2 MiB chunk, which comes from the heap) made a streamed `map`
/// of 2 GiB take 0.40–0.47 s instead of 0.25–0.28 (`benches/RESULTS.md`).
pub(crate) trait ReadInto: Read {
    /// Reads up to `len` bytes to `dst`, like [`Read::read`]; 0 at the end.
    /// An implementation returns at most `len`, the bytes it wrote.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes.
    unsafe fn read_into(&mut self, dst: *mut u8, len: usize) -> std::io::Result<usize>;
}

impl ReadInto for File {
    #[cfg(target_os = "linux")]
    unsafe fn read_into(&mut self, dst: *mut u8, len: usize) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: the caller's promise; `read(2)` writes at most `len`
            // bytes to `dst` and never reads them.
            let got = unsafe { libc::read(self.as_raw_fd(), dst.cast(), len) };
            if got >= 0 {
                return Ok(got as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    unsafe fn read_into(&mut self, dst: *mut u8, len: usize) -> std::io::Result<usize> {
        let mut buf = vec![0u8; len];
        let got = self.read(&mut buf)?;
        // SAFETY: the caller's promise, and `got <= len`.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, got) };
        Ok(got)
    }
}

impl ReadInto for &[u8] {
    unsafe fn read_into(&mut self, dst: *mut u8, len: usize) -> std::io::Result<usize> {
        let n = len.min(self.len());
        // SAFETY: the caller's promise for `dst`; `self` holds `n` bytes,
        // and a slice cannot overlap memory the caller may write.
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr(), dst, n) };
        *self = &self[n..];
        Ok(n)
    }
}

/// A `.npy` file read a chunk at a time: arrays larger than memory.
pub struct ChunkReader {
    file: File,
    path: PathBuf,
    layout: Layout,
    left: usize,
}

impl ChunkReader {
    /// Opens a `.npy` file and reads its header; errors name the file.
    pub fn open(path: &Path) -> Result<ChunkReader> {
        let bad = |message: String| Error::BadFile {
            path: path.to_owned(),
            message,
        };
        let mut file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let size = file
            .metadata()
            .map_err(|e| bad(format!("cannot open: {e}")))?
            .len();
        let layout = read_layout(&mut file, size).map_err(bad)?;
        Ok(ChunkReader {
            file,
            path: path.to_owned(),
            left: layout.len(),
            layout,
        })
    }

    /// The array's header.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next `n` elements (fewer at the end), in order.
    pub fn read(&mut self, n: usize) -> Result<TensorData> {
        let n = n.min(self.left);
        let data =
            read_elements(&mut self.file, &self.layout, n).map_err(|message| Error::BadFile {
                path: self.path.clone(),
                message,
            })?;
        self.left -= n;
        Ok(data)
    }
}

/// Bytes a `read` or `write` call hands the system at most, as `cat`
/// does. Measured here (4 GiB through `map` to ext4): one 16 MiB `write`
/// a chunk spent 3.7× the system time of 128 KiB ones, nearly all of it
/// in the kernel's copy into the page cache (`copy_folio_from_iter_atomic`);
/// reads gain a little too.
const IO_PIECE: usize = 1 << 17;

/// A `.npy` file written a chunk at a time, its shape declared first,
/// through an [`OutputFile`]: it appears at its path only when
/// [`ChunkWriter::finish`] finds it whole, so a run that fails leaves no
/// truncated array behind.
pub struct ChunkWriter {
    file: BufWriter<OutputFile>,
    path: PathBuf,
    left: usize,
}

impl ChunkWriter {
    /// Starts writing an array of `spec`'s dtype and shape to `path`.
    pub fn create(path: &Path, spec: &Spec) -> Result<ChunkWriter> {
        let io_err = |source: std::io::Error| Error::Write {
            path: path.to_owned(),
            source,
        };
        let left = element_count(&spec.shape).ok_or_else(|| {
            io_err(std::io::Error::other(format!(
                "shape {:?} is too large",
                spec.shape
            )))
        })?;
        let file = OutputFile::create(path).map_err(io_err)?;
        let mut writer = ChunkWriter {
            file: BufWriter::with_capacity(1 << 16, file),
            path: path.to_owned(),
            left,
        };
        write_header(&mut writer.file, spec).map_err(io_err)?;
        Ok(writer)
    }

    fn error(&self, source: std::io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends the next elements (of the declared dtype, little-endian
    /// as every machine anycore runs on stores them).
    pub fn write(&mut self, data: &TensorData) -> Result<()> {
        let n = data.len();
        if n > self.left {
            return Err(self.error(std::io::Error::other(format!(
                "{n} more elements than the declared shape holds"
            ))));
        }
        for piece in data.as_bytes().chunks(IO_PIECE) {
            self.file.write_all(piece).map_err(|e| self.error(e))?;
        }
        self.left -= n;
        Ok(())
    }

    /// Checks that every element was written and moves the file into
    /// place.
    pub fn finish(self) -> Result<()> {
        if self.left != 0 {
            let left = self.left;
            return Err(self.error(std::io::Error::other(format!(
                "{left} elements were never written"
            ))));
        }
        let path = self.path;
        let error = |source| Error::Write {
            path: path.clone(),
            source,
        };
        let file = self.file.into_inner().map_err(|e| error(e.into_error()))?;
        file.finish().map_err(error)
    }
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
    let data = tensor.data().as_bytes();
    let mut bytes = Vec::with_capacity(data.len() + 128);
    write_header(&mut bytes, &tensor.spec()).expect("writing to memory cannot fail");
    // The elements as they lie in memory: little-endian on every machine
    // anycore runs on, one copy (npyz's writer went element by element).
    bytes.extend_from_slice(data);
    bytes
}

/// Writes the `.npy` magic and header of a little-endian, C-order array
/// of `spec`.
fn write_header(out: &mut impl Write, spec: &Spec) -> std::io::Result<()> {
    let shape: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
    let descr = match spec.dtype {
        DType::F32 => "<f4",
        DType::U32 => "<u4",
        DType::I32 => "<i4",
        DType::U8 => "|u1",
    };
    npyz::WriteOptions::new_header_only()
        .shape(&shape)
        .dtype(NpyDType::new_scalar(descr.parse().expect("a plain dtype")))
        .writer(out)
        .write_header_only()?;
    Ok(())
}

/// Writes a tensor as a little-endian, C-order `.npy` file, under a
/// temporary name renamed into place once whole ([`ChunkWriter`]).
pub fn write(path: &Path, tensor: &Tensor) -> Result<()> {
    let mut writer = ChunkWriter::create(path, &tensor.spec())?;
    writer.write(tensor.data())?;
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

    /// Big-endian files are read in chunks as they are read whole.
    #[test]
    fn chunks_of_a_big_endian_file_read_as_the_whole() {
        let header = "{'descr': '>f4', 'fortran_order': False, 'shape': (5,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        bytes.extend((padded.len() as u16).to_le_bytes());
        bytes.extend(padded.as_bytes());
        let values = [1.5f32, -2.25, 3e-3, f32::MAX, -0.0];
        for v in values {
            bytes.extend(v.to_be_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("be.npy");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read(&path).unwrap().as_f32(), Some(&values[..]));
        let mut reader = ChunkReader::open(&path).unwrap();
        assert_eq!(reader.layout().spec.shape, vec![5]);
        let mut got = Vec::new();
        for want in [2, 2, 1, 0] {
            let TensorData::F32(chunk) = reader.read(2).unwrap() else {
                panic!("dtype")
            };
            assert_eq!(chunk.len(), want);
            got.extend(chunk);
        }
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.map(f32::to_bits)
        );
    }

    /// Reads into fresh vectors: values across the 128 KiB read pieces and
    /// chunk edges come back exactly, from a file and from bytes; a file
    /// cut short while it is read is an error, not a vector of garbage.
    #[test]
    fn reads_fill_every_element_and_a_file_cut_short_is_an_error() {
        let n = 3 * IO_PIECE / 4 + 1001; // three pieces and a part
        let values: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2654435761)).collect();
        let t = Tensor::new(vec![n], TensorData::U32(values.clone()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write(&path, &t).unwrap();
        assert_eq!(read(&path).unwrap(), t);
        assert_eq!(from_bytes(&std::fs::read(&path).unwrap()).unwrap(), t);
        let mut reader = ChunkReader::open(&path).unwrap();
        let mut got = Vec::new();
        while let TensorData::U32(chunk) = reader.read(40_000).unwrap()
            && !chunk.is_empty()
        {
            got.extend(chunk);
        }
        assert_eq!(got, values);

        let mut reader = ChunkReader::open(&path).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let e = reader.read(n).unwrap_err().to_string();
        assert!(
            e.contains("x.npy") && e.contains("cannot read the array data"),
            "{e}"
        );
    }

    /// A writer not finished (or short of elements) leaves the file that
    /// was there, and no partial file; finished, its array replaces it.
    #[test]
    fn a_chunked_file_appears_only_when_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        std::fs::write(&path, "the old file").unwrap();
        let spec = Spec {
            dtype: DType::U32,
            shape: vec![2, 3],
        };
        let listing = || crate::tensor::output_file::tests::listing(dir.path());
        let mut writer = ChunkWriter::create(&path, &spec).unwrap();
        writer.write(&TensorData::U32(vec![1, 2, 3, 4])).unwrap();
        drop(writer);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "the old file");
        assert_eq!(listing(), ["out.npy"]);

        let mut writer = ChunkWriter::create(&path, &spec).unwrap();
        writer.write(&TensorData::U32(vec![1, 2, 3, 4])).unwrap();
        let short = writer.finish().unwrap_err().to_string();
        assert!(
            short.contains("out.npy") && short.contains("never written"),
            "{short}"
        );
        assert_eq!(listing(), ["out.npy"]);

        // A killed run's partial file (its process gone: no pid reaches
        // 2²²) goes when the path is written next; a live writer's stays.
        let stale = dir.path().join(".out.npy.partial-4294967-0");
        let live = dir
            .path()
            .join(format!(".out.npy.partial-{}-99", std::process::id()));
        std::fs::write(&stale, "left by a killed run").unwrap();
        std::fs::write(&live, "being written").unwrap();
        let mut writer = ChunkWriter::create(&path, &spec).unwrap();
        assert!(!stale.exists() && live.exists());
        std::fs::remove_file(&live).unwrap();
        writer.write(&TensorData::U32(vec![1, 2, 3, 4])).unwrap();
        assert!(writer.write(&TensorData::U32(vec![5, 6, 7])).is_err());
        writer.write(&TensorData::U32(vec![5, 6])).unwrap();
        writer.finish().unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data(), &TensorData::U32(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(listing(), ["out.npy"]);
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

//! Pictures as tensors: a `.png` reads as u8 `[h, w]` (grey) or
//! `[h, w, c]` (c = 2 grey and alpha, 3 RGB, 4 RGBA); palette and 16-bit
//! pictures come out as 8-bit colour. Writing takes the same shapes.
//!
//! The picture's size is checked against [`MAX_ELEMENTS`] and asked of the
//! system ([`super::alloc::check`]) before its pixels are allocated: a
//! 100-byte file may claim 2³¹ × 2³¹ pixels.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use super::output_file::OutputFile;
use super::{MAX_ELEMENTS, Tensor, TensorData};
use crate::error::{Error, Result};

/// Reads a `.png` as a u8 tensor.
pub fn read(path: &Path) -> Result<Tensor> {
    let bad = |message: String| Error::BadFile {
        path: path.to_owned(),
        message,
    };
    let file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a valid .png ({e})")))?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    let channels = reader.output_color_type().0.samples();
    let elements = width
        .checked_mul(height)
        .and_then(|p| p.checked_mul(channels))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            bad(format!(
                "a {width}×{height} picture is larger than anycore takes"
            ))
        })?;
    super::alloc::check(elements as u64, "the picture").map_err(|e| bad(e.to_string()))?;
    let mut pixels = vec![0u8; elements];
    reader
        .next_frame(&mut pixels)
        .map_err(|e| bad(format!("cannot decode its pixels ({e})")))?;
    let shape = if channels == 1 {
        vec![height, width]
    } else {
        vec![height, width, channels]
    };
    Ok(Tensor::new(shape, TensorData::U8(pixels)))
}

/// Writes `pixels` (row-major, `channels` bytes a pixel, 1 to 4) as a
/// `.png`.
pub fn write(path: &Path, width: u32, height: u32, channels: u8, pixels: &[u8]) -> Result<()> {
    let io_err = |e: std::io::Error| Error::Write {
        path: path.to_owned(),
        source: e,
    };
    let png_err = |e: png::EncodingError| io_err(std::io::Error::other(e));
    let color = match channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        c => {
            return Err(Error::BadInput(format!(
                "{} : a picture has 1 to 4 channels, not {c}",
                path.display()
            )));
        }
    };
    // Renamed into place when whole (see `OutputFile`).
    let mut file = BufWriter::new(OutputFile::create(path).map_err(io_err)?);
    let mut encoder = png::Encoder::new(&mut file, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    let file = file.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.finish().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_read_back_as_written_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for channels in 1..=4u8 {
            let (w, h) = (7u32, 5u32);
            let pixels: Vec<u8> = (0..w * h * u32::from(channels))
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            let path = dir.path().join(format!("p{channels}.png"));
            write(&path, w, h, channels, &pixels).unwrap();
            let t = read(&path).unwrap();
            let want: Vec<usize> = if channels == 1 {
                vec![5, 7]
            } else {
                vec![5, 7, channels as usize]
            };
            assert_eq!(t.shape(), want.as_slice());
            assert_eq!(t.data().as_bytes(), pixels.as_slice());
        }
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = read(&junk).unwrap_err().to_string();
        assert!(
            e.contains("junk.png") && e.contains("not a valid .png"),
            "{e}"
        );
    }
}

//! Writing a run's outputs: `.npy` files, or a coloured `.png` for images of
//! iteration counts.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anycore::kernel::{Kernel, Task, mandelbrot};
use anycore::tensor::{Tensor, npy};
use anycore::{Error, Result};

/// Whether `path` asks for a picture.
pub fn is_png(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Checks, before anything runs, that the output can be written in the
/// format its path asks for.
pub fn check_format(kernel: Kernel, name: &str, path: &Path) -> Result<()> {
    if is_png(path) && kernel != Kernel::Mandelbrot {
        return Err(Error::BadInput(format!(
            "output '{name}' -> {}: only mandelbrot's output can be written as .png; use .npy",
            path.display()
        )));
    }
    Ok(())
}

/// The iteration cap that colours a picture of this task's output, for
/// kernels whose output can be a picture.
pub fn picture_scale(task: &Task) -> Option<u32> {
    match task {
        Task::Mandelbrot(m) => Some(m.max_iter),
        _ => None,
    }
}

/// Writes one output tensor to `path`: a picture for a `.png` path (with
/// `scale` from [`picture_scale`]; [`check_format`] has refused the others),
/// else a `.npy` file.
pub fn write(tensor: &Tensor, path: &Path, scale: Option<u32>) -> Result<()> {
    match scale {
        Some(max_iter) if is_png(path) => write_png(tensor, max_iter, path),
        _ => npy::write(path, tensor),
    }
}

fn write_png(tensor: &Tensor, max_iter: u32, path: &Path) -> Result<()> {
    let counts = tensor.as_u32().expect("mandelbrot gives u32 counts");
    let (height, width) = (tensor.shape()[0] as u32, tensor.shape()[1] as u32);
    let rgb = mandelbrot::to_rgb(counts, max_iter);
    let io_err = |e: std::io::Error| Error::Write {
        path: path.to_owned(),
        source: e,
    };
    let png_err = |e: png::EncodingError| io_err(std::io::Error::other(e));
    let file = File::create(path).map_err(io_err)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

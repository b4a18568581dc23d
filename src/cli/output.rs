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

/// Writes one output tensor to `path`.
pub fn write(task: &Task, tensor: &Tensor, path: &Path) -> Result<()> {
    match task {
        Task::Mandelbrot(m) if is_png(path) => write_png(m, tensor, path),
        _ => npy::write(path, tensor),
    }
}

fn write_png(m: &mandelbrot::Mandelbrot, tensor: &Tensor, path: &Path) -> Result<()> {
    let counts = tensor.as_u32().expect("mandelbrot gives u32 counts");
    let rgb = mandelbrot::to_rgb(counts, m.max_iter);
    let io_err = |e: std::io::Error| Error::Write {
        path: path.to_owned(),
        source: e,
    };
    let png_err = |e: png::EncodingError| io_err(std::io::Error::other(e));
    let file = File::create(path).map_err(io_err)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), m.width, m.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

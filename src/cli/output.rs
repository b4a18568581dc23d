//! Writing a run's outputs: `.npy` files, or a `.png` for an output its
//! kernel draws as a picture.

use std::path::Path;

use anycore::kernel::{Kernel, Painter, Picture};
use anycore::tensor::{Tensor, npy};
use anycore::{Error, Result};

/// Whether `path` asks for a picture.
pub fn is_png(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Checks, before any input is read, that each output of the kernel named
/// `kernel` can be written in the format its path asks for (an unknown
/// kernel is left to the job's own checks, which name it).
pub fn check_formats<'a>(
    kernel: &str,
    outputs: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<()> {
    let Ok(kernel) = Kernel::from_name(kernel) else {
        return Ok(());
    };
    let mut seen: Vec<(&str, &Path)> = Vec::new();
    for (name, path) in outputs {
        kernel.check_output(name)?;
        check_format(kernel, name, path)?;
        if let Some((other, _)) = seen.iter().find(|(_, p)| *p == path) {
            return Err(Error::BadInput(format!(
                "outputs '{other}' and '{name}' both go to {}: give each its own file",
                path.display()
            )));
        }
        seen.push((name, path));
    }
    Ok(())
}

/// Checks, before anything runs, that an output's path names a `.npy`
/// (or a `.png`) in a folder that exists: found after the run, either
/// would throw the work away.
pub fn check_path(name: &str, path: &Path) -> Result<()> {
    let npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if !npy && !is_png(path) {
        return Err(Error::BadInput(format!(
            "output '{name}' -> {}: outputs are written as .npy (or .png for a picture); \
             end the path in .npy",
            path.display()
        )));
    }
    check_destination(&format!("output '{name}' ->"), path)
}

/// Checks, before anything runs, that `path` (`what` says whose) names a
/// file in a folder that exists.
pub fn check_destination(what: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::BadInput(format!(
            "{what} {}: that is a folder; give a file path",
            path.display()
        )));
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder.filter(|f| !f.is_dir()) {
        return Err(Error::BadInput(format!(
            "{what} {}: the folder {} does not exist",
            path.display(),
            folder.display()
        )));
    }
    Ok(())
}

/// Checks that one output can be written in the format its path asks for.
fn check_format(kernel: Kernel, name: &str, path: &Path) -> Result<()> {
    check_path(name, path)?;
    if is_png(path) && kernel.signature().picture_output != Some(name) {
        let pictures: Vec<String> = Kernel::ALL
            .iter()
            .filter_map(|k| Some(format!("{k}'s '{}'", k.signature().picture_output?)))
            .collect();
        return Err(Error::BadInput(format!(
            "output '{name}' -> {}: only {} can be written as .png; use .npy",
            path.display(),
            pictures.join(" and ")
        )));
    }
    Ok(())
}

/// Checks that the job gave every output asked for: a kernel's outputs may
/// depend on its inputs and parameters (`sort` gives `values` only with
/// values, `indices` only with `indices=true`).
pub fn check_given<'a>(
    given: impl IntoIterator<Item = &'a str>,
    requested: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let given: Vec<&str> = given.into_iter().collect();
    for name in requested {
        if !given.contains(&name) {
            return Err(Error::BadInput(format!(
                "output '{name}' was asked for, but this job gives only {} (see `anycore \
                 kernels` for when each output is given)",
                given.join(", ")
            )));
        }
    }
    Ok(())
}

/// Writes one output tensor to `path`: a picture for a `.png` path (drawn
/// by `painter`, the task's [`Task::painter`]; [`check_format`] has refused
/// the others), else a `.npy` file.
pub fn write(tensor: &Tensor, path: &Path, painter: Option<Painter>) -> Result<()> {
    match painter.filter(|_| is_png(path)) {
        Some(painter) => {
            let picture = painter.draw(tensor).ok_or_else(|| {
                Error::Internal(format!("{} is not a picture", tensor.describe()))
            })?;
            write_png(&picture, path)
        }
        None => npy::write(path, tensor),
    }
}

fn write_png(picture: &Picture, path: &Path) -> Result<()> {
    anycore::tensor::png::write(
        path,
        picture.width,
        picture.height,
        picture.channels,
        &picture.pixels,
    )
}

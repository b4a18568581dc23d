//! The files anycore writes (arrays, pictures, video streams): written
//! beside their path under a hidden partial name (`.NAME.partial-PID-N`)
//! and renamed into place by [`OutputFile::finish`], so a run that fails
//! leaves no half-written file and the file that was there stays, and a
//! run may write the file it reads (`-i x.y4m -o x.y4m`) — the input is
//! replaced only once the output is whole.
//!
//! A path that names something other than a regular file (a FIFO,
//! `/dev/null`, a terminal) is written in place: renaming over it would
//! replace the device or pipe with a file. A symbolic link is followed, so
//! the file it points to is replaced, not the link.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file being written to a path; see the module's documentation.
pub struct OutputFile {
    file: File,
    /// Where it goes (a link's target).
    target: PathBuf,
    /// The partial file while it is written; `None` when written in place
    /// or once renamed.
    partial: Option<PathBuf>,
}

impl OutputFile {
    /// Starts writing the file at `path` (nothing appears there before
    /// [`OutputFile::finish`], unless `path` is not a regular file).
    pub fn create(path: &Path) -> io::Result<OutputFile> {
        if path.is_dir() {
            return Err(io::Error::other("names a folder, not a file"));
        }
        // A link's target is replaced, not the link.
        let target = match std::fs::canonicalize(path) {
            Ok(real) if path.is_symlink() => real,
            _ => path.to_owned(),
        };
        if let Ok(meta) = std::fs::metadata(&target)
            && !meta.is_file()
        {
            return Ok(OutputFile {
                file: File::create(&target)?,
                target,
                partial: None,
            });
        }
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::other("names no file"))?;
        // Hidden, and apart for every writer: two writers of one path (two
        // lines of a batch) each rename a whole file, the last one staying.
        static WRITERS: AtomicU64 = AtomicU64::new(0);
        let prefix = partial_prefix(name);
        remove_stale_partials(&target, &prefix);
        let mut partial_name = prefix;
        partial_name.push(format!(
            "{}-{}",
            std::process::id(),
            WRITERS.fetch_add(1, Ordering::Relaxed)
        ));
        let partial = target.with_file_name(partial_name);
        // From here on, dropping the file removes the partial one.
        Ok(OutputFile {
            file: File::create(&partial)?,
            target,
            partial: Some(partial),
        })
    }

    /// Moves the whole file into place (the caller has flushed what it
    /// buffered).
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(partial) = self.partial.take() {
            let moved = std::fs::rename(&partial, &self.target);
            if moved.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            moved?;
        }
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(partial) = &self.partial {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// `.NAME.partial-`: how the partial files of output `NAME` begin.
fn partial_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".partial-");
    prefix
}

/// Removes the partial files a killed run left beside `path` (a process
/// stopped by a signal drops nothing): those whose process no longer
/// runs. Where processes cannot be looked up (no `/proc`), none.
fn remove_stale_partials(path: &Path, prefix: &OsStr) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let prefix = prefix.to_string_lossy();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let pid = name
            .strip_prefix(&*prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    #[cfg(unix)]
    fn a_file_appears_whole_or_not_at_all_and_links_keep_pointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, "old").unwrap();
        let mut f = OutputFile::create(&path).unwrap();
        f.write_all(b"new, half").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(listing(dir.path()), ["out.bin"]);

        // Through a link: the target is replaced, the link stays a link.
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let mut f = OutputFile::create(&link).unwrap();
        f.write_all(b"new").unwrap();
        f.finish().unwrap();
        assert!(link.is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(listing(dir.path()), ["link.bin", "out.bin"]);

        assert!(OutputFile::create(dir.path()).is_err());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_fifo_is_written_in_place() {
        // A pipe stays a pipe, and its reader gets the bytes (a rename
        // would have put a file in its place, as it would over /dev/null).
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.y4m");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let mut f = OutputFile::create(&fifo).unwrap();
        f.write_all(b"through the pipe").unwrap();
        f.finish().unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(!std::fs::metadata(&fifo).unwrap().is_file());
        assert_eq!(listing(dir.path()), ["pipe.y4m"]);
    }
}

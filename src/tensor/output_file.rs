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
    /// The first write that failed: what was written is torn, and never
    /// goes into place.
    failed: Option<(io::ErrorKind, String)>,
}

/// Links followed at most, as the system's own limit (`ELOOP`) is about.
const MAX_LINKS: usize = 40;

impl OutputFile {
    /// Starts writing the file at `path` (nothing appears there before
    /// [`OutputFile::finish`], unless `path` is not a regular file).
    pub fn create(path: &Path) -> io::Result<OutputFile> {
        if path.is_dir() {
            return Err(io::Error::other("names a folder, not a file"));
        }
        let target = destination(path)?;
        let in_place = |target: PathBuf| -> io::Result<OutputFile> {
            Ok(OutputFile {
                file: File::create(&target)?,
                target,
                partial: None,
                failed: None,
            })
        };
        // The process's own stdout and stderr are written through the
        // descriptors it was given: opening `/dev/stdout` again would
        // truncate the file a shell's `>> log` appends to.
        #[cfg(unix)]
        if let Some(fd) = standard_descriptor(&target) {
            return Ok(OutputFile {
                file: File::from(fd?),
                target,
                partial: None,
                failed: None,
            });
        }
        // Other paths of the system's (devices, descriptors) are written
        // as they are, whatever they lead to.
        if target.starts_with("/dev") || target.starts_with("/proc") {
            return in_place(target);
        }
        let existing = std::fs::metadata(&target).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            return in_place(target);
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
        let file = File::create(&partial)?;
        // From here on, dropping the file removes the partial one.
        let out = OutputFile {
            file,
            target,
            partial: Some(partial),
            failed: None,
        };
        // A file replaced keeps its permissions (a private one stays so).
        if let Some(meta) = existing {
            out.file.set_permissions(meta.permissions())?;
        }
        Ok(out)
    }

    /// Moves the whole file into place (the caller has flushed what it
    /// buffered); refused, and the partial file removed, when any write
    /// failed.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some((kind, message)) = self.failed.take() {
            return Err(io::Error::new(kind, format!("{message}; it was not kept")));
        }
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

/// A copy of stdout's or stderr's descriptor, when `path` names it
/// (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`, and the same for 2).
#[cfg(unix)]
fn standard_descriptor(path: &Path) -> Option<io::Result<std::os::fd::OwnedFd>> {
    use std::os::fd::AsFd;
    let name = path.to_str()?;
    let fd = name
        .strip_prefix("/dev/fd/")
        .or_else(|| name.strip_prefix("/proc/self/fd/"));
    match (name, fd) {
        ("/dev/stdout", _) | (_, Some("1")) => Some(io::stdout().as_fd().try_clone_to_owned()),
        ("/dev/stderr", _) | (_, Some("2")) => Some(io::stderr().as_fd().try_clone_to_owned()),
        _ => None,
    }
}

/// Where writing `path` should land: `path` itself, or, through symbolic
/// links (also one to a file not there yet), the file they lead to, each
/// link read against its own folder. `/dev` and `/proc` paths are left as
/// they are.
fn destination(path: &Path) -> io::Result<PathBuf> {
    let mut at = path.to_owned();
    for _ in 0..MAX_LINKS {
        if at.starts_with("/dev") || at.starts_with("/proc") {
            return Ok(at);
        }
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = std::fs::read_link(&at)?;
                at = match at.parent() {
                    Some(folder) => folder.join(next),
                    None => next,
                };
            }
            _ => return Ok(at),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_LINKS} symbolic links lead from it"
    )))
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf);
        if let Err(e) = &written {
            self.failed(e);
        }
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.file.flush();
        if let Err(e) = &flushed {
            self.failed(e);
        }
        flushed
    }
}

impl OutputFile {
    /// Remembers the first failed write (an interrupted one is tried
    /// again by the caller, and tears nothing).
    fn failed(&mut self, e: &io::Error) {
        if self.failed.is_none() && e.kind() != io::ErrorKind::Interrupted {
            self.failed = Some((e.kind(), e.to_string()));
        }
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
/// runs. Where processes cannot be looked up (no `/proc`), none. (A writer
/// in another PID namespace, a container sharing the folder, looks gone:
/// its partial file would be removed under it.)
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
pub(crate) mod tests {
    use super::*;

    /// The names in `dir`, sorted (for this module's tests and `npy`'s).
    pub(crate) fn listing(dir: &Path) -> Vec<String> {
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
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut f = OutputFile::create(&path).unwrap();
        f.write_all(b"new, half").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(listing(dir.path()), ["out.bin"]);

        // Through a link: the target is replaced (keeping its mode), the
        // link stays a link.
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let mut f = OutputFile::create(&link).unwrap();
        f.write_all(b"new").unwrap();
        f.finish().unwrap();
        assert!(link.is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A link (relative, and through another link) to a file not there
        // yet: the file appears where it points.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("sub/later.bin", dir.path().join("hop.bin")).unwrap();
        std::os::unix::fs::symlink("hop.bin", dir.path().join("dangling.bin")).unwrap();
        let mut f = OutputFile::create(&dir.path().join("dangling.bin")).unwrap();
        f.write_all(b"late").unwrap();
        f.finish().unwrap();
        assert!(dir.path().join("dangling.bin").is_symlink());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/later.bin")).unwrap(),
            "late"
        );
        assert_eq!(
            listing(dir.path()),
            ["dangling.bin", "hop.bin", "link.bin", "out.bin", "sub"]
        );

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
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let fifo = fifo.clone();
            std::thread::spawn(move || tx.send(std::fs::read(fifo).unwrap()));
        }
        let mut f = OutputFile::create(&fifo).unwrap();
        f.write_all(b"through the pipe").unwrap();
        f.finish().unwrap();
        // Had the pipe been replaced, its reader would wait for ever.
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(
            got.expect("the pipe's reader got the bytes"),
            b"through the pipe"
        );
        assert!(!std::fs::metadata(&fifo).unwrap().is_file());
        assert_eq!(listing(dir.path()), ["pipe.y4m"]);
    }
}

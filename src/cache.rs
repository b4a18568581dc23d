//! Where anycore keeps what it measured about this machine between runs
//! (the cost model, the GPU's tuned matmul variants): one folder, used by
//! every layer that caches, so it depends on nothing above it; and how a
//! cache file is written.

use std::path::{Path, PathBuf};

/// `$ANYCORE_CACHE_DIR`, `$XDG_CACHE_HOME/anycore` or `~/.cache/anycore`;
/// `None` when none of them is set.
pub fn dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("ANYCORE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("anycore")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("anycore")))
}

/// Writes `text` to `path`, making its folder if needed. The file is
/// replaced whole (written beside it, then renamed), so a process reading
/// it meanwhile never sees half of it.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

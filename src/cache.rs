//! Where anycore keeps what it measured about this machine between runs
//! (the cost model, the GPU's tuned matmul variants): one folder, used by
//! every layer that caches, so it depends on nothing above it.

use std::path::PathBuf;

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

//! The crate's error type.
//!
//! Errors fall into three groups, and the command line maps each to an exit
//! code: bad input from the user (exit 2), a GPU that was asked for but cannot
//! be had (exit 2: the user can fix it), and failures while running (exit 1).

use std::path::PathBuf;

/// Anything that can go wrong in anycore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job itself is wrong: an unknown kernel, a missing or malformed
    /// input or parameter, mismatched shapes. The message names the culprit.
    #[error("{0}")]
    BadInput(String),

    /// A `.npy` file that cannot be read or is not what the kernel needs.
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The GPU backend was asked for but no usable adapter exists.
    #[error("no usable GPU: {0}")]
    NoGpu(String),

    /// The GPU failed while running a job (validation error, out of memory,
    /// device lost). The job may be retried on the CPU.
    #[error("GPU failure: {0}")]
    Gpu(String),

    /// The coordinator is full and the caller asked not to wait.
    #[error("busy: the job queue is full; retry later")]
    Busy,

    /// Something named by id (a stored tensor) does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// A store of tensors is at its bound.
    #[error("store full: {0}")]
    StoreFull(String),

    /// The coordinator is shutting down and takes no more jobs.
    #[error("shutting down: no more jobs are taken")]
    ShuttingDown,

    /// The work ran past its deadline and was stopped (its results thrown
    /// away).
    #[error("stopped after running past its deadline of {ms} ms")]
    DeadlineExceeded {
        /// The deadline, in milliseconds.
        ms: u64,
    },

    /// The system refused memory the work needs (checked before it runs:
    /// an allocation refused mid-run would abort the process).
    #[error("{0}")]
    OutOfMemory(String),

    /// The work was cancelled: before it started, or while it ran (its
    /// results were thrown away).
    #[error("cancelled")]
    Cancelled,

    /// A kernel panicked; only its job failed.
    #[error("the kernel panicked: {0}")]
    Panicked(String),

    /// Backends gave different results for one job
    /// ([`crate::backend::compare`]).
    #[error("backends disagree: {0}")]
    Disagree(String),

    /// Some jobs of a batch failed (each was reported on its own).
    #[error("{failed} of {total} jobs failed")]
    BatchFailed {
        /// Jobs that failed.
        failed: usize,
        /// Jobs in the batch.
        total: usize,
    },

    /// Talking to an anycore server failed, or it refused the job.
    #[error("server: {0}")]
    Remote(String),

    /// The machine refused a resource anycore needs to run at all (a thread
    /// pool, an async runtime).
    #[error("{0}")]
    Internal(String),

    /// Writing a result failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the user can fix this by changing the job or the command line
    /// (the command line exits 2 for these, 1 for the rest).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::BadInput(_)
                | Error::BadFile { .. }
                | Error::NoGpu(_)
                | Error::NotFound(_)
                | Error::StoreFull(_)
        )
    }

    /// Shorthand for [`Error::BadInput`] with a formatted message.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Error::BadInput(message.into())
    }

    /// A user error with `more` after its message (`…; more`); other
    /// errors as they are.
    pub(crate) fn context_after(self, more: &str) -> Self {
        match self {
            Error::BadInput(m) => Error::BadInput(format!("{m}; {more}")),
            other => other,
        }
    }

    /// The same error with its message prefixed by `what: ` (a pipeline's
    /// step, say), keeping its kind.
    pub fn context(self, what: &str) -> Self {
        match self {
            Error::BadInput(m) => Error::BadInput(format!("{what}: {m}")),
            // The path leads a file's message: the step goes before it.
            Error::BadFile { path, message } => {
                Error::BadInput(format!("{what}: {}: {message}", path.display()))
            }
            Error::Gpu(m) => Error::Gpu(format!("{what}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::StoreFull(m) => Error::StoreFull(format!("{what}: {m}")),
            Error::Panicked(m) => Error::Panicked(format!("{what}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{what}: {m}")),
            other => other,
        }
    }
}

/// What a caught panic said (its message, if it was text).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! anycore runs data-parallel kernels on any core a machine has: GPU cores
//! through wgpu and WGSL compute shaders, CPU cores through a rayon pool when
//! there is no GPU adapter or when the CPU is the better place for a job.
//!
//! # Layout
//!
//! - [`tensor`]: arrays (dtype, shape, data) and `.npy` files.
//! - [`kernel`]: the catalog — per kernel its signature, validation, rayon
//!   implementation and sequential reference; the shaders live in `shaders/`.
//! - [`backend`]: the [`Backend`](backend::Backend) trait, implemented by the
//!   GPU ([`backend::gpu`]) and the CPU ([`backend::cpu`]), and
//!   [`backend::open`], which picks one and says why.
//! - [`coordinator`]: takes jobs concurrently, places each (`gpu`, `cpu`
//!   or `auto` by a cost model plus queued work) and runs it on a worker.
//! - [`engine`]: the coordinator ready to embed: [`engine::Engine`] (async)
//!   and [`engine::BlockingEngine`].
//! - [`service`]: the HTTP API over an engine (axum).
//! - [`error`]: the error type; the command line maps it to exit codes.
//!
//! # Example
//!
//! ```
//! use anycore::backend::{self, BackendChoice, gpu::GpuOptions};
//! use anycore::kernel::{Job, Kernel, Task};
//! use anycore::tensor::Tensor;
//!
//! let job = Job::new(Kernel::Axpy)
//!     .input("x", Tensor::from_f32(vec![1.0, 2.0, 3.0]))
//!     .input("y", Tensor::from_f32(vec![10.0, 20.0, 30.0]))
//!     .param("a", 2.0);
//! let task = Task::new(job)?;
//! // A hardware GPU if there is one, else the CPU.
//! let placement = backend::open(BackendChoice::Auto, &GpuOptions::from_env())?;
//! let run = placement.backend.run(&task)?;
//! assert_eq!(run.outputs["out"].as_f32(), Some(&[12.0, 24.0, 36.0][..]));
//! # Ok::<(), anycore::Error>(())
//! ```

#![deny(missing_docs)]

pub mod backend;
pub mod coordinator;
pub mod engine;
pub mod error;
pub mod kernel;
pub mod service;
pub mod tensor;

pub use error::{Error, Result};

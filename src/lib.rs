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
//!   GPU ([`backend::gpu`]) and the CPU ([`backend::cpu`]).
//! - [`coordinator`]: takes jobs concurrently, places each (`gpu`, `cpu`
//!   or `auto` by a cost model plus queued work) and runs it on a worker.
//! - [`engine`]: the coordinator ready to embed: [`engine::Engine`] (async)
//!   and [`engine::BlockingEngine`].
//! - [`service`]: the HTTP API over an engine (axum).
//! - [`pool`]: several machines: jobs on NATS JetStream, run by
//!   `anycore worker` processes.
//! - [`stream`]: jobs over `.npy` files larger than memory, run a chunk
//!   at a time with reading, computing and writing overlapped.
//! - [`video`]: YUV4MPEG2 streams filtered frame by frame through kernels,
//!   reading, computing and writing overlapped in constant memory.
//! - [`bench`]: `anycore bench` — throughput per kernel, backend and size,
//!   beside baselines timed in the same run.
//! - [`error`]: the error type; the command line maps it to exit codes.
//! - [`cache`]: the folder where measurements (cost model, tuned GPU
//!   kernel variants) are kept between runs.
//!
//! # Example
//!
//! ```
//! use anycore::engine::{BlockingEngine, EngineConfig};
//! use anycore::kernel::{Job, Kernel};
//! use anycore::tensor::Tensor;
//!
//! // A hardware GPU if there is one, else the CPU; each job placed on its own.
//! let engine = BlockingEngine::start(EngineConfig::default())?;
//! let job = Job::new(Kernel::Axpy)
//!     .input("x", Tensor::from_f32(vec![1.0, 2.0, 3.0]))
//!     .input("y", Tensor::from_f32(vec![10.0, 20.0, 30.0]))
//!     .param("a", 2.0);
//! let report = engine.run(job)?;
//! assert_eq!(report.outputs["out"].as_f32(), Some(&[12.0, 24.0, 36.0][..]));
//! println!("ran on {} because {}", report.backend, report.placement_reason);
//! # Ok::<(), anycore::Error>(())
//! ```
//!
//! Without the coordinator, a backend ([`backend::cpu::CpuBackend`],
//! [`backend::gpu::GpuBackend`]) runs a checked [`kernel::Task`] directly.

#![deny(missing_docs)]

pub mod backend;
pub mod bench;
pub mod cache;
pub mod coordinator;
pub mod engine;
pub mod error;
pub mod kernel;
pub mod pipeline;
pub mod pool;
pub mod service;
pub mod stream;
pub mod tensor;
pub mod video;

pub use error::{Error, Result};

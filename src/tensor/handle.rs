//! Tensor handles: a tensor the engine holds, wherever its data lives.
//!
//! A [`Handle`] is a cheap-to-clone reference to one immutable tensor. Its
//! data lives in host memory, in a device's memory, or in both: the host
//! copy, once made, stays until the last handle drops; a device copy may
//! come and go (a backend spills it to host memory when its device is
//! full). Nothing here moves data: backends make the copies they need and
//! attach them, so that the next job placed on the same device finds its
//! input already there.
//!
//! Every task's inputs are handles: a tensor given to a job is wrapped in
//! a fresh one, held by that job alone.
//!
//! ```no_run
//! use anycore::backend::BackendChoice;
//! use anycore::engine::{BlockingEngine, EngineConfig};
//! use anycore::kernel::{Job, Kernel};
//! use anycore::tensor::Handle;
//!
//! let engine = BlockingEngine::start(EngineConfig::default())?;
//! let x = Handle::from(vec![1.0f32; 1 << 20]); // uploaded at its first GPU use, once
//! let doubled = engine.run_on(
//!     Job::new(Kernel::Axpy).input("x", x.clone()).input("y", x.clone()).keep("out"),
//!     BackendChoice::Gpu,
//! )?;
//! let kept = doubled.kept["out"].clone(); // still in GPU memory
//! let total = engine.run_on(Job::new(Kernel::Reduce).input("x", kept.clone()), BackendChoice::Gpu)?;
//! println!("{:?}, moved {:?}", total.outputs["out"].as_f32(), total.traffic); // 4 bytes down
//! let back = engine.read(&kept)?; // brought home once; the host copy stays
//! assert_eq!(back.as_f32().unwrap()[0], 2.0);
//! # Ok::<(), anycore::Error>(())
//! ```

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{DType, Described, Spec, Tensor, TensorData};

/// A copy of a tensor's data in a device's memory, opaque to everything
/// but the backend that made it (which downcasts it through `as_any`).
/// Dropping the last reference frees the device memory.
pub trait DeviceCopy: Any + Send + Sync {
    /// Bytes of device memory it holds.
    fn bytes(&self) -> u64;
    /// For the backend that made it.
    fn as_any(&self) -> &dyn Any;
}

/// A tensor the engine holds; clones share it.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

struct Shared {
    id: u64,
    spec: Spec,
    host: OnceLock<TensorData>,
    device: Mutex<Option<Arc<dyn DeviceCopy>>>,
}

/// Where a handle's data is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// In host memory.
    pub host: bool,
    /// In a device's memory.
    pub device: bool,
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Handle {
    /// A handle to a tensor in host memory.
    pub fn new(tensor: Tensor) -> Handle {
        let spec = tensor.spec();
        Handle(Arc::new(Shared {
            id: next_id(),
            spec,
            host: OnceLock::from(tensor.into_data()),
            device: Mutex::new(None),
        }))
    }

    /// A handle to a tensor that exists only in a device's memory (a
    /// backend's kept output).
    pub fn on_device(spec: Spec, copy: Arc<dyn DeviceCopy>) -> Handle {
        Handle(Arc::new(Shared {
            id: next_id(),
            spec,
            host: OnceLock::new(),
            device: Mutex::new(Some(copy)),
        }))
    }

    /// A number no other handle alive shares (clones share it).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Its dtype and shape.
    pub fn spec(&self) -> &Spec {
        &self.0.spec
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.spec.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.spec.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.spec.shape.iter().product()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of its data.
    pub fn bytes(&self) -> u64 {
        (self.len() * self.0.spec.dtype.size()) as u64
    }

    /// Where its data is now.
    pub fn location(&self) -> Location {
        Location {
            host: self.0.host.get().is_some(),
            device: self.device().is_some(),
        }
    }

    /// The host copy, if there is one.
    pub fn host(&self) -> Option<&TensorData> {
        self.0.host.get()
    }

    /// The host copy.
    ///
    /// # Panics
    /// If there is none: the coordinator brings every input of a job
    /// placed on the CPU home before the job runs, and the GPU backend
    /// reads a device-only input through its own device copy, so this
    /// never happens but through a bug.
    pub fn data(&self) -> &TensorData {
        self.host()
            .expect("a CPU run got an input with no host copy (the coordinator fetches them first)")
    }

    /// Records the host copy (a backend's download of its device copy).
    /// A handle's data never changes, so a second copy is dropped.
    pub fn set_host(&self, data: TensorData) {
        debug_assert_eq!(data.len(), self.len());
        let _ = self.0.host.set(data);
    }

    /// The device copy, if there is one.
    pub fn device(&self) -> Option<Arc<dyn DeviceCopy>> {
        lock(&self.0.device).clone()
    }

    /// Attaches a device copy, or drops it (`None`: spilled).
    pub fn set_device(&self, copy: Option<Arc<dyn DeviceCopy>>) {
        *lock(&self.0.device) = copy;
    }

    /// A reference that does not keep the tensor alive (a backend's list
    /// of what it holds, for spilling).
    pub fn downgrade(&self) -> WeakHandle {
        WeakHandle(Arc::downgrade(&self.0))
    }

    /// Whether other handles share this tensor (a caller or a store holds
    /// it too, so a copy made for this job is worth keeping).
    pub fn is_shared(&self) -> bool {
        self.holders() > 1
    }

    /// How many handles share this tensor, this one included.
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// The host copy as a tensor (copied), if there is one.
    pub fn to_tensor(&self) -> Option<Tensor> {
        self.host()
            .map(|data| Tensor::new(self.0.spec.shape.clone(), data.clone()))
    }

    /// The elements, taken without a copy when no other handle shares them
    /// (copied otherwise: a shared tensor never changes). See
    /// [`Handle::data`] for the host copy it needs.
    pub fn into_data(self) -> TensorData {
        match Arc::try_unwrap(self.0) {
            Ok(shared) => shared
                .host
                .into_inner()
                .expect("a CPU run got an input with no host copy"),
            Err(shared) => Handle(shared).data().clone(),
        }
    }

    /// The elements as `f32`.
    ///
    /// # Panics
    /// If the dtype is not `f32` (kernels check dtypes when they take their
    /// inputs) or there is no host copy ([`Handle::data`]).
    pub fn f32s(&self) -> &[f32] {
        match self.data() {
            TensorData::F32(v) => v,
            other => panic!("an f32 input holds {}", other.dtype()),
        }
    }

    /// The elements as `f32`, taken as [`Handle::into_data`] takes them.
    pub fn into_f32s(self) -> Vec<f32> {
        match self.into_data() {
            TensorData::F32(v) => v,
            other => panic!("an f32 input holds {}", other.dtype()),
        }
    }
}

/// A [`Handle`] that does not keep its tensor alive.
#[derive(Clone)]
pub struct WeakHandle(Weak<Shared>);

impl WeakHandle {
    /// The handle, if its tensor is still alive.
    pub fn upgrade(&self) -> Option<Handle> {
        self.0.upgrade().map(Handle)
    }
}

impl From<Tensor> for Handle {
    fn from(tensor: Tensor) -> Handle {
        Handle::new(tensor)
    }
}

impl From<Vec<f32>> for Handle {
    fn from(v: Vec<f32>) -> Handle {
        Handle::new(Tensor::from_f32(v))
    }
}

impl From<TensorData> for Handle {
    /// A one-dimensional tensor of these elements.
    fn from(data: TensorData) -> Handle {
        Handle::new(Tensor::new(vec![data.len()], data))
    }
}

impl Described for Handle {
    fn dtype(&self) -> DType {
        Handle::dtype(self)
    }
    fn shape(&self) -> &[usize] {
        Handle::shape(self)
    }
}

impl std::fmt::Debug for Handle {
    /// Its spec, where it is, and its host copy's elements: two handles
    /// to equal tensors print alike.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("spec", &self.0.spec)
            .field("location", &self.location())
            .field("host", &self.host())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! Tensors the service keeps between requests: uploaded with `POST
//! /v1/tensors`, or kept from a job's or a pipeline's outputs, and named by
//! id in later jobs' inputs (`{"tensor": ID}`). Bounded in count and in
//! bytes: past either bound a new tensor is refused with a clear error,
//! never stored at the cost of the process's memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::ids::Id;
use crate::error::{Error, Result};
use crate::tensor::Handle;

/// The service's stored tensors.
pub struct Store {
    inner: Mutex<Inner>,
    max_count: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    tensors: BTreeMap<Id, Handle>,
    bytes: usize,
}

/// A tensor's size in the store: its elements' bytes (wherever they are:
/// a kept output may be in GPU memory, and spill home).
fn size(t: &Handle) -> usize {
    t.bytes() as usize
}

impl Store {
    /// A store of at most `max_count` tensors and `max_bytes` bytes.
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        Store {
            inner: Mutex::default(),
            max_count,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a tensor and gives its id, or [`Error::StoreFull`] when it
    /// would pass a bound.
    pub fn put(&self, tensor: Handle) -> Result<Id> {
        Ok(self.put_all(vec![tensor])?[0])
    }

    /// Stores all the tensors or none: their ids, or [`Error::StoreFull`]
    /// when together they would pass a bound.
    pub fn put_all(&self, tensors: Vec<Handle>) -> Result<Vec<Id>> {
        let bytes = tensors.iter().map(size).fold(0usize, usize::saturating_add);
        let mut inner = self.lock();
        if inner.tensors.len().saturating_add(tensors.len()) > self.max_count {
            return Err(Error::StoreFull(format!(
                "storing {} more tensors would pass the service's limit of {} (it stores \
                 {}); delete some (DELETE /v1/tensors/ID)",
                tensors.len(),
                self.max_count,
                inner.tensors.len()
            )));
        }
        if inner.bytes.saturating_add(bytes) > self.max_bytes {
            let what: Vec<String> = tensors.iter().map(|t| t.spec().describe()).collect();
            return Err(Error::StoreFull(format!(
                "storing {} ({bytes} bytes) would pass the service's limit of {} bytes \
                 of stored tensors ({} in use); delete some (DELETE /v1/tensors/ID)",
                what.join(", "),
                self.max_bytes,
                inner.bytes
            )));
        }
        let mut ids = Vec::with_capacity(tensors.len());
        for tensor in tensors {
            let id = Id::random();
            inner.bytes += size(&tensor);
            inner.tensors.insert(id, tensor);
            ids.push(id);
        }
        Ok(ids)
    }

    /// The tensor with `id`, or [`Error::NotFound`].
    pub fn get(&self, id: Id) -> Result<Handle> {
        self.lock()
            .tensors
            .get(&id)
            .cloned()
            .ok_or_else(|| unknown(id))
    }

    /// Forgets the tensor with `id` (its memory is freed once no running
    /// job holds it), or [`Error::NotFound`].
    pub fn remove(&self, id: Id) -> Result<()> {
        let mut inner = self.lock();
        let tensor = inner.tensors.remove(&id).ok_or_else(|| unknown(id))?;
        inner.bytes -= size(&tensor);
        Ok(())
    }

    /// Tensors stored and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.tensors.len(), inner.bytes)
    }
}

fn unknown(id: Id) -> Error {
    Error::NotFound(format!(
        "no stored tensor with id {id} (deleted, or never stored)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_and_deleting_makes_room() {
        let store = Store::new(2, 40);
        let t = |n: usize| Handle::from(vec![1.5f32; n]);
        let a = store.put(t(5)).unwrap();
        assert!(
            matches!(store.put(t(6)), Err(Error::StoreFull(_))),
            "20 + 24 > 40 bytes"
        );
        let b = store.put(t(4)).unwrap();
        assert!(
            matches!(store.put(t(0)), Err(Error::StoreFull(_))),
            "two tensors at most"
        );
        store.remove(b).unwrap();
        assert!(
            matches!(store.put_all(vec![t(1), t(1)]), Err(Error::StoreFull(_))),
            "all or none"
        );
        assert_eq!(store.usage(), (1, 20), "nothing of a refused put_all stays");
        let b = store.put(t(4)).unwrap();
        assert_eq!(store.usage(), (2, 36));
        assert_eq!(store.get(a).unwrap().f32s(), &[1.5f32; 5]);
        store.remove(a).unwrap();
        assert!(matches!(store.get(a), Err(Error::NotFound(_))));
        assert!(matches!(store.remove(a), Err(Error::NotFound(_))));
        let c = store.put(t(6)).unwrap();
        assert!(c != a && c != b, "ids are not reused");
        assert_eq!(store.usage(), (2, 40));
    }
}

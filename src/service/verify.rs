//! Checking a served job's answer against the same job run here.
//!
//! `anycore loadgen` sends the same few jobs many times; now and then it
//! reads an answer in full and compares it with the outputs it computed
//! itself, once, before the run. A GPU and the CPU may round floats
//! differently (another summation order, fused multiply-adds), so floats
//! match within a relative tolerance; integers must match exactly. NaN
//! matches NaN and an infinity matches the same infinity: a kernel that
//! gives NaN on both sides gives the right answer. Inline JSON has no NaN
//! or infinities (the service writes them as `null`), so a `null` matches
//! any of them.

use crate::kernel::Outputs;
use crate::tensor::{DType, Tensor};

use super::api::{self, ArrayOut, Elements, JobResponse};

/// Floats match when within `TOLERANCE · max(1, |expected|)`.
pub const TOLERANCE: f64 = 1e-4;

/// Whether `got` carries the outputs `want` holds (names, dtypes, shapes
/// and values); if not, what differs first, in words.
pub fn check_response(got: &JobResponse, want: &Outputs) -> Result<(), String> {
    let names = |keys: Vec<&String>| {
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if got.outputs.len() != want.len() || got.outputs.keys().zip(want.keys()).any(|(a, b)| a != b) {
        return Err(format!(
            "outputs [{}], expected [{}]",
            names(got.outputs.keys().collect()),
            names(want.keys().collect())
        ));
    }
    for (name, out) in &got.outputs {
        check_output(out, &want[name]).map_err(|e| format!("output '{name}': {e}"))?;
    }
    Ok(())
}

/// Whether one output array, inline or `.npy`, holds `want`.
pub fn check_output(got: &ArrayOut, want: &Tensor) -> Result<(), String> {
    if got.dtype != want.dtype().name() || got.shape != want.shape() {
        return Err(format!(
            "{} {:?}, expected {} {:?}",
            got.dtype,
            got.shape,
            want.dtype().name(),
            want.shape()
        ));
    }
    let values: Vec<Option<f64>> = match (&got.data, &got.npy) {
        (Some(Elements::Received(items)), _) => items.clone(),
        (Some(Elements::Of(t)), _) => t.data().to_f64().into_iter().map(Some).collect(),
        (None, Some(_)) => api::decode_npy(got)
            .map_err(|e| e.to_string())?
            .data()
            .to_f64()
            .into_iter()
            .map(Some)
            .collect(),
        (None, None) => return Err("no elements (neither 'data' nor 'npy')".into()),
    };
    check_values(&values, want)
}

/// Whether `got` (`None` for a JSON `null`) holds `want`'s elements: floats
/// within [`TOLERANCE`], integers exactly; the first element that differs
/// otherwise.
pub fn check_values(got: &[Option<f64>], want: &Tensor) -> Result<(), String> {
    let expected = want.data().to_f64();
    if got.len() != expected.len() {
        return Err(format!(
            "{} elements, expected {}",
            got.len(),
            expected.len()
        ));
    }
    let float = want.dtype() == DType::F32;
    let show = |g: Option<f64>| g.map_or("null".to_owned(), |g| g.to_string());
    for (i, (&g, &w)) in got.iter().zip(&expected).enumerate() {
        let same = match g {
            // JSON writes NaN and infinities as null.
            None => !w.is_finite(),
            Some(g) if w.is_nan() => g.is_nan(),
            Some(g) if w.is_infinite() || !float => g == w,
            // Written so that a NaN `g` fails it.
            Some(g) => (g - w).abs() <= TOLERANCE * w.abs().max(1.0),
        };
        if !same {
            return Err(format!("element {i} is {}, expected {w}", show(g)));
        }
    }
    Ok(())
}

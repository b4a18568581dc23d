//! Caps an operator sets on what one job may ask for, beyond the memory
//! budget and the work limit: a largest value for any kernel's numeric
//! parameter (`serve --cap mandelbrot.max_iter=100000`) and a largest
//! number of elements in any tensor a job is given or gives
//! (`--max-elements`). Names are checked against the kernel catalog when
//! the service starts; a job past a cap is a 422 `over_cap` naming it,
//! before anything runs. A parameter a job leaves out counts at its
//! default.

use axum::http::StatusCode;

use super::ApiError;
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Plan};
use crate::pipeline::CheckedPipeline;
use crate::tensor::{Handle, Spec};

/// The caps, as set.
#[derive(Clone, Debug, Default)]
pub struct Caps {
    params: Vec<(Kernel, &'static str, f64)>,
    max_elements: Option<u64>,
}

impl Caps {
    /// Caps from `KERNEL.PARAM=MAX` settings and an element count; a name
    /// the catalog lacks, or a cap that is not a number, is an error.
    pub fn new(settings: &[String], max_elements: Option<u64>) -> Result<Caps> {
        let mut params = Vec::new();
        for setting in settings {
            let bad = |why: String| Error::BadInput(format!("--cap {setting}: {why}"));
            let (name, max) = setting
                .split_once('=')
                .ok_or_else(|| bad("give KERNEL.PARAM=MAX".into()))?;
            let (kernel, param) = name
                .split_once('.')
                .ok_or_else(|| bad("give KERNEL.PARAM=MAX".into()))?;
            let kernel = Kernel::from_name(kernel).map_err(|e| bad(e.to_string()))?;
            let param = kernel
                .signature()
                .params
                .iter()
                .find(|p| p.name == param)
                .ok_or_else(|| bad(format!("{kernel} has no parameter '{param}'")))?;
            let max: f64 = max
                .trim()
                .parse()
                .ok()
                .filter(|m: &f64| !m.is_nan())
                .ok_or_else(|| bad(format!("'{max}' is not a number")))?;
            params.push((kernel, param.name, max));
        }
        Ok(Caps {
            params,
            max_elements,
        })
    }

    /// Refuses `kernel` given `params` (as text) past a parameter's cap.
    pub(crate) fn check_params(
        &self,
        kernel: Kernel,
        params: &[(String, String)],
    ) -> Result<(), ApiError> {
        for &(capped, name, max) in &self.params {
            if capped != kernel {
                continue;
            }
            let given = params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str());
            let default = kernel
                .signature()
                .params
                .iter()
                .find(|p| p.name == name)
                .and_then(|p| p.default);
            // Not a number: the kernel's own checks say so.
            let Some(value) = given.or(default).and_then(|v| v.trim().parse::<f64>().ok()) else {
                continue;
            };
            if value > max {
                return Err(over_cap(format!(
                    "{kernel}'s {name} is {value}{}, over this service's cap of {max} \
                     (serve --cap {kernel}.{name}=...)",
                    if given.is_none() {
                        " (its default)"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(())
    }

    /// Refuses a job some of whose tensors (`what`, and its spec) hold
    /// more elements than the cap.
    pub(crate) fn check_elements<'s>(
        &self,
        tensors: impl IntoIterator<Item = (String, &'s Spec)>,
    ) -> Result<(), ApiError> {
        let Some(max) = self.max_elements else {
            return Ok(());
        };
        for (what, spec) in tensors {
            let n = spec.bytes() / spec.dtype.size() as u64;
            if n > max {
                return Err(over_cap(format!(
                    "{what} has {n} elements, over this service's cap of {max} \
                     (serve --max-elements)"
                )));
            }
        }
        Ok(())
    }

    /// Refuses a planned job whose inputs (`operands`) or outputs pass the
    /// element cap.
    pub(crate) fn check_job<'h>(
        &self,
        operands: impl IntoIterator<Item = &'h Handle>,
        plan: &Plan,
    ) -> Result<(), ApiError> {
        let inputs = operands
            .into_iter()
            .map(|h| ("an input".to_owned(), h.spec()));
        let outputs = plan
            .outputs
            .iter()
            .map(|(n, s)| (format!("output '{n}'"), s));
        self.check_elements(inputs.chain(outputs))
    }

    /// Refuses a checked pipeline whose inputs or steps' outputs pass the
    /// element cap.
    pub(crate) fn check_pipeline(&self, pipeline: &CheckedPipeline) -> Result<(), ApiError> {
        let inputs = pipeline.given().map(|h| ("an input".to_owned(), h.spec()));
        let outputs = pipeline.plans().flat_map(|(step, plan)| {
            plan.outputs
                .iter()
                .map(move |(n, s)| (format!("step '{step}''s output '{n}'"), s))
        });
        self.check_elements(inputs.chain(outputs))
    }
}

fn over_cap(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "over_cap", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_checked_against_the_catalog_and_applied() {
        let caps = Caps::new(&["mandelbrot.max_iter=1000".into()], Some(100)).unwrap();
        let params = |v: &str| vec![("max_iter".to_owned(), v.to_owned())];
        caps.check_params(Kernel::Mandelbrot, &params("1000"))
            .unwrap();
        let e = caps
            .check_params(Kernel::Mandelbrot, &params("1001"))
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNPROCESSABLE_ENTITY, "over_cap")
        );
        assert!(e.message.contains("cap of 1000"), "{}", e.message);
        // Another kernel is not capped; the default counts.
        caps.check_params(Kernel::Axpy, &[]).unwrap();
        let low = Caps::new(&["mandelbrot.max_iter=10".into()], None).unwrap();
        let e = low.check_params(Kernel::Mandelbrot, &[]).unwrap_err();
        assert!(e.message.contains("(its default)"), "{}", e.message);

        let spec = |n| Spec {
            dtype: crate::tensor::DType::F32,
            shape: vec![n],
        };
        let (ok, big) = (spec(100), spec(101));
        caps.check_elements([("input 'x'".to_owned(), &ok)])
            .unwrap();
        let e = caps
            .check_elements([("input 'x'".to_owned(), &big)])
            .unwrap_err();
        assert!(
            e.message.contains("input 'x' has 101 elements"),
            "{}",
            e.message
        );

        for bad in [
            "mandelbrot.max_iter",
            "nope.x=1",
            "mandelbrot.nope=1",
            "mandelbrot.max_iter=x",
        ] {
            assert!(Caps::new(&[bad.into()], None).is_err(), "{bad}");
        }
    }
}

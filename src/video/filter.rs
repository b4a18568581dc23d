//! Video filters as the command line gives them (`blur:sigma=2`,
//! `conv2d:kernel=sharpen`, `map:expr=255-x,planes=luma`): a catalog
//! kernel, its parameters, and the planes it applies to. Each applies to
//! each chosen plane of a frame on its own, as a u8 `[h, w]` image, and
//! gives u8 back: a chain of filters is its filters one after the other.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::kernel::{Kernel, Plan, image};
use crate::pipeline::Step;
use crate::tensor::{DType, Spec, Tensor, TensorData};

/// Which planes a filter applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planes {
    /// Y, U and V (the default).
    All,
    /// Y only.
    Luma,
    /// U and V only.
    Chroma,
}

impl Planes {
    /// Whether plane `index` (0 is Y) is one of these.
    pub fn contains(self, index: usize) -> bool {
        match self {
            Planes::All => true,
            Planes::Luma => index == 0,
            Planes::Chroma => index > 0,
        }
    }
}

/// Kernels by name for `conv2d:kernel=NAME`: rows of weights.
const NAMED: &[(&str, &[&[f32]])] = &[
    ("box3", &[&[1. / 9.; 3], &[1. / 9.; 3], &[1. / 9.; 3]]),
    (
        "sharpen",
        &[&[0., -1., 0.], &[-1., 5., -1.], &[0., -1., 0.]],
    ),
    (
        "edge",
        &[&[-1., -1., -1.], &[-1., 8., -1.], &[-1., -1., -1.]],
    ),
    ("emboss", &[&[-2., -1., 0.], &[-1., 1., 1.], &[0., 1., 2.]]),
];

/// One filter of a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// The kernel: `blur`, `conv2d` or `map`.
    pub kernel: Kernel,
    /// Its parameters, as text.
    pub params: BTreeMap<String, String>,
    /// `conv2d`'s weights.
    pub weights: Option<Tensor>,
    /// The planes it applies to.
    pub planes: Planes,
    /// As given, for messages.
    pub text: String,
}

impl Filter {
    /// Parses `NAME[:k=v,k=v,...]`. `planes=all|luma|chroma` chooses the
    /// planes; `conv2d` takes `kernel=NAME` (box3, sharpen, edge, emboss)
    /// or `kernel=ROW/ROW/...` with each row's weights separated by spaces
    /// (`kernel=0 -1 0/-1 5 -1/0 -1 0`); the rest are the kernel's own
    /// parameters, checked as a job's are.
    pub fn parse(text: &str) -> Result<Filter> {
        let bad = |why: String| Error::bad(format!("--filter '{text}': {why}"));
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let kernel = match name {
            "blur" => Kernel::Blur,
            "conv2d" => Kernel::Conv2d,
            "map" => Kernel::Map,
            other => {
                return Err(bad(format!(
                    "unknown filter '{other}' (filters: blur, conv2d, map)"
                )));
            }
        };
        let mut filter = Filter {
            kernel,
            params: BTreeMap::new(),
            weights: None,
            planes: Planes::All,
            text: text.to_owned(),
        };
        for pair in top_level_items(rest).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(bad(format!("'{pair}' is not KEY=VALUE")));
            };
            match (k, kernel) {
                ("planes", _) => {
                    filter.planes = match v {
                        "all" => Planes::All,
                        "luma" => Planes::Luma,
                        "chroma" => Planes::Chroma,
                        _ => return Err(bad(format!("planes '{v}' is not all, luma or chroma"))),
                    }
                }
                ("kernel", Kernel::Conv2d) => filter.weights = Some(weights(v).map_err(bad)?),
                _ => {
                    if filter.params.insert(k.to_owned(), v.to_owned()).is_some() {
                        return Err(bad(format!("'{k}' is given twice")));
                    }
                }
            }
        }
        if kernel == Kernel::Conv2d && filter.weights.is_none() {
            return Err(bad("conv2d needs kernel=NAME or kernel=ROW/ROW/...".into()));
        }
        // The kernel's own checks, on a small plane, so that a bad
        // parameter is refused before the stream is read.
        filter
            .plan(4, 4)
            .map_err(|e| e.context(&format!("--filter '{text}'")))?;
        Ok(filter)
    }

    /// The pipeline step that applies this filter (its parameters and
    /// weights; the plane goes to its input [`Filter::input`]).
    pub fn step(&self, name: &str) -> Step {
        let mut step = Step::new(name, self.kernel);
        for (k, v) in &self.params {
            step = step.param(k, v);
        }
        if let Some(w) = &self.weights {
            step = step.input("kernel", w.clone());
        }
        step
    }

    /// The kernel's checks and plan for an `h`×`w` plane.
    pub fn plan(&self, h: usize, w: usize) -> Result<Plan> {
        let dtype = if self.takes_u8() {
            DType::U8
        } else {
            DType::F32
        };
        let mut inputs = BTreeMap::from([(
            self.input().to_owned(),
            Spec {
                dtype,
                shape: vec![h, w],
            },
        )]);
        if let Some(k) = &self.weights {
            inputs.insert("kernel".into(), k.spec());
        }
        self.kernel.plan(inputs, &self.params)
    }

    /// The kernel's input that takes the plane.
    pub fn input(&self) -> &'static str {
        match self.kernel {
            Kernel::Map => "x",
            _ => "image",
        }
    }

    /// A u8 plane as this filter's kernel takes it: `map` sees f32.
    pub fn plane_in(&self, plane: Tensor) -> Tensor {
        if self.takes_u8() {
            return plane;
        }
        let values = image::data_values(plane.data()).into_owned();
        Tensor::new(plane.shape().to_vec(), TensorData::F32(values))
    }

    /// The kernel's output as a u8 plane (`map`'s rounded and clamped).
    pub fn plane_out(&self, out: Tensor) -> Tensor {
        let shape = out.shape().to_vec();
        match out.into_data() {
            TensorData::F32(v) => image::finish(v, DType::U8, &shape),
            other => Tensor::new(shape, other),
        }
    }

    /// Whether the filter's kernel takes u8 planes as they are (and keeps
    /// them on the device between filters of a pipeline).
    pub fn takes_u8(&self) -> bool {
        self.kernel != Kernel::Map
    }
}

/// The comma-separated items of `text`, leaving commas inside
/// parentheses alone: `expr=max(x, 100),planes=luma` is two items, the
/// first a map expression with a function of two arguments.
fn top_level_items(text: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0i32;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items.into_iter()
}

/// `conv2d`'s weights: a named kernel or rows of numbers.
fn weights(text: &str) -> std::result::Result<Tensor, String> {
    let rows: Vec<Vec<f32>> = match NAMED.iter().find(|(n, _)| *n == text) {
        Some((_, rows)) => rows.iter().map(|r| r.to_vec()).collect(),
        None => text
            .split('/')
            .map(|row| {
                row.split_whitespace()
                    .map(|v| v.parse::<f32>().ok().filter(|v| v.is_finite()))
                    .collect::<Option<Vec<f32>>>()
            })
            .collect::<Option<Vec<_>>>()
            .filter(|rows| {
                rows.iter()
                    .all(|r| !r.is_empty() && r.len() == rows[0].len())
            })
            .ok_or_else(|| {
                let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
                format!(
                    "kernel '{text}' is neither a name ({}) nor rows of numbers of one length \
                     separated by '/'",
                    names.join(", ")
                )
            })?,
    };
    let (h, w) = (rows.len(), rows[0].len());
    Ok(Tensor::new(vec![h, w], TensorData::F32(rows.concat())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_their_planes_kernels_and_parameters() {
        let f = Filter::parse("blur:sigma=2,planes=luma").unwrap();
        assert_eq!(
            (f.kernel, f.planes, f.params["sigma"].as_str()),
            (Kernel::Blur, Planes::Luma, "2")
        );
        let f = Filter::parse("conv2d:kernel=0 -1 0/-1 5 -1/0 -1 0").unwrap();
        let named = Filter::parse("conv2d:kernel=sharpen").unwrap();
        assert_eq!(f.weights, named.weights);
        assert_eq!(f.weights.unwrap().shape(), &[3, 3]);
        assert_eq!(Filter::parse("map:expr=255-x").unwrap().planes, Planes::All);
        // Commas inside a map expression's calls belong to the expression.
        let f = Filter::parse("map:expr=clamp(max(x, 16) * 2, 0, 255),planes=luma").unwrap();
        assert_eq!(f.params["expr"], "clamp(max(x, 16) * 2, 0, 255)");
        assert_eq!(f.planes, Planes::Luma);
    }

    #[test]
    fn bad_filters_are_refused_naming_the_filter_and_the_problem() {
        let err = |t: &str| Filter::parse(t).unwrap_err().to_string();
        assert!(err("sharpen").contains("unknown filter 'sharpen'"));
        assert!(err("blur").contains("blur needs parameter 'sigma'"));
        assert!(err("blur:sigma=-1").contains("--filter 'blur:sigma=-1'"));
        assert!(err("blur:sigma").contains("'sigma' is not KEY=VALUE"));
        assert!(err("blur:sigma=1,sigma=2").contains("'sigma' is given twice"));
        assert!(err("conv2d").contains("needs kernel="));
        assert!(err("conv2d:kernel=1 2/3").contains("rows of numbers of one length"));
        assert!(err("conv2d:kernel=1 1").contains("--filter 'conv2d:kernel=1 1'"));
        assert!(err("map:expr=x+q").contains("unknown name 'q'"));
        assert!(err("blur:sigma=1,planes=alpha").contains("not all, luma or chroma"));
        assert!(err("map:expr=max(x, 1").contains("--filter 'map:expr=max(x, 1'"));
    }
}

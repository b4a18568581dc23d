//! Host side of `map`: WGSL written for each expression from the template
//! `shaders/map.wgsl`, then run like `axpy`, chunk by chunk.
//!
//! The written source names no numbers (they go in the uniform, slot by
//! slot), so it is the expression's normal form up to its numbers: the
//! pipeline cache keys on it ([`super::GpuBackend::generated_pipeline`], which
//! has naga validate each source before the device sees it). Inputs of
//! one element are read home and written in as numbers, as the CPU does.

use std::fmt::Write;

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::error::Error;
use crate::kernel::map::expr::Expr;
use crate::kernel::map::scalar::Func;
use crate::kernel::map::{Map, SHADER, WORKGROUP};
use crate::kernel::Outputs;
use crate::tensor::{DType, Spec};

/// Workgroups per dispatch at most (as `axpy`).
const MAX_GROUPS: u32 = 4096;

/// Slots for numbers in the uniform (`params.c` in the shader): the 64
/// an expression may hold, and the values of its one-element inputs.
const SLOTS: usize = 80;

/// Matches `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    nan: u32,
    inf: u32,
    _pad: u32,
    c: [f32; SLOTS],
}

pub(super) fn run(exec: &mut Exec, t: &Map) -> Result<Outputs> {
    let gpu = exec.gpu();
    let n = t.len();
    if n == 0 {
        return Ok(t.outputs(Vec::new()));
    }
    // Broadcast inputs become numbers: their values are needed here.
    for (_, h) in &t.inputs {
        if t.broadcasts(h) {
            exec.host(h)?;
        }
    }
    let (expr, arrays) = t.specialised();
    let written = write(&expr, &arrays)?;
    let pipeline = gpu.generated_pipeline(&SHADER, &written.source)?;
    let chunk = gpu.chunk_elements();
    let cap = grid::vec4_bytes(chunk.min(n));
    let mut sources = Vec::new();
    for (_, h) in t.inputs.iter().filter(|(_, h)| !t.broadcasts(h)) {
        sources.push(exec.source(h, cap)?);
    }
    let sink = exec.sink("out", grid::vec4_bytes(n), cap)?;
    let mut out = if sink.is_whole() { Vec::new() } else { vec![0.0f32; n] };
    let mut params = Params {
        n: 0,
        nan: f32::NAN.to_bits(),
        inf: f32::INFINITY.to_bits(),
        _pad: 0,
        c: [0.0; SLOTS],
    };
    params.c[..written.numbers.len()].copy_from_slice(&written.numbers); // at most SLOTS
    for (start, len) in grid::chunks(n, chunk) {
        let (from, bytes) = (start as u64 * 4, grid::vec4_bytes(len));
        let parts: Vec<_> = sources.iter().map(|s| (s, from, len as u64 * 4)).collect();
        exec.stage(&parts)?;
        params.n = len as u32;
        let groups = grid::stream_groups_for(len, WORKGROUP).min(gpu.stream_groups(MAX_GROUPS));
        let mut bindings: Vec<_> = sources
            .iter()
            .map(|s| {
                let (b, o) = s.at(from);
                (b, o, bytes)
            })
            .collect();
        let (ob, oo) = sink.at(from);
        bindings.push((ob, oo, bytes));
        exec.compute(&[Pass::at(&pipeline, bindings, &params, (groups, 1, 1))])?;
        if !sink.is_whole() {
            exec.drain(&sink, &mut out[start..start + len])?;
        }
    }
    let spec = Spec {
        dtype: DType::F32,
        shape: t.shape.clone(),
    };
    if exec.finish_sink("out", sink, spec) {
        return Ok(Outputs::new());
    }
    Ok(t.outputs(out))
}

/// A shader written for one expression.
pub(super) struct Written {
    /// The WGSL.
    pub source: String,
    /// The numbers for `params.c`, by slot.
    pub numbers: Vec<f32>,
}

/// Writes the shader for `expr`, whose variable `i` is array input
/// `arrays[i]` (bound in that order).
pub(super) fn write(expr: &Expr, arrays: &[Option<usize>]) -> Result<Written> {
    let count = arrays.iter().flatten().count();
    let mut bindings = String::new();
    for k in 0..count {
        let _ = writeln!(
            bindings,
            "@group(0) @binding({k}) var<storage, read> in{k}: array<vec4<f32>>;"
        );
    }
    let _ = writeln!(
        bindings,
        "@group(0) @binding({count}) var<storage, read_write> out: array<vec4<f32>>;"
    );
    let _ = writeln!(
        bindings,
        "@group(0) @binding({}) var<uniform> params: Params;",
        count + 1
    );
    let mut w = Writer {
        body: String::new(),
        numbers: Vec::new(),
        lets: 0,
        arrays,
    };
    let result = w.value(expr);
    // Folding in one-element inputs can make new numbers (sin(x), cos(x),
    // … of a broadcast x): past the slots the job is refused.
    if w.numbers.len() > SLOTS {
        return Err(Error::bad(format!(
            "map: the expression holds more than {SLOTS} different numbers once its \
             one-element inputs are put in (the GPU's limit); give those inputs at full length"
        )));
    }
    let _ = writeln!(w.body, "    return {result};");
    let source = replace(SHADER.source, "// @bindings\n", &bindings);
    let source = replace(&source, "// @value\n", &w.body);
    Ok(Written {
        source,
        numbers: w.numbers,
    })
}

/// `template` with the lines from `marker` to the next `// @end` replaced
/// by `with`.
fn replace(template: &str, marker: &str, with: &str) -> String {
    let start = template.find(marker).expect("the template has its markers");
    let end = start + template[start..].find("// @end\n").expect("each marker has an end");
    format!("{}{with}{}", &template[..start], &template[end + "// @end\n".len()..])
}

struct Writer<'a> {
    body: String,
    numbers: Vec<f32>,
    lets: usize,
    arrays: &'a [Option<usize>],
}

impl Writer<'_> {
    /// Writes the lets computing `e`; gives the WGSL naming its value.
    fn value(&mut self, e: &Expr) -> String {
        match e {
            Expr::Var(i) => format!("in{}[i]", self.arrays[*i].expect("scalars are substituted")),
            Expr::Num(v) => {
                // One slot per value (by its bits, so NaN finds itself).
                let slot = match self.numbers.iter().position(|n| n.to_bits() == v.to_bits()) {
                    Some(k) => k,
                    None => {
                        self.numbers.push(*v);
                        self.numbers.len() - 1
                    }
                };
                format!("m_num({slot}u)")
            }
            Expr::Call(f, args) => {
                let a: Vec<String> = args.iter().map(|a| self.value(a)).collect();
                let code = match (f, a.as_slice()) {
                    (Func::Neg, [a]) => format!("-{a}"),
                    (Func::Add, [a, b]) => format!("{a} + {b}"),
                    (Func::Sub, [a, b]) => format!("{a} - {b}"),
                    (Func::Mul, [a, b]) => format!("{a} * {b}"),
                    (Func::Div, [a, b]) => format!("{a} / {b}"),
                    (f, args) => format!("{}({})", builtin(*f), args.join(", ")),
                };
                let name = format!("t{}", self.lets);
                self.lets += 1;
                let _ = writeln!(self.body, "    let {name} = {code};");
                name
            }
        }
    }
}

/// The template's function for `f` (operators aside).
fn builtin(f: Func) -> &'static str {
    match f {
        Func::Atan => "m_atan",
        Func::Sinh => "sinh",
        Func::Cosh => "cosh",
        Func::Exp => "exp",
        Func::Exp2 => "exp2",
        Func::Abs => "abs",
        Func::Floor => "floor",
        Func::Ceil => "ceil",
        Func::Round => "round",
        Func::Rem => "m_rem",
        Func::Lt => "m_lt",
        Func::Le => "m_le",
        Func::Gt => "m_gt",
        Func::Ge => "m_ge",
        Func::Eq => "m_eq",
        Func::Ne => "m_ne",
        Func::Where => "m_where",
        Func::Sin => "m_sin",
        Func::Cos => "m_cos",
        Func::Tan => "m_tan",
        Func::Asin => "m_asin",
        Func::Acos => "m_acos",
        Func::Atan2 => "m_atan2",
        Func::Tanh => "m_tanh",
        Func::Log => "m_log",
        Func::Log2 => "m_log2",
        Func::Sqrt => "m_sqrt",
        Func::Min => "m_min",
        Func::Max => "m_max",
        Func::Pow => "m_pow",
        Func::Clamp => "m_clamp",
        Func::Neg | Func::Add | Func::Sub | Func::Mul | Func::Div => {
            unreachable!("operators are written as operators")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::naga;

    fn validate(source: &str) {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{}\n{source}", e.emit_to_string(source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{e:?}\n{source}"));
    }

    /// Every operation, every arity and every kind of operand writes WGSL
    /// that naga accepts; numbers go to slots, so expressions that differ
    /// only in their numbers write the same source.
    #[test]
    fn every_operation_writes_valid_wgsl() {
        for &f in Func::ALL {
            let args = ["x", "y", "z"][..f.arity()].join(", ");
            let text = match f {
                Func::Neg => "-x".to_owned(),
                Func::Add => "x + y".into(),
                Func::Sub => "x - y".into(),
                Func::Mul => "x * y".into(),
                Func::Div => "x / y".into(),
                Func::Rem => "x % y".into(),
                Func::Lt => "x < y".into(),
                Func::Le => "x <= y".into(),
                Func::Gt => "x > y".into(),
                Func::Ge => "x >= y".into(),
                Func::Eq => "x == y".into(),
                Func::Ne => "x != y".into(),
                f => format!("{}({args})", f.name()),
            };
            let e = Expr::parse(&text).unwrap();
            let w = write(&e, &[Some(0), Some(1), Some(2)]).unwrap();
            validate(&w.source);
        }
        let a = write(&Expr::parse("x * 2 + sin(y) - 1").unwrap(), &[Some(0), Some(1)]).unwrap();
        let b = write(&Expr::parse("x*3.5 + sin(y) - 7").unwrap(), &[Some(0), Some(1)]).unwrap();
        assert_eq!(a.source, b.source);
        assert_eq!((a.numbers, b.numbers), (vec![2.0, 1.0], vec![3.5, 7.0]));
        validate(&write(&Expr::parse("7").unwrap(), &[]).unwrap().source);
        validate(&write(&Expr::parse("w").unwrap(), &[None, None, None, Some(0)]).unwrap().source);
        // Repeated numbers share a slot; too many different ones are refused.
        let same = write(&Expr::parse("x * 2 + y * 2 + 2").unwrap(), &[Some(0), Some(1)]).unwrap();
        assert_eq!(same.numbers, vec![2.0]);
        let many = (0..90).map(|k| format!("x * {k}")).collect::<Vec<_>>().join(" + ");
        let folded = Expr::parse(&many.replace("x *", "y *")).map(|_| ());
        assert!(folded.is_err(), "the parser caps numbers at 64");
        // f(g(y)) of a one-element y: 90 different numbers, none written.
        let funcs = ["sin", "cos", "tan", "exp", "sqrt", "atan", "sinh", "cosh", "tanh", "exp2"];
        let text: Vec<String> = (0..90).map(|k| format!("{}({}(y)) * x", funcs[k % 10], funcs[k / 10])).collect();
        let e = Expr::parse(&text.join(" + ")).unwrap().substitute(&[None, Some(0.37)]);
        assert!(write(&e, &[Some(0), None]).is_err());
    }
}

//! `map` on the CPU: the expression compiled to a list of operations on
//! blocks of [`BLOCK`] elements (numexpr's design), each rayon task
//! running the whole list over its block with its temporaries in cache.
//!
//! Each operation is one tight loop over a block (operand forms — block or
//! number — chosen outside it), compiled inside a `pulp` dispatch so that
//! it vectorizes with the machine's widest instructions. `sin` and `cos`
//! have their own branch-free form ([`sin_cos`]) that vectorizes; other
//! transcendental functions call the C library per element.

use super::expr::Expr;
use super::scalar::{self, Func};

/// Elements per block: 16 KiB per temporary, so that a dozen stay in L2.
pub const BLOCK: usize = 4096;

/// Where an operation reads an argument.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    /// The block of array input `k`.
    Array(usize),
    /// A number, the same for every element.
    Num(f32),
    /// Temporary `t`.
    Temp(usize),
}

#[derive(Clone, Debug)]
struct Op {
    f: Func,
    args: [Src; 3],
    /// The temporary it writes (the last operation writes the output).
    dst: usize,
}

/// An expression as operations over blocks.
#[derive(Clone, Debug)]
pub struct Program {
    ops: Vec<Op>,
    temps: usize,
    /// What the output is when there are no operations (an input, a
    /// number).
    result: Src,
}

/// An argument's values over one block.
#[derive(Clone, Copy)]
enum Operand<'a> {
    Block(&'a [f32]),
    Num(f32),
}

impl Operand<'_> {
    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        match self {
            Operand::Block(s) => s[i],
            Operand::Num(v) => v,
        }
    }
}

impl Program {
    /// Compiles `expr`, whose variable `i` is array input `arrays[i]`
    /// (`None`: not an array; such variables must have been replaced by
    /// numbers).
    pub fn new(expr: &Expr, arrays: &[Option<usize>]) -> Program {
        let mut p = Program {
            ops: Vec::new(),
            temps: 0,
            result: Src::Num(0.0),
        };
        let mut free = Vec::new();
        p.result = p.compile(expr, arrays, &mut free);
        p
    }

    /// Emits the operations computing `e`; says where its value is.
    fn compile(&mut self, e: &Expr, arrays: &[Option<usize>], free: &mut Vec<usize>) -> Src {
        match e {
            Expr::Var(i) => Src::Array(arrays[*i].expect("scalar inputs are substituted")),
            Expr::Num(v) => Src::Num(*v),
            Expr::Call(f, args) => {
                let mut srcs = [Src::Num(0.0); 3];
                for (s, a) in srcs.iter_mut().zip(args) {
                    *s = self.compile(a, arrays, free);
                }
                // A temporary not read here (the operation cannot write
                // over what it reads: its loops read and write slices).
                let dst = free.pop().unwrap_or_else(|| {
                    self.temps += 1;
                    self.temps - 1
                });
                // Those read here are free once this has read them.
                for s in &srcs[..args.len()] {
                    if let Src::Temp(t) = s {
                        free.push(*t);
                    }
                }
                self.ops.push(Op {
                    f: *f,
                    args: srcs,
                    dst,
                });
                Src::Temp(dst)
            }
        }
    }

    /// Fresh temporaries for [`Program::run`].
    pub fn scratch(&self) -> Vec<Vec<f32>> {
        vec![vec![0.0; BLOCK]; self.temps]
    }

    /// Computes one block: `arrays` are the inputs' blocks (each as long
    /// as `out`, at most [`BLOCK`]), `temps` from [`Program::scratch`].
    #[inline(always)]
    pub fn run(&self, arrays: &[&[f32]], temps: &mut [Vec<f32>], out: &mut [f32]) {
        let n = out.len();
        let Some((last, ops)) = self.ops.split_last() else {
            match self.result {
                Src::Array(k) => out.copy_from_slice(arrays[k]),
                Src::Num(v) => out.fill(v),
                Src::Temp(_) => unreachable!("no operations, no temporaries"),
            }
            return;
        };
        for op in ops {
            let mut dst = std::mem::take(&mut temps[op.dst]);
            apply(op, arrays, temps, n, &mut dst[..n]);
            temps[op.dst] = dst;
        }
        apply(last, arrays, temps, n, out);
    }
}

/// Runs one operation into `out`.
#[inline(always)]
fn apply(op: &Op, arrays: &[&[f32]], temps: &[Vec<f32>], n: usize, out: &mut [f32]) {
    let get = |s: Src| match s {
        Src::Array(k) => Operand::Block(&arrays[k][..n]),
        Src::Num(v) => Operand::Num(v),
        Src::Temp(t) => Operand::Block(&temps[t][..n]),
    };
    let [a, b, c] = op.args.map(get);
    match op.f {
        Func::Neg => unary(out, a, |x| -x),
        Func::Add => binary(out, a, b, |x, y| x + y),
        Func::Sub => binary(out, a, b, |x, y| x - y),
        Func::Mul => binary(out, a, b, |x, y| x * y),
        Func::Div => binary(out, a, b, |x, y| x / y),
        Func::Rem => binary(out, a, b, scalar::rem),
        Func::Lt => binary(out, a, b, |x, y| scalar::truth(x < y)),
        Func::Le => binary(out, a, b, |x, y| scalar::truth(x <= y)),
        Func::Gt => binary(out, a, b, |x, y| scalar::truth(x > y)),
        Func::Ge => binary(out, a, b, |x, y| scalar::truth(x >= y)),
        Func::Eq => binary(out, a, b, |x, y| scalar::truth(x == y)),
        Func::Ne => binary(out, a, b, |x, y| scalar::truth(x != y)),
        Func::Where => ternary(out, a, b, c, scalar::select),
        Func::Sin => sin_cos(out, a, 0),
        Func::Cos => sin_cos(out, a, 1),
        Func::Min => binary(out, a, b, scalar::min),
        Func::Max => binary(out, a, b, scalar::max),
        Func::Clamp => ternary(out, a, b, c, |x, lo, hi| {
            scalar::min(scalar::max(x, lo), hi)
        }),
        Func::Abs => unary(out, a, f32::abs),
        Func::Sqrt => unary(out, a, f32::sqrt),
        Func::Floor => unary(out, a, f32::floor),
        Func::Ceil => unary(out, a, f32::ceil),
        Func::Round => unary(out, a, f32::round_ties_even),
        // The rest call the C library element by element.
        f if f.arity() == 1 => unary(out, a, |x| scalar::apply(f, &[x])),
        f => binary(out, a, b, |x, y| scalar::apply(f, &[x, y])),
    }
}

#[inline(always)]
fn unary(out: &mut [f32], a: Operand, f: impl Fn(f32) -> f32) {
    match a {
        Operand::Block(a) => {
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x);
            }
        }
        Operand::Num(x) => out.fill(f(x)),
    }
}

#[inline(always)]
fn binary(out: &mut [f32], a: Operand, b: Operand, f: impl Fn(f32, f32) -> f32) {
    match (a, b) {
        (Operand::Block(a), Operand::Block(b)) => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
        (Operand::Block(a), Operand::Num(y)) => {
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x, y);
            }
        }
        (Operand::Num(x), Operand::Block(b)) => {
            for (o, &y) in out.iter_mut().zip(b) {
                *o = f(x, y);
            }
        }
        (Operand::Num(x), Operand::Num(y)) => out.fill(f(x, y)),
    }
}

/// Three operands (`where`, `clamp`): rarer, so one loop for every form.
#[inline(always)]
fn ternary(out: &mut [f32], a: Operand, b: Operand, c: Operand, f: impl Fn(f32, f32, f32) -> f32) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(a.at(i), b.at(i), c.at(i));
    }
}

/// Past this magnitude the reduction below loses accuracy: such elements
/// (and infinities) are computed again by the C library.
const REDUCED_UP_TO: f32 = 8192.0;

/// Whether `x` is past [`REDUCED_UP_TO`] (or NaN).
#[inline(always)]
fn far_out(x: f32) -> bool {
    x.abs().partial_cmp(&REDUCED_UP_TO) != Some(std::cmp::Ordering::Less)
}

/// `sin` (`quarter` 0) or `cos` (`quarter` 1) of a block, without branches
/// (Cephes' `sinf`): x = j·π/2 + r with |r| ≤ π/4, r found in three parts
/// (exact for |j| < 2¹³), then a polynomial in r for sin or cos by the
/// quadrant. Within 2 ulp of the C library over [−8192, 8192].
#[inline(always)]
fn sin_cos(out: &mut [f32], a: Operand, quarter: u32) {
    let Operand::Block(a) = a else {
        let Operand::Num(x) = a else { unreachable!() };
        let v = if quarter == 0 { x.sin() } else { x.cos() };
        return out.fill(v);
    };
    // π/2 in three parts; the first two have few bits, so j·P1 and j·P2
    // are exact.
    const P1: f32 = 1.570_312_5;
    const P2: f32 = 4.837_513e-4;
    const P3: f32 = 7.549_79e-8;
    // Adding 1.5·2²³ rounds to an integer, which then sits in the low bits.
    const ROUND: f32 = 12_582_912.0;
    for (o, &x) in out.iter_mut().zip(a) {
        let shifted = x * std::f32::consts::FRAC_2_PI + ROUND;
        let q = shifted.to_bits().wrapping_add(quarter);
        let j = shifted - ROUND;
        let r = ((x - j * P1) - j * P2) - j * P3;
        let z = r * r;
        let s = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * r + r;
        let c = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z
            + 1.0;
        // Selected by masks, without a branch the vectorizer might keep.
        let odd = (q & 1).wrapping_neg();
        let v = (s.to_bits() & !odd) | (c.to_bits() & odd);
        *o = f32::from_bits(v ^ ((q & 2) << 30));
    }
    let far = a.iter().fold(false, |far, &x| far | far_out(x));
    if far {
        for (o, &x) in out.iter_mut().zip(a) {
            if far_out(x) {
                *o = if quarter == 0 { x.sin() } else { x.cos() };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place (0 for equal, NaN with NaN).
    fn ulps(a: f32, b: f32) -> u32 {
        if a.is_nan() && b.is_nan() {
            return 0;
        }
        let key = |v: f32| {
            let bits = v.to_bits() as i32;
            if bits < 0 { i32::MIN - bits } else { bits }
        };
        (key(a) as i64 - key(b) as i64).unsigned_abs() as u32
    }

    #[test]
    fn sin_and_cos_stay_near_the_c_library() {
        let mut xs: Vec<f32> = (-200_000..200_000).map(|i| i as f32 * 0.041).collect();
        xs.extend([0.0, -0.0, 1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 8191.9, 8192.1, 1e9, -3e38]);
        for quarter in [0, 1] {
            let mut out = vec![f32::NAN; xs.len()];
            sin_cos(&mut out, Operand::Block(&xs), quarter);
            for (&x, &got) in xs.iter().zip(&out) {
                let want = if quarter == 0 { x.sin() } else { x.cos() };
                // Near a zero of the function the relative error is
                // allowed to grow: compare also absolutely.
                let close = ulps(got, want) <= 2 || (got - want).abs() <= 2e-7;
                assert!(close, "quarter {quarter}, x {x}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn temporaries_are_reused_and_every_form_of_operand_works() {
        let e = Expr::parse("(x + y) * (x - y) + sin(x) * 2 - where(x < 0, y, 3)").unwrap();
        let p = Program::new(&e, &[Some(0), Some(1)]);
        assert!(p.temps <= 3, "{p:?}");
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.37).collect();
        let y: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![f32::NAN; 1000];
        p.run(&[&x, &y], &mut p.scratch(), &mut out);
        for i in 0..1000 {
            let (x, y) = (x[i], y[i]);
            let want = (x + y) * (x - y) + x.sin() * 2.0 - if x < 0.0 { y } else { 3.0 };
            assert!((out[i] - want).abs() <= 1e-5 * want.abs().max(1.0), "{i}: {} vs {want}", out[i]);
        }
        // No operations: an input, or a number.
        let mut out = vec![f32::NAN; 3];
        Program::new(&Expr::parse("y").unwrap(), &[None, Some(0)]).run(&[&[1.0, 2.0, 3.0]], &mut [], &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0]);
        Program::new(&Expr::parse("2 * 3").unwrap(), &[]).run(&[], &mut [], &mut out);
        assert_eq!(out, [6.0; 3]);
    }
}

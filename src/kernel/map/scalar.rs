//! `map`'s operations on one float32 value, with NumPy's float32 ufuncs'
//! semantics: what constant folding, the sequential reference and the
//! evaluator's scalar paths compute.
//!
//! Where NumPy differs from Rust's `f32` methods, the difference is here:
//! `%` takes the divisor's sign (`np.remainder`), `min`/`max`/`clamp`
//! propagate NaN (`np.minimum`, `np.maximum`, `np.clip`), `round` rounds
//! half to even (`np.round`), and a comparison gives 1.0 or 0.0.


macro_rules! funcs {
    ($($variant:ident $name:literal $arity:literal,)*) => {
        /// Every operation: operators and functions alike.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Func {
            $(#[doc = concat!("`", $name, "`")] $variant,)*
        }

        impl Func {
            /// All of them.
            pub const ALL: &[Func] = &[$(Func::$variant,)*];

            /// Its name in the normal form (and, for functions, in
            /// expressions).
            pub fn name(self) -> &'static str {
                match self { $(Func::$variant => $name,)* }
            }

            /// How many arguments it takes.
            pub fn arity(self) -> usize {
                match self { $(Func::$variant => $arity,)* }
            }
        }
    };
}

funcs! {
    Neg "neg" 1,
    Add "add" 2,
    Sub "sub" 2,
    Mul "mul" 2,
    Div "div" 2,
    Rem "rem" 2,
    Lt "lt" 2,
    Le "le" 2,
    Gt "gt" 2,
    Ge "ge" 2,
    Eq "eq" 2,
    Ne "ne" 2,
    Where "where" 3,
    Sin "sin" 1,
    Cos "cos" 1,
    Tan "tan" 1,
    Asin "asin" 1,
    Acos "acos" 1,
    Atan "atan" 1,
    Atan2 "atan2" 2,
    Sinh "sinh" 1,
    Cosh "cosh" 1,
    Tanh "tanh" 1,
    Exp "exp" 1,
    Exp2 "exp2" 1,
    Log "log" 1,
    Log2 "log2" 1,
    Sqrt "sqrt" 1,
    Abs "abs" 1,
    Floor "floor" 1,
    Ceil "ceil" 1,
    Round "round" 1,
    Min "min" 2,
    Max "max" 2,
    Pow "pow" 2,
    Clamp "clamp" 3,
}

/// `f` of `args` (as many as [`Func::arity`]).
pub fn apply(f: Func, args: &[f32]) -> f32 {
    let a = args[0];
    let b = || args[1];
    let c = || args[2];
    match f {
        Func::Neg => -a,
        Func::Add => a + b(),
        Func::Sub => a - b(),
        Func::Mul => a * b(),
        Func::Div => a / b(),
        Func::Rem => rem(a, b()),
        Func::Lt => truth(a < b()),
        Func::Le => truth(a <= b()),
        Func::Gt => truth(a > b()),
        Func::Ge => truth(a >= b()),
        Func::Eq => truth(a == b()),
        Func::Ne => truth(a != b()),
        Func::Where => select(a, b(), c()),
        Func::Sin => a.sin(),
        Func::Cos => a.cos(),
        Func::Tan => a.tan(),
        Func::Asin => a.asin(),
        Func::Acos => a.acos(),
        Func::Atan => a.atan(),
        Func::Atan2 => a.atan2(b()),
        Func::Sinh => a.sinh(),
        Func::Cosh => a.cosh(),
        Func::Tanh => a.tanh(),
        Func::Exp => a.exp(),
        Func::Exp2 => a.exp2(),
        Func::Log => a.ln(),
        Func::Log2 => a.log2(),
        Func::Sqrt => a.sqrt(),
        Func::Abs => a.abs(),
        Func::Floor => a.floor(),
        Func::Ceil => a.ceil(),
        Func::Round => a.round_ties_even(),
        Func::Min => min(a, b()),
        Func::Max => max(a, b()),
        Func::Pow => a.powf(b()),
        Func::Clamp => min(max(a, b()), c()),
    }
}

/// 1.0 for true, 0.0 for false.
#[inline(always)]
pub fn truth(t: bool) -> f32 {
    if t { 1.0 } else { 0.0 }
}

/// `np.where(c, a, b)`: any `c` other than ±0 (NaN too) picks `a`.
#[inline(always)]
pub fn select(c: f32, a: f32, b: f32) -> f32 {
    if c != 0.0 || c.is_nan() { a } else { b }
}

/// `np.remainder`: `a − b·floor(a/b)` computed exactly, with the sign of
/// `b` (zero as `+0` or `−0` after `b`); NaN when `b` is 0 or `a` is
/// infinite, as NumPy's `npy_divmod`.
#[inline(always)]
pub fn rem(a: f32, b: f32) -> f32 {
    // Rust's `%` on floats is C's `fmod`: exact, with the sign of `a`.
    let m = a % b;
    if m == 0.0 {
        // `b` of 0 made m NaN, not 0; here b is not 0.
        0.0f32.copysign(b)
    } else if (b < 0.0) != (m < 0.0) && !m.is_nan() {
        m + b
    } else {
        m
    }
}

/// `np.minimum`: NaN if either is.
#[inline(always)]
pub fn min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        a + b
    } else if a < b {
        a
    } else {
        b
    }
}

/// `np.maximum`: NaN if either is.
#[inline(always)]
pub fn max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        a + b
    } else if a > b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_semantics_where_rust_differs() {
        // np.remainder: the divisor's sign.
        assert_eq!(rem(5.0, 3.0), 2.0);
        assert_eq!(rem(-5.0, 3.0), 1.0);
        assert_eq!(rem(5.0, -3.0), -1.0);
        assert_eq!(rem(-5.0, -3.0), -2.0);
        assert!(rem(1.0, 0.0).is_nan() && rem(f32::INFINITY, 2.0).is_nan());
        assert_eq!(rem(-1.0, f32::INFINITY), f32::INFINITY);
        assert_eq!(rem(1.0, f32::INFINITY), 1.0);
        assert!(rem(-6.0, 3.0) == 0.0 && rem(-6.0, 3.0).is_sign_positive());
        assert!(rem(6.0, -3.0) == 0.0 && rem(6.0, -3.0).is_sign_negative());
        // NaN propagates through min, max and clamp.
        assert!(min(f32::NAN, 1.0).is_nan() && min(1.0, f32::NAN).is_nan());
        assert!(max(f32::NAN, 1.0).is_nan() && max(1.0, f32::NAN).is_nan());
        assert_eq!(apply(Func::Clamp, &[5.0, -1.0, 2.0]), 2.0);
        assert!(apply(Func::Clamp, &[1.0, f32::NAN, 2.0]).is_nan());
        // Half to even, as np.round.
        assert_eq!(apply(Func::Round, &[2.5]), 2.0);
        assert_eq!(apply(Func::Round, &[-3.5]), -4.0);
        // Comparisons give 1 or 0; NaN compares unequal to everything.
        assert_eq!(apply(Func::Lt, &[1.0, 2.0]), 1.0);
        assert_eq!(apply(Func::Eq, &[f32::NAN, f32::NAN]), 0.0);
        assert_eq!(apply(Func::Ne, &[f32::NAN, f32::NAN]), 1.0);
        // where: NaN is true, -0 is false.
        assert_eq!(select(f32::NAN, 1.0, 2.0), 1.0);
        assert_eq!(select(-0.0, 1.0, 2.0), 2.0);
        // pow as C's powf (as NumPy's).
        assert_eq!(apply(Func::Pow, &[-2.0, 3.0]), -8.0);
        assert!(apply(Func::Pow, &[-2.0, 0.5]).is_nan());
        assert_eq!(apply(Func::Pow, &[f32::NAN, 0.0]), 1.0);
    }
}

// map: out[i] <- an elementwise expression of the inputs at i.
//
// This file is a template. For each expression the host writes the
// bindings (between `// @bindings` and `// @end`) and the body of `value`
// (between `// @value` and `// @end`); as it stands it computes x itself.
// Everything else — the NumPy semantics of each operation, the grid —
// is here, so every expression's shader shares it.
//
// Memory-bound like axpy: arrays are bound as vec4 (one 16-byte load or
// store per access) over a grid-stride loop. An input of one element
// (broadcast) is bound as array<f32> and read at 0. The host binds
// ceil(n / 4) vec4 of each array; lanes past n in the last vec4 are
// computed from whatever the buffer held and never read back.
//
// Numbers of the expression come in `params.c` (64 at most), so that
// expressions differing only in their numbers share one pipeline.
//
// Vulkan leaves several built-ins undefined outside their domain (log and
// sqrt of negatives, asin and acos past 1, pow of a negative base, atan2
// of two zeros) and lets `min`/`max` drop NaN: the `m_*` functions below
// give NumPy's answer in those cases. NaN is tested by its bits, which no
// compiler may assume away.

struct Params {
    n: u32, // elements (not vec4) in this chunk
    // The bits of a quiet NaN and of +inf: a constant expression may not
    // be either in WGSL.
    nan: u32,
    inf: u32,
    _pad: u32,
    c: array<vec4<f32>, 16>,
}

// @bindings
@group(0) @binding(0) var<storage, read> in0: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> params: Params;
// @end

const WG: u32 = 256u;

fn value(i: u32) -> vec4<f32> {
// @value
    return in0[i];
// @end
}

fn m_nan() -> vec4<f32> {
    return vec4<f32>(bitcast<f32>(params.nan));
}

fn m_inf() -> vec4<f32> {
    return vec4<f32>(bitcast<f32>(params.inf));
}

fn m_isnan(a: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(a) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}

fn m_num(k: u32) -> vec4<f32> {
    return vec4<f32>(params.c[k / 4u][k % 4u]);
}

fn m_truth(t: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(1.0), t);
}

// a != b is true when either is NaN (NumPy), whatever the compiler makes
// of an unordered comparison.
fn m_ne(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return m_truth(!(a == b) | m_isnan(a) | m_isnan(b));
}

fn m_eq(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return m_truth((a == b) & !(m_isnan(a) | m_isnan(b)));
}

fn m_lt(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return m_truth((a < b) & !(m_isnan(a) | m_isnan(b)));
}

fn m_le(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return m_truth((a <= b) & !(m_isnan(a) | m_isnan(b)));
}

fn m_gt(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return m_lt(b, a);
}

fn m_ge(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return m_le(b, a);
}

// np.where: any c but +-0 (NaN too) picks a.
fn m_where(c: vec4<f32>, a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(b, a, (bitcast<vec4<u32>>(c) & vec4<u32>(0x7fffffffu)) != vec4<u32>(0u));
}

fn m_min(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(min(a, b), a + b, m_isnan(a) | m_isnan(b));
}

fn m_max(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(max(a, b), a + b, m_isnan(a) | m_isnan(b));
}

fn m_clamp(x: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>) -> vec4<f32> {
    return m_min(m_max(x, lo), hi);
}

// np.remainder: a - b * floor(a / b), with the sign of b. The product is
// subtracted in one rounding (fma), then a quotient off by one is put
// right; an infinite b leaves a finite a (or b when their signs differ).
fn m_rem(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    // (Each comparison in parentheses: `r < zero & b > zero` would read as
    // a template list.)
    let zero = vec4<f32>(0.0);
    let up = b > zero;
    let q = floor(a / b);
    var r = fma(-q, b, a);
    r = select(r, r + b, (up & (r < zero)) | (!up & (r > zero)));
    r = select(r, r - b, (up & (r >= b)) | (!up & (r <= b)));
    let inf_b = abs(b) == m_inf() & abs(a) < m_inf();
    let same = (a >= vec4<f32>(0.0)) == (b > vec4<f32>(0.0));
    r = select(r, select(b, a, same | a == vec4<f32>(0.0)), inf_b);
    return select(r, m_nan(), b == vec4<f32>(0.0) | m_isnan(a) | m_isnan(b));
}

// C's powf (NumPy's): pow(x, 0) = 1 and pow(1, y) = 1, NaN included; a
// negative base needs a whole exponent, and an odd one keeps its sign.
fn m_pow(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    var r = exp2(y * m_log2(abs(x)));
    let whole = floor(y) == y;
    let odd = whole & abs(y) < vec4<f32>(16777216.0) & (floor(y * 0.5) != y * 0.5);
    let neg = x < vec4<f32>(0.0);
    r = select(r, -r, neg & odd);
    r = select(r, m_nan(), neg & !whole);
    return select(r, vec4<f32>(1.0), y == vec4<f32>(0.0) | x == vec4<f32>(1.0));
}

fn m_sqrt(a: vec4<f32>) -> vec4<f32> {
    return select(sqrt(a), m_nan(), a < vec4<f32>(0.0));
}

fn m_log(a: vec4<f32>) -> vec4<f32> {
    let r = select(log(a), -m_inf(), a == vec4<f32>(0.0));
    return select(r, m_nan(), a < vec4<f32>(0.0));
}

fn m_log2(a: vec4<f32>) -> vec4<f32> {
    let r = select(log2(a), -m_inf(), a == vec4<f32>(0.0));
    return select(r, m_nan(), a < vec4<f32>(0.0));
}

// asin, acos, atan and atan2 as Cephes' float versions (within a few ulp):
// Vulkan lets the built-ins be off by thousands of ulp, and llvmpipe's
// are off by 1e-4.
fn m_asin_core(a: vec4<f32>) -> vec4<f32> {
    // For |a| <= 1: asin(|a|) by a polynomial, past 0.5 through
    // asin(a) = pi/2 - 2 asin(sqrt((1 - a) / 2)).
    let x = abs(a);
    let far = x > vec4<f32>(0.5);
    let z = select(x * x, 0.5 * (1.0 - x), far);
    let s = select(x, sqrt(z), far);
    let p = ((((4.2163199048e-2 * z + 2.4181311049e-2) * z + 4.5470025998e-2) * z + 7.4953002686e-2) * z
        + 1.6666752422e-1) * z * s + s;
    return select(p, 1.5707963267948966 - 2.0 * p, far);
}

fn m_asin(a: vec4<f32>) -> vec4<f32> {
    let r = sign(a) * m_asin_core(a);
    return select(r, m_nan(), abs(a) > vec4<f32>(1.0) | m_isnan(a));
}

fn m_acos(a: vec4<f32>) -> vec4<f32> {
    // acos(a) = pi/2 - asin(a) near 0; 2 asin(sqrt((1 - |a|) / 2)) from
    // the ends (pi minus it for negative a).
    let x = abs(a);
    let end = 2.0 * m_asin_core(sqrt(0.5 * (1.0 - x)));
    let near = 1.5707963267948966 - sign(a) * m_asin_core(a);
    let far = select(end, 3.141592653589793 - end, a < vec4<f32>(0.0));
    let r = select(near, far, x > vec4<f32>(0.5));
    return select(r, m_nan(), x > vec4<f32>(1.0) | m_isnan(a));
}

fn m_atan(a: vec4<f32>) -> vec4<f32> {
    let x = abs(a);
    let big = x > vec4<f32>(2.414213562373095);
    let mid = x > vec4<f32>(0.4142135623730950) & !big;
    let base = select(select(vec4<f32>(0.0), vec4<f32>(0.7853981633974483), mid), vec4<f32>(1.5707963267948966), big);
    let t = select(select(x, (x - 1.0) / (x + 1.0), mid), -1.0 / x, big);
    let z = t * t;
    let p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * t + t;
    // sign(a) keeps NaN; atan(+-inf) is +-pi/2 (t is -0 there).
    return sign(a) * (base + p) + select(vec4<f32>(0.0), a, m_isnan(a));
}

// atan2 as C's: the quadrant from the signs, two zeros give +-0 or +-pi,
// two infinities +-pi/4 or +-3pi/4.
fn m_atan2(y: vec4<f32>, x: vec4<f32>) -> vec4<f32> {
    let sign_y = bitcast<vec4<u32>>(y) & vec4<u32>(0x80000000u);
    let x_neg = (bitcast<vec4<u32>>(x) & vec4<u32>(0x80000000u)) != vec4<u32>(0u);
    let pi_y = bitcast<vec4<f32>>(bitcast<vec4<u32>>(vec4<f32>(3.141592653589793)) | sign_y);
    var r = m_atan(y / x);
    r = select(r, r + pi_y, x_neg);
    let zero = bitcast<vec4<f32>>(select(vec4<u32>(0u), bitcast<vec4<u32>>(vec4<f32>(3.141592653589793)), x_neg) | sign_y);
    r = select(r, zero, (y == vec4<f32>(0.0)) & (x == vec4<f32>(0.0)));
    let corner = select(vec4<f32>(0.7853981633974483), vec4<f32>(2.356194490192345), x_neg) * sign(y);
    r = select(r, corner, (abs(y) == m_inf()) & (abs(x) == m_inf()));
    return select(r, m_nan(), m_isnan(x) | m_isnan(y));
}

// tanh as (e^2x - 1) / (e^2x + 1) overflows to NaN in some drivers.
fn m_tanh(a: vec4<f32>) -> vec4<f32> {
    return select(tanh(a), sign(a), abs(a) > vec4<f32>(9.0));
}

// sin and cos reduced to [-pi, pi] first (in three parts, as the CPU
// does): GPUs' built-ins lose accuracy far from zero.
fn m_reduce(a: vec4<f32>) -> vec4<f32> {
    let j = round(a * 0.15915494309189535);
    // 2 pi in three parts (the CPU's pi/2 parts, times 4).
    return ((a - j * 6.28125) - j * 1.9350051879882812e-3) - j * 3.0199159819567273e-7;
}

fn m_sin(a: vec4<f32>) -> vec4<f32> {
    return sin(m_reduce(a));
}

fn m_cos(a: vec4<f32>) -> vec4<f32> {
    return cos(m_reduce(a));
}

fn m_tan(a: vec4<f32>) -> vec4<f32> {
    return tan(m_reduce(a));
}

@compute @workgroup_size(256, 1, 1)
fn map(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // vec4 bound for this chunk; ceil(n / 4) cannot overflow, as a binding
    // holds far fewer than 2^32 - 3 elements.
    let len = (params.n + 3u) / 4u;
    let stride = groups.x * WG;
    for (var i = wid.x * WG + lid; i < len; i += stride) {
        out[i] = value(i);
    }
}

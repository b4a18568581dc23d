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
// (broadcast) is written in as a number. The host binds
// ceil(n / 4) vec4 of each array; lanes past n in the last vec4 are
// computed from whatever the buffer held and never read back.
//
// Numbers of the expression come in `params.c` (80 at most), so that
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
    c: array<vec4<f32>, 20>,
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

// np.remainder of one pair: C's fmod by long division (each subtraction
// is exact: s <= r < 2s), then the sign of b as NumPy's npy_divmod. A
// quotient below 2^24 takes one or two steps; the loop is bounded by the
// exponent range.
fn m_rem1(a: f32, b: f32) -> f32 {
    let inf = bitcast<f32>(params.inf);
    let nan_a = (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u;
    let nan_b = (bitcast<u32>(b) & 0x7fffffffu) > 0x7f800000u;
    if b == 0.0 || abs(a) == inf || nan_a || nan_b {
        return bitcast<f32>(params.nan);
    }
    let d = abs(b);
    var r = abs(a);
    for (var step = 0; step < 300 && r >= d; step++) {
        var s = ldexp(d, frexp(r).exp - frexp(d).exp);
        if s > r {
            s = s * 0.5;
        }
        r = r - s;
    }
    let sign_b = bitcast<u32>(b) & 0x80000000u;
    if r == 0.0 {
        return bitcast<f32>(sign_b);
    }
    r = bitcast<f32>(bitcast<u32>(r) | (bitcast<u32>(a) & 0x80000000u));
    if (r < 0.0) != (b < 0.0) {
        r = r + b;
    }
    return r;
}

fn m_rem(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(m_rem1(a.x, b.x), m_rem1(a.y, b.y), m_rem1(a.z, b.z), m_rem1(a.w, b.w));
}

// C's powf (NumPy's): pow(x, 0) = 1 and pow(1, y) = 1, NaN included, and
// pow(-1, +-inf) = 1; a negative finite base needs a whole exponent, and
// an odd one keeps the base's sign (-0 and -inf included).
fn m_pow(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    var r = exp2(y * m_log2(abs(x)));
    let whole = floor(y) == y;
    let odd = whole & (abs(y) < vec4<f32>(16777216.0)) & (floor(y * 0.5) != y * 0.5);
    let negative_sign = (bitcast<vec4<u32>>(x) & vec4<u32>(0x80000000u)) != vec4<u32>(0u);
    r = select(r, -r, negative_sign & odd);
    r = select(r, m_nan(), (x < vec4<f32>(0.0)) & !whole & (abs(x) != m_inf()));
    let one = (y == vec4<f32>(0.0)) | (x == vec4<f32>(1.0)) | ((x == vec4<f32>(-1.0)) & (abs(y) == m_inf()));
    return select(r, vec4<f32>(1.0), one);
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
// does): GPUs' built-ins lose accuracy far from zero. The parts are exact
// for |a| up to about 5e4; past that the result drifts from NumPy's (the
// CPU turns to the C library past 8192).
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

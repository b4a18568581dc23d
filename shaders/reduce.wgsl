// reduce: sum, min or max of u32 words read as f32, u32 or i32.
//
// One shader serves every (op, dtype) pair: both are pipeline-overridable
// constants, so each pipeline is specialised when it is compiled and the
// branches below fold away. Elements travel as raw u32 bits.
//
// Each workgroup folds a grid-stride share of `src` into one value and
// writes it to dst[params.out_offset + workgroup index]. The host runs a
// first pass with many workgroups, then passes with one workgroup over the
// partial results, until one value is left.

override OP: u32 = 0u;     // 0 sum, 1 min, 2 max
override DTYPE: u32 = 0u;  // 0 f32, 1 u32, 2 i32

struct Params {
    n: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;
var<workgroup> scratch: array<u32, WG>;

// Checked on the bits: WGSL lets compilers assume floats are never NaN, so
// `x != x` may be folded to false.
fn is_nan_bits(b: u32) -> bool {
    return (b & 0x7fffffffu) > 0x7f800000u;
}

fn identity() -> u32 {
    if OP == 0u {
        return 0u;                    // 0.0, 0u, 0i
    }
    if DTYPE == 0u {
        return select(0xff800000u, 0x7f800000u, OP == 1u);  // +inf for min, -inf for max
    }
    if DTYPE == 1u {
        return select(0u, 0xffffffffu, OP == 1u);
    }
    return select(0x80000000u, 0x7fffffffu, OP == 1u);       // i32 max for min, i32 min for max
}

fn combine(a: u32, b: u32) -> u32 {
    if DTYPE == 0u {
        if OP == 0u {
            return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b));
        }
        // min/max propagate NaN, as NumPy does.
        if is_nan_bits(a) {
            return a;
        }
        if is_nan_bits(b) {
            return b;
        }
        if OP == 1u {
            return bitcast<u32>(min(bitcast<f32>(a), bitcast<f32>(b)));
        }
        return bitcast<u32>(max(bitcast<f32>(a), bitcast<f32>(b)));
    }
    if DTYPE == 1u {
        if OP == 0u {
            return a + b;             // wraps modulo 2^32
        }
        return select(max(a, b), min(a, b), OP == 1u);
    }
    let ia = bitcast<i32>(a);
    let ib = bitcast<i32>(b);
    if OP == 0u {
        return bitcast<u32>(ia + ib); // wraps modulo 2^32
    }
    return bitcast<u32>(select(max(ia, ib), min(ia, ib), OP == 1u));
}

@compute @workgroup_size(256, 1, 1)
fn reduce(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let stride = groups.x * WG;
    var acc = identity();
    for (var i = wid.x * WG + lid; i < params.n; i += stride) {
        acc = combine(acc, src[i]);
    }
    scratch[lid] = acc;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if lid < width {
            scratch[lid] = combine(scratch[lid], scratch[lid + width]);
        }
        workgroupBarrier();
    }
    if lid == 0u {
        dst[params.out_offset + wid.x] = scratch[0];
    }
}

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
//
// Memory-bound, so written for bandwidth: `src` is bound as vec4 (16-byte
// loads), each invocation loads UNROLL vec4 per iteration of the loop, and
// keeps one vec4 accumulator per load, so that 16 independent folds (not one
// dependent chain) hide the latency of the loads. Within an iteration,
// invocation t of a workgroup loads vec4 base + t + j * WG for j = 0..UNROLL:
// each load of a workgroup is one contiguous, coalesced run of WG vec4.
//
// The host binds ceil(n / 4) vec4. When n is not a multiple of 4, the lanes
// of the last vec4 past n hold whatever the buffer held before (stale data,
// or poison): they are replaced by the identity and never counted.
//
// The shader is compiled without runtime bounds checks or zeroed workgroup
// memory (`trusted`): every index below is compared against the bound
// length first, and every `scratch` slot is written before it is read.

override OP: u32 = 0u;     // 0 sum, 1 min, 2 max
override DTYPE: u32 = 0u;  // 0 f32, 1 u32, 2 i32

struct Params {
    n: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;
// vec4 loaded per invocation per iteration (also in backend/gpu/reduce.rs).
const UNROLL: u32 = 4u;
var<workgroup> scratch: array<u32, WG>;

// Checked on the bits: WGSL lets compilers assume floats are never NaN, so
// `x != x` may be folded to false.
fn is_nan_bits(b: u32) -> bool {
    return (b & 0x7fffffffu) > 0x7f800000u;
}

fn is_nan_bits4(b: vec4<u32>) -> vec4<bool> {
    return (b & vec4(0x7fffffffu)) > vec4(0x7f800000u);
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

// `combine` lane by lane, branch-free.
fn combine4(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    if DTYPE == 0u {
        let fa = bitcast<vec4<f32>>(a);
        let fb = bitcast<vec4<f32>>(b);
        if OP == 0u {
            return bitcast<vec4<u32>>(fa + fb);
        }
        // min/max propagate NaN, as NumPy does: a's NaN first, then b's.
        let m = bitcast<vec4<u32>>(select(max(fa, fb), min(fa, fb), OP == 1u));
        return select(select(m, b, is_nan_bits4(b)), a, is_nan_bits4(a));
    }
    if DTYPE == 1u {
        if OP == 0u {
            return a + b;             // wraps modulo 2^32
        }
        return select(max(a, b), min(a, b), OP == 1u);
    }
    let ia = bitcast<vec4<i32>>(a);
    let ib = bitcast<vec4<i32>>(b);
    if OP == 0u {
        return bitcast<vec4<u32>>(ia + ib); // wraps modulo 2^32
    }
    return bitcast<vec4<u32>>(select(max(ia, ib), min(ia, ib), OP == 1u));
}

// src[i] with its lanes at or past element n replaced by the identity.
// Only the last vec4 of the input can have such lanes.
fn load_masked(i: u32, n: u32) -> vec4<u32> {
    let lanes = vec4(i * 4u) + vec4(0u, 1u, 2u, 3u);
    return select(vec4(identity()), src[i], lanes < vec4(n));
}

@compute @workgroup_size(256, 1, 1)
fn reduce(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let n = params.n;
    // vec4 bound, and vec4 whose four lanes are all elements. Neither
    // overflows: a binding holds far fewer than 2^32 - 3 elements.
    let len = (n + 3u) / 4u;
    let full = n / 4u;
    let tile = WG * UNROLL;
    let stride = groups.x * tile;
    var acc0 = vec4(identity());
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    var base = wid.x * tile + lid;
    // Whole tiles of full vec4 (base < base + WG < ... < base + 3 WG < full
    // <= len): four independent loads, four independent accumulators.
    for (; base + 3u * WG < full; base += stride) {
        let v0 = src[base];
        let v1 = src[base + WG];
        let v2 = src[base + 2u * WG];
        let v3 = src[base + 3u * WG];
        acc0 = combine4(acc0, v0);
        acc1 = combine4(acc1, v1);
        acc2 = combine4(acc2, v2);
        acc3 = combine4(acc3, v3);
    }
    // At most one tile is left for this invocation: the loop stopped at the
    // first tile whose last vec4 is at or past `full`, so the next tile
    // starts at or past `len`. Its vec4 are each checked and masked (the
    // last vec4 of the input, partial or not, may be any of them).
    if base < len {
        let i1 = base + WG;
        let i2 = base + 2u * WG;
        let i3 = base + 3u * WG;
        acc0 = combine4(acc0, load_masked(base, n));
        if i1 < len {
            acc1 = combine4(acc1, load_masked(i1, n));
        }
        if i2 < len {
            acc2 = combine4(acc2, load_masked(i2, n));
        }
        if i3 < len {
            acc3 = combine4(acc3, load_masked(i3, n));
        }
    }
    let acc = combine4(combine4(acc0, acc1), combine4(acc2, acc3));
    scratch[lid] = combine(combine(acc.x, acc.y), combine(acc.z, acc.w));
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

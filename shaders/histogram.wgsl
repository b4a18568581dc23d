// histogram: counts of f32 values in bins bounded by `edges` (bins + 1
// ascending f32, made on the host exactly as NumPy makes them). A value v
// lands in bin i when edges[i] <= v < edges[i + 1]; the last bin also takes
// v == edges[bins]; NaN and values outside [edges[0], edges[bins]] are not
// counted. The bin is estimated as (v/2 - edges[0]/2) * scale, then settled
// against the edges, so the counts do not depend on the device's rounding.
//
// A capped grid of workgroups strides over x. With at most LOCAL_BINS bins,
// each workgroup counts into its own workgroup-memory counters and adds
// them to the global counts once at the end; with more, every value goes
// straight to the global counts. The host zeroes `counts` before the first
// chunk; later chunks add to them.
//
// Trusted (no runtime checks, workgroup memory not zeroed): x is indexed
// below n, edges below bins + 1 (the settling loops stay in 0 ..= last),
// counts below bins, and the local counters are zeroed before use.

struct Params {
    n: u32,
    bins: u32,
    scale: f32,
    // Nonzero when scale is not finite (a range narrower than f32 can
    // scale): then the bin is found by binary search over the edges.
    search: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> edges: array<f32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> params: Params;

const WG: u32 = 256u;
const LOCAL_BINS: u32 = 4096u;  // also in kernel/histogram.rs

var<workgroup> local_counts: array<atomic<u32>, LOCAL_BINS>;

// Checked on the bits: WGSL lets compilers assume floats are never NaN.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// The bin of v, or `bins` when v is not counted.
fn bin_of(v: f32) -> u32 {
    let bins = params.bins;
    let last = bins - 1u;
    let lo = edges[0];
    if is_nan(v) || v < lo || v > edges[bins] {
        return bins;
    }
    if params.search != 0u {
        // The last edge <= v: edges[a] <= v holds throughout; a <= b <= last.
        var a = 0u;
        var b = last;
        while a < b {
            let mid = (a + b + 1u) / 2u;
            if edges[mid] <= v {
                a = mid;
            } else {
                b = mid - 1u;
            }
        }
        return a;
    }
    // v >= lo, so the estimate is not negative; clamp it to the last bin.
    // Half distances, so that the difference never overflows; the estimate
    // is within a bin or two of the true one, so the loops below are short.
    var i = u32(min((v * 0.5 - lo * 0.5) * params.scale, f32(last)));
    i = min(i, last);
    while i > 0u && v < edges[i] {
        i -= 1u;
    }
    while i < last && v >= edges[i + 1u] {
        i += 1u;
    }
    return i;
}

@compute @workgroup_size(256)
fn histogram(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bins = params.bins;
    let local = bins <= LOCAL_BINS;
    let stride = groups.x * WG;
    if local {
        for (var b = lid; b < bins; b += WG) {
            atomicStore(&local_counts[b], 0u);
        }
    }
    workgroupBarrier();
    for (var i = wid.x * WG + lid; i < params.n; i += stride) {
        let b = bin_of(x[i]);
        if b < bins {
            if local {
                atomicAdd(&local_counts[b], 1u);
            } else {
                atomicAdd(&counts[b], 1u);
            }
        }
    }
    workgroupBarrier();
    if local {
        for (var b = lid; b < bins; b += WG) {
            let c = atomicLoad(&local_counts[b]);
            if c > 0u {
                atomicAdd(&counts[b], c);
            }
        }
    }
}

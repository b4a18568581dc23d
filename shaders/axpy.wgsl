// axpy: out[i] <- a * x[i] + y[i], over one chunk of the vectors.
//
// Memory-bound, so it is written for bandwidth: the vectors are bound as
// vec4 (one 16-byte load or store per access), and each invocation handles
// UNROLL vec4 per iteration of a grid-stride loop, so that several
// independent loads are in flight per thread. Within an iteration,
// invocation t of a workgroup touches vec4 base + t + j * WG for
// j = 0..UNROLL: each of the UNROLL accesses of a workgroup is one
// contiguous, coalesced run of WG vec4.
//
// The grid is one-dimensional and bounded by the host (at most a few
// thousand workgroups); the loop covers whatever it does not.
//
// The host binds ceil(n / 4) vec4 of each vector (from a chunk's offset in
// a resident buffer, or from the start of a scratch buffer). When n is not
// a multiple of 4, the lanes of the last vec4 past n hold whatever the
// buffer held before: they are computed like the others and never read.
// x and y are only read, so a tensor kept on the device may be either.
//
// The shader is compiled without runtime bounds checks (`trusted`), so
// every index below is compared against the bound length first.

struct Params {
    a: f32,
    n: u32, // elements (not vec4) in this chunk
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;

const WG: u32 = 256u;
// vec4 per invocation per iteration (also in backend/gpu/axpy.rs).
const UNROLL: u32 = 4u;

@compute @workgroup_size(256, 1, 1)
fn axpy(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let a = params.a;
    // vec4 bound for this chunk; ceil(n / 4) cannot overflow, as a binding
    // holds far fewer than 2^32 - 3 elements.
    let len = (params.n + 3u) / 4u;
    let tile = WG * UNROLL;
    let stride = groups.x * tile;
    for (var base = wid.x * tile + lid; base < len; base += stride) {
        let i0 = base;
        let i1 = base + WG;
        let i2 = base + 2u * WG;
        let i3 = base + 3u * WG;
        if i3 < len {
            // Whole tile in range (i0 < i1 < i2 < i3 < len): all loads
            // issued before any arithmetic or store.
            let x0 = x[i0];
            let x1 = x[i1];
            let x2 = x[i2];
            let x3 = x[i3];
            let y0 = y[i0];
            let y1 = y[i1];
            let y2 = y[i2];
            let y3 = y[i3];
            out[i0] = a * x0 + y0;
            out[i1] = a * x1 + y1;
            out[i2] = a * x2 + y2;
            out[i3] = a * x3 + y3;
        } else {
            // The last, partial tile of the chunk (i0 < len by the loop).
            for (var j = 0u; j < UNROLL; j++) {
                let i = base + j * WG;
                if i < len {
                    out[i] = a * x[i] + y[i];
                }
            }
        }
    }
}

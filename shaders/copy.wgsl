// copy: dst <- src, as vec4 of u32 — the device's memory bandwidth as a
// WGSL kernel sees it, for `anycore bench`'s GPU copy baseline (not a
// catalog kernel: src/backend/gpu/copy.rs runs it).
//
// The same access pattern as axpy and reduce: a one-dimensional grid
// capped by the host, a grid-stride loop, and UNROLL vec4 per invocation
// per iteration, each of a workgroup's UNROLL accesses one coalesced run.

struct Params {
    n: u32, // vec4 to copy
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;
const UNROLL: u32 = 4u;

@compute @workgroup_size(256, 1, 1)
fn copy(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = params.n;
    let tile = WG * UNROLL;
    let stride = groups.x * tile;
    for (var base = wid.x * tile + lid; base < len; base += stride) {
        let i3 = base + 3u * WG;
        if i3 < len {
            let v0 = src[base];
            let v1 = src[base + WG];
            let v2 = src[base + 2u * WG];
            let v3 = src[i3];
            dst[base] = v0;
            dst[base + WG] = v1;
            dst[base + 2u * WG] = v2;
            dst[i3] = v3;
        } else {
            for (var j = 0u; j < UNROLL; j++) {
                let i = base + j * WG;
                if i < len {
                    dst[i] = src[i];
                }
            }
        }
    }
}

// axpy: y[i] <- a * x[i] + y[i], in place over one chunk of the vectors.
//
// The grid may be two-dimensional: a dispatch holds at most 65,535
// workgroups per dimension, so the host spreads large vectors over x and y
// and each invocation linearises its id (see backend/gpu/grid.rs).

struct Params {
    a: f32,
    n: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn axpy(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.y * groups.x * 256u + gid.x;
    if i < params.n {
        y[i] = params.a * x[i] + y[i];
    }
}

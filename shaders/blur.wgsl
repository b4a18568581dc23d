// blur: the two passes of a separable Gaussian, edges clamped, each an
// entry point over one band of rows (see conv2d.wgsl for the bands):
//
//   columns: out[y, v] <- sum_i weights[i] * image[first + y + i - r, v]
//            (v runs over a row's width * channels values; rows clamped
//            to the band, which is clamping to the image)
//   rows:    out[y, x, ch] <- sum_j weights[j] * image[y, x + j - r, ch]
//            (columns clamped to the row)
//
// with r = radius and 2r + 1 weights. The host runs `columns` from the
// input band into a scratch band, then `rows` from that into the output:
// SciPy's order (axis 0, then axis 1).
//
// Trusted (no runtime checks): every index is clamped into its binding or
// compared against the band's size first; weights holds 2r + 1 values.

struct Params {
    width: u32,
    channels: u32,
    rows_in: u32,
    rows_out: u32,
    first: u32,
    radius: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> image: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64, 4, 1)
fn columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = params.width * params.channels;
    let v = gid.x;
    let y = gid.y;
    if v >= n || y >= params.rows_out {
        return;
    }
    let r = i32(params.radius);
    let last = i32(params.rows_in) - 1;
    let top = i32(params.first + y) - r;
    var sum = 0.0;
    for (var i = 0; i <= 2 * r; i++) {
        let sy = u32(clamp(top + i, 0, last));
        sum += weights[i] * image[sy * n + v];
    }
    out[y * n + v] = sum;
}

@compute @workgroup_size(64, 4, 1)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = params.channels;
    let n = params.width * c;
    let v = gid.x;
    let y = gid.y;
    if v >= n || y >= params.rows_out {
        return;
    }
    let r = i32(params.radius);
    let last = i32(params.width) - 1;
    let left = i32(v / c) - r;
    let ch = v % c;
    var sum = 0.0;
    for (var j = 0; j <= 2 * r; j++) {
        let sx = u32(clamp(left + j, 0, last));
        sum += weights[j] * image[y * n + sx * c + ch];
    }
    out[y * n + v] = sum;
}

// mandelbrot: iteration counts for a band of rows of the image.
//
// The host may split tall images into bands (a binding holds a limited
// number of bytes); row_offset says where this band starts. The arithmetic
// mirrors Mandelbrot::count in src/kernel/mandelbrot.rs step for step.

struct Params {
    width: u32,
    height: u32,
    row_offset: u32,
    rows: u32,
    max_iter: u32,
    x0: f32,
    x1: f32,
    y0: f32,
    y1: f32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(16, 16, 1)
fn mandelbrot(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let band_row = gid.y;
    if col >= params.width || band_row >= params.rows {
        return;
    }
    let row = params.row_offset + band_row;
    let px = params.x0 + (f32(col) + 0.5) * (params.x1 - params.x0) / f32(params.width);
    let py = params.y0 + (f32(row) + 0.5) * (params.y1 - params.y0) / f32(params.height);
    var zr = 0.0;
    var zi = 0.0;
    var count = params.max_iter;
    for (var n = 0u; n < params.max_iter; n++) {
        let zr2 = zr * zr;
        let zi2 = zi * zi;
        if zr2 + zi2 > 4.0 {
            count = n;
            break;
        }
        zi = 2.0 * zr * zi + py;
        zr = zr2 - zi2 + px;
    }
    out[band_row * params.width + col] = count;
}

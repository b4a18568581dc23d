// conv2d: out[y, x, ch] <- sum over i < kh, j < kw of
// kern[i, j] * image[y + i - kh/2, x + j - kw/2, ch], edges clamped.
//
// The host runs the image in bands of rows: `image` holds `rows_in` rows
// of the input band (every row within kh/2 of the output rows, fewer at
// the image's edges), `out` the band's `rows_out` output rows, whose
// first is row `first` of the input band. Clamping rows to the band is
// clamping them to the image: the band holds every row a tap can reach
// except beyond the image's edges.
//
// Each workgroup makes a 16x16 tile of one channel (workgroup z): it
// stages the tile and its border (16 + kw - 1 by 16 + kh - 1 pixels, at
// most 64x64 for the 49x49 kernels the host allows) in workgroup memory,
// then each invocation sums its pixel's taps from there.
//
// Trusted (no runtime checks): the tile index stays below SPAN * SPAN as
// kh, kw <= 2 * HALO + 1 (the host checks); image indices are clamped into
// the band; kern holds kh * kw values.

struct Params {
    width: u32,
    channels: u32,
    rows_in: u32,
    rows_out: u32,
    first: u32,
    kh: u32,
    kw: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> image: array<f32>;
@group(0) @binding(1) var<storage, read> kern: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TILE: u32 = 16u;
const HALO: u32 = 24u;
const SPAN: u32 = 64u; // TILE + 2 * HALO

var<workgroup> tile: array<f32, 4096>; // SPAN * SPAN

@compute @workgroup_size(16, 16, 1)
fn conv2d(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let ch = wid.z;
    let x0 = wid.x * TILE;
    let y0 = wid.y * TILE;
    let rx = params.kw / 2u;
    let ry = params.kh / 2u;
    let span_x = TILE + 2u * rx;
    let span_y = TILE + 2u * ry;
    let last_x = i32(params.width) - 1;
    let last_y = i32(params.rows_in) - 1;
    for (var t = lid.y * TILE + lid.x; t < span_x * span_y; t += TILE * TILE) {
        let tx = t % span_x;
        let ty = t / span_x;
        let gx = clamp(i32(x0 + tx) - i32(rx), 0, last_x);
        let gy = clamp(i32(params.first + y0 + ty) - i32(ry), 0, last_y);
        tile[ty * SPAN + tx] = image[(u32(gy) * params.width + u32(gx)) * params.channels + ch];
    }
    workgroupBarrier();
    let x = x0 + lid.x;
    let y = y0 + lid.y;
    if x >= params.width || y >= params.rows_out {
        return;
    }
    var sum = 0.0;
    for (var i = 0u; i < params.kh; i++) {
        for (var j = 0u; j < params.kw; j++) {
            sum += kern[i * params.kw + j] * tile[(lid.y + i) * SPAN + lid.x + j];
        }
    }
    out[(y * params.width + x) * params.channels + ch] = sum;
}

// matmul: c = a * b for row-major f32 matrices a (m x k), b (k x n).
//
// Each 16x16 workgroup computes a 64x64 tile of c; each invocation owns a
// 4x4 block of it, at rows lid.y + 16*i and columns lid.x + 16*j, so that
// neighbouring invocations touch neighbouring addresses. Tiles of a and b,
// 16 deep in k, are staged in workgroup memory. Loads past the matrix edges
// read zeros and stores past them are skipped, so any m, k, n work.

struct Dims {
    m: u32,
    k: u32,
    n: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

const TILE: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>;  // [BK][TILE]: a transposed
var<workgroup> b_tile: array<f32, 1024>;  // [BK][TILE]

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var t = 0u; t < dims.k; t += BK) {
        // 1024 elements of each tile, four per invocation.
        for (var e = 0u; e < 4u; e++) {
            let idx = li + e * 256u;
            // a: row r, depth kk (kk fastest, so reads of a are contiguous).
            let r = idx / BK;
            let kk = idx % BK;
            let ar = row0 + r;
            let ak = t + kk;
            var av = 0.0;
            if ar < dims.m && ak < dims.k {
                av = a[ar * dims.k + ak];
            }
            a_tile[kk * TILE + r] = av;
            // b: depth bk, column bc (column fastest).
            let bk = idx / TILE;
            let bc = idx % TILE;
            let gk = t + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if gk < dims.k && gc < dims.n {
                bv = b[gk * dims.n + gc];
            }
            b_tile[bk * TILE + bc] = bv;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                ar[i] = a_tile[kk * TILE + lid.y + 16u * i];
                br[i] = b_tile[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += ar[i] * br[j];
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if r < dims.m && col < dims.n {
                c[r * dims.n + col] = acc[i * 4u + j];
            }
        }
    }
}

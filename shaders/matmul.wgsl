// matmul: c = a * b for row-major f32 matrices a (m x k), b (k x n).
//
// Each 16x16 workgroup computes a 128x128 tile of c; each invocation owns
// an 8x8 block of it: rows ty + 16*i (i = 0..7) and two groups of four
// columns, 4*tx..4*tx+3 and 64+4*tx..64+4*tx+3, held as sixteen vec4
// accumulators. Slices of a and b, 8 deep in k, are staged in workgroup
// memory; per step of k an invocation reads 8 values of a and 8 of b and
// does 64 multiply-adds. Every index into the accumulators is a constant
// (the steps are written out, not looped), so a driver can keep them in
// registers instead of spilling a dynamically indexed array to memory. Loads past the matrix edges read zeros and
// stores past them are skipped, so any m, k, n work.

struct Dims {
    m: u32,
    k: u32,
    n: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

const TILE: u32 = 128u;
const BK: u32 = 8u;

var<workgroup> a_tile: array<f32, 1024>;  // [BK][TILE]: a transposed
var<workgroup> b_tile: array<f32, 1024>;  // [BK][TILE]

// The four values of b_tile at `at`, as a vector.
fn b4(at: u32) -> vec4<f32> {
    return vec4<f32>(b_tile[at], b_tile[at + 1u], b_tile[at + 2u], b_tile[at + 3u]);
}

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let tx = lid.x;
    let ty = lid.y;
    // acc[2*i] and acc[2*i + 1]: row ty + 16*i, the two column groups.
    // (Function variables start at zero.)
    var acc: array<vec4<f32>, 16>;

    for (var t = 0u; t < dims.k; t += BK) {
        // 1024 elements of each slice, four per invocation.
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
            let ao = kk * TILE + ty;
            let bo = kk * TILE + 4u * tx;
            let b0 = b4(bo);
            let b1 = b4(bo + 64u);
            let a0 = a_tile[ao];
            let a1 = a_tile[ao + 16u];
            let a2 = a_tile[ao + 32u];
            let a3 = a_tile[ao + 48u];
            let a4 = a_tile[ao + 64u];
            let a5 = a_tile[ao + 80u];
            let a6 = a_tile[ao + 96u];
            let a7 = a_tile[ao + 112u];
            acc[0] += a0 * b0;
            acc[1] += a0 * b1;
            acc[2] += a1 * b0;
            acc[3] += a1 * b1;
            acc[4] += a2 * b0;
            acc[5] += a2 * b1;
            acc[6] += a3 * b0;
            acc[7] += a3 * b1;
            acc[8] += a4 * b0;
            acc[9] += a4 * b1;
            acc[10] += a5 * b0;
            acc[11] += a5 * b1;
            acc[12] += a6 * b0;
            acc[13] += a6 * b1;
            acc[14] += a7 * b0;
            acc[15] += a7 * b1;
        }
        workgroupBarrier();
    }

    let r = row0 + ty;
    let c0 = col0 + 4u * tx;
    let c1 = c0 + 64u;
    store4(r, c0, acc[0]);
    store4(r, c1, acc[1]);
    store4(r + 16u, c0, acc[2]);
    store4(r + 16u, c1, acc[3]);
    store4(r + 32u, c0, acc[4]);
    store4(r + 32u, c1, acc[5]);
    store4(r + 48u, c0, acc[6]);
    store4(r + 48u, c1, acc[7]);
    store4(r + 64u, c0, acc[8]);
    store4(r + 64u, c1, acc[9]);
    store4(r + 80u, c0, acc[10]);
    store4(r + 80u, c1, acc[11]);
    store4(r + 96u, c0, acc[12]);
    store4(r + 96u, c1, acc[13]);
    store4(r + 112u, c0, acc[14]);
    store4(r + 112u, c1, acc[15]);
}

// Stores v at row r, columns col..col+3 of c, skipping what lies outside.
fn store4(r: u32, col: u32, v: vec4<f32>) {
    if r >= dims.m {
        return;
    }
    let at = r * dims.n + col;
    if col < dims.n {
        c[at] = v.x;
    }
    if col + 1u < dims.n {
        c[at + 1u] = v.y;
    }
    if col + 2u < dims.n {
        c[at + 2u] = v.z;
    }
    if col + 3u < dims.n {
        c[at + 3u] = v.w;
    }
}

// matmul: c = a * b for row-major f32 matrices a (m x k), b (k x n).
//
// Six entry points compute the same product in different ways; the host
// (src/backend/gpu/tune.rs) times the ones that apply on the card in use and
// keeps the fastest. All use 16x16 invocations and stage slices of a and b,
// BK deep in k, in workgroup memory stored as vec4, so the inner loop reads
// whole vec4s (one 128-bit load each) instead of scalars:
//
//   mm128      128x128 tile, 8x8 per invocation, BK 8, scalar global loads
//   mm64        64x64  tile, 4x4 per invocation, BK 16, scalar global loads
//   mm128v4    as mm128, but vec4 global loads and stores
//   mm128v4k16 as mm128v4 with BK 16 (half the barriers per multiply-add)
//   mm128v4db  as mm128v4 with two tile buffers (one barrier per slice)
//   mm64v4     as mm64, but vec4 global loads and stores
//
// The scalar-load entry points take any m, k, n: loads past the edges read
// zeros and stores past them are skipped. The v4 ones read a, b and write c
// through vec4 views of the same bindings, so they need k and n to be
// multiples of 4 (k > 0): then a vec4 of a row lies wholly inside or wholly
// outside the matrix, and the edge tests stay per vec4. The host only picks
// them then.
//
// Every entry point loads the next slice from global memory into registers
// while it multiplies the current one (register prefetch), which hides the
// memory latency that two workgroups per SM cannot hide on their own.
//
// The shader is compiled without naga's runtime checks (ShaderInfo::trusted):
// every index below is in bounds by construction (the comments say why),
// and every element of workgroup memory that is read was written after the
// last barrier.
//
// Invocation (tx, ty) = local_invocation_id.xy owns, in a 128 tile, rows
// 4*ty..4*ty+3 and 64+4*ty..64+4*ty+3 and columns 4*tx..4*tx+3 and
// 64+4*tx..64+4*tx+3 (in a 64 tile: rows 4*ty.. and columns 4*tx..). Split
// this way, the 16 invocations of a half-warp read 16 consecutive vec4 of
// the b slice (no bank conflicts) and two vec4 of the a slice (broadcast).
// The accumulators are indexed only by constants (steps written out, not
// looped), so a driver keeps them in registers.

struct Dims {
    m: u32,
    k: u32,
    n: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

// vec4 views of the same bindings, for the v4 entry points. No entry point
// uses both a view and its scalar twin (naga and wgpu check bindings per
// entry point).
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c4: array<vec4<f32>>;

// Workgroup tiles, as vec4. The a slice is stored transposed, [depth][row],
// so that four consecutive rows are one vec4; each depth's row of 128 (or
// 64) floats is padded by 4 floats (one vec4), which spreads the transposed
// stores over the banks.
//
// `wa`/`wb` serve the 8.5 KiB entry points (mm128, mm128v4: [8][33] and
// [8][32]; mm64, mm64v4: [16][17] and [16][16]); `wa2`/`wb2` (16.25 KiB)
// serve mm128v4k16 ([16][33], [16][32]) and mm128v4db (two [8][33] and two
// [8][32]). Separate arrays keep the small entry points under the 16 KiB
// that WebGPU's default limits promise.
const A_ROW128: u32 = 33u;
const A_ROW64: u32 = 17u;
var<workgroup> wa: array<vec4<f32>, 272>;
var<workgroup> wb: array<vec4<f32>, 256>;
var<workgroup> wa2: array<vec4<f32>, 528>;
var<workgroup> wb2: array<vec4<f32>, 512>;

// ---- global loads -----------------------------------------------------------

// a at rows row..row+3, column kc; zeros outside the matrix.
fn gather_a(row: u32, kc: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if kc < dims.k {
        for (var i = 0u; i < 4u; i++) {
            // row + i < m, kc < k: the index is below m*k, a's length.
            if row + i < dims.m {
                v[i] = a[(row + i) * dims.k + kc];
            }
        }
    }
    return v;
}

// b at row kr, columns col..col+3; zeros outside the matrix.
fn gather_b(kr: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if kr < dims.k {
        let at = kr * dims.n + col;
        for (var i = 0u; i < 4u; i++) {
            // kr < k, col + i < n: the index is below k*n, b's length.
            if col + i < dims.n {
                v[i] = b[at + i];
            }
        }
    }
    return v;
}

// a at row `row`, columns kc..kc+3 (kc and k multiples of 4).
fn load_a4(row: u32, kc: u32) -> vec4<f32> {
    // row < m and kc < k give an index below m*k/4, a4's length.
    if row < dims.m && kc < dims.k {
        return a4[row * (dims.k / 4u) + kc / 4u];
    }
    return vec4<f32>(0.0);
}

// b at row kr, columns col..col+3 (col and n multiples of 4).
fn load_b4(kr: u32, col: u32) -> vec4<f32> {
    // kr < k and col < n give an index below k*n/4, b4's length.
    if kr < dims.k && col < dims.n {
        return b4[kr * (dims.n / 4u) + col / 4u];
    }
    return vec4<f32>(0.0);
}

// ---- transposed stores of a (4 depths of one row) ---------------------------

// Writes v, the depths kk..kk+3 of tile row r, into wa ([depth][row]).
// kk + 3 < 16 and r < 64 (a 64 tile) or kk + 3 < 8 and r < 128 (a 128
// tile) keep the index below 272.
fn put_a_t(stride: u32, kk: u32, r: u32, v: vec4<f32>) {
    let q = r / 4u;
    let e = r % 4u;
    wa[kk * stride + q][e] = v.x;
    wa[(kk + 1u) * stride + q][e] = v.y;
    wa[(kk + 2u) * stride + q][e] = v.z;
    wa[(kk + 3u) * stride + q][e] = v.w;
}

// The same into wa2 at `base` (a 128 tile: kk + 3 < 16, r < 128, base 0 or
// 264 with kk + 3 < 8: below 528).
fn put_a2_t(base: u32, kk: u32, r: u32, v: vec4<f32>) {
    let at = base + r / 4u;
    let e = r % 4u;
    wa2[at + kk * A_ROW128][e] = v.x;
    wa2[at + (kk + 1u) * A_ROW128][e] = v.y;
    wa2[at + (kk + 2u) * A_ROW128][e] = v.z;
    wa2[at + (kk + 3u) * A_ROW128][e] = v.w;
}

// ---- the multiply-adds --------------------------------------------------------

// One depth of an 8x8 block: rows a0 (4*ty..) and a1 (64+4*ty..) times
// columns b0 (4*tx..) and b1 (64+4*tx..). acc[2*i + j]: row i of the eight,
// column group j.
fn fma8x8(acc: ptr<function, array<vec4<f32>, 16>>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc)[0] = fma(vec4<f32>(a0.x), b0, (*acc)[0]);
    (*acc)[1] = fma(vec4<f32>(a0.x), b1, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(a0.y), b0, (*acc)[2]);
    (*acc)[3] = fma(vec4<f32>(a0.y), b1, (*acc)[3]);
    (*acc)[4] = fma(vec4<f32>(a0.z), b0, (*acc)[4]);
    (*acc)[5] = fma(vec4<f32>(a0.z), b1, (*acc)[5]);
    (*acc)[6] = fma(vec4<f32>(a0.w), b0, (*acc)[6]);
    (*acc)[7] = fma(vec4<f32>(a0.w), b1, (*acc)[7]);
    (*acc)[8] = fma(vec4<f32>(a1.x), b0, (*acc)[8]);
    (*acc)[9] = fma(vec4<f32>(a1.x), b1, (*acc)[9]);
    (*acc)[10] = fma(vec4<f32>(a1.y), b0, (*acc)[10]);
    (*acc)[11] = fma(vec4<f32>(a1.y), b1, (*acc)[11]);
    (*acc)[12] = fma(vec4<f32>(a1.z), b0, (*acc)[12]);
    (*acc)[13] = fma(vec4<f32>(a1.z), b1, (*acc)[13]);
    (*acc)[14] = fma(vec4<f32>(a1.w), b0, (*acc)[14]);
    (*acc)[15] = fma(vec4<f32>(a1.w), b1, (*acc)[15]);
}

// One depth of a 4x4 block: rows a (4*ty..) times columns b (4*tx..).
fn fma4x4(acc: ptr<function, array<vec4<f32>, 4>>, av: vec4<f32>, bv: vec4<f32>) {
    (*acc)[0] = fma(vec4<f32>(av.x), bv, (*acc)[0]);
    (*acc)[1] = fma(vec4<f32>(av.y), bv, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(av.z), bv, (*acc)[2]);
    (*acc)[3] = fma(vec4<f32>(av.w), bv, (*acc)[3]);
}

// The slice in wa/wb (a 128 tile, 8 deep) into an 8x8 block.
fn slice128(acc: ptr<function, array<vec4<f32>, 16>>, tx: u32, ty: u32) {
    for (var kk = 0u; kk < 8u; kk++) {
        // kk < 8, ty, tx < 16: at most 7*33 + 31 < 272 and 7*32 + 31 < 256.
        let ao = kk * A_ROW128 + ty;
        let bo = kk * 32u + tx;
        fma8x8(acc, wa[ao], wa[ao + 16u], wb[bo], wb[bo + 16u]);
    }
}

// The slice of `depth` in wa2/wb2 from abase/bbase (a 128 tile) into an
// 8x8 block. abase + depth*33 <= 528 and bbase + depth*32 <= 512.
fn slice128_2(acc: ptr<function, array<vec4<f32>, 16>>, abase: u32, bbase: u32, depth: u32, tx: u32, ty: u32) {
    for (var kk = 0u; kk < depth; kk++) {
        let ao = abase + kk * A_ROW128 + ty;
        let bo = bbase + kk * 32u + tx;
        fma8x8(acc, wa2[ao], wa2[ao + 16u], wb2[bo], wb2[bo + 16u]);
    }
}

// The slice in wa/wb (a 64 tile, 16 deep) into a 4x4 block.
fn slice64(acc: ptr<function, array<vec4<f32>, 4>>, tx: u32, ty: u32) {
    for (var kk = 0u; kk < 16u; kk++) {
        // kk, ty, tx < 16: at most 15*17 + 15 < 272 and 15*16 + 15 < 256.
        fma4x4(acc, wa[kk * A_ROW64 + ty], wb[kk * 16u + tx]);
    }
}

// ---- stores of c ----------------------------------------------------------------

// v at row r, columns col..col+3 of c, skipping what lies outside.
fn store4(r: u32, col: u32, v: vec4<f32>) {
    if r >= dims.m {
        return;
    }
    // r < m and col + i < n: the index is below m*n, c's length.
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

// v at row r, columns col..col+3 of c as one vec4 (col and n multiples of 4).
fn store4v(r: u32, col: u32, v: vec4<f32>) {
    // r < m and col < n give an index below m*n/4, c4's length.
    if r < dims.m && col < dims.n {
        c4[r * (dims.n / 4u) + col / 4u] = v;
    }
}

// An 8x8 block (see fma8x8) whose first row is r and first column col.
fn store8x8(r: u32, col: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    let c1 = col + 64u;
    let r1 = r + 64u;
    store4(r, col, (*acc)[0]);
    store4(r, c1, (*acc)[1]);
    store4(r + 1u, col, (*acc)[2]);
    store4(r + 1u, c1, (*acc)[3]);
    store4(r + 2u, col, (*acc)[4]);
    store4(r + 2u, c1, (*acc)[5]);
    store4(r + 3u, col, (*acc)[6]);
    store4(r + 3u, c1, (*acc)[7]);
    store4(r1, col, (*acc)[8]);
    store4(r1, c1, (*acc)[9]);
    store4(r1 + 1u, col, (*acc)[10]);
    store4(r1 + 1u, c1, (*acc)[11]);
    store4(r1 + 2u, col, (*acc)[12]);
    store4(r1 + 2u, c1, (*acc)[13]);
    store4(r1 + 3u, col, (*acc)[14]);
    store4(r1 + 3u, c1, (*acc)[15]);
}

// The same with vec4 stores.
fn store8x8v(r: u32, col: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    let c1 = col + 64u;
    let r1 = r + 64u;
    store4v(r, col, (*acc)[0]);
    store4v(r, c1, (*acc)[1]);
    store4v(r + 1u, col, (*acc)[2]);
    store4v(r + 1u, c1, (*acc)[3]);
    store4v(r + 2u, col, (*acc)[4]);
    store4v(r + 2u, c1, (*acc)[5]);
    store4v(r + 3u, col, (*acc)[6]);
    store4v(r + 3u, c1, (*acc)[7]);
    store4v(r1, col, (*acc)[8]);
    store4v(r1, c1, (*acc)[9]);
    store4v(r1 + 1u, col, (*acc)[10]);
    store4v(r1 + 1u, c1, (*acc)[11]);
    store4v(r1 + 2u, col, (*acc)[12]);
    store4v(r1 + 2u, c1, (*acc)[13]);
    store4v(r1 + 3u, col, (*acc)[14]);
    store4v(r1 + 3u, c1, (*acc)[15]);
}

// ---- entry points ---------------------------------------------------------------

// 128x128 tile, BK 8, any shape. Per slice, invocation li gathers rows
// 4*(li/8).. of a at depth li%8 and columns 4*(li%32).. of b at depth li/32:
// one vec4 of each tile (8 depths x 32 vec4 = 256).
@compute @workgroup_size(16, 16, 1)
fn mm128(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    let ak = li % 8u;
    let ap = li / 8u;
    let bk = li / 32u;
    let bq = li % 32u;
    var acc: array<vec4<f32>, 16>;
    var pa = gather_a(row0 + 4u * ap, ak);
    var pb = gather_b(bk, col0 + 4u * bq);
    for (var t = 0u; t < dims.k; t += 8u) {
        // ak < 8, ap < 32: below 8*33; bk < 8, bq < 32: below 256.
        wa[ak * A_ROW128 + ap] = pa;
        wb[bk * 32u + bq] = pb;
        workgroupBarrier();
        if t + 8u < dims.k {
            pa = gather_a(row0 + 4u * ap, t + 8u + ak);
            pb = gather_b(t + 8u + bk, col0 + 4u * bq);
        }
        slice128(&acc, lid.x, lid.y);
        workgroupBarrier();
    }
    store8x8(row0 + 4u * lid.y, col0 + 4u * lid.x, &acc);
}

// 64x64 tile, BK 16, 4x4 per invocation, any shape: four times the
// workgroups of mm128, for shapes too small to fill the GPU with 128 tiles.
// Invocation li gathers rows 4*(li/16).. of a at depth li%16 and columns
// 4*(li%16).. of b at depth li/16.
@compute @workgroup_size(16, 16, 1)
fn mm64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let ak = li % 16u;
    let ap = li / 16u;
    let bk = li / 16u;
    let bq = li % 16u;
    var acc: array<vec4<f32>, 4>;
    var pa = gather_a(row0 + 4u * ap, ak);
    var pb = gather_b(bk, col0 + 4u * bq);
    for (var t = 0u; t < dims.k; t += 16u) {
        // ak < 16, ap < 16: below 16*17; bk, bq < 16: below 256.
        wa[ak * A_ROW64 + ap] = pa;
        wb[bk * 16u + bq] = pb;
        workgroupBarrier();
        if t + 16u < dims.k {
            pa = gather_a(row0 + 4u * ap, t + 16u + ak);
            pb = gather_b(t + 16u + bk, col0 + 4u * bq);
        }
        slice64(&acc, lid.x, lid.y);
        workgroupBarrier();
    }
    let r = row0 + 4u * lid.y;
    let col = col0 + 4u * lid.x;
    store4(r, col, acc[0]);
    store4(r + 1u, col, acc[1]);
    store4(r + 2u, col, acc[2]);
    store4(r + 3u, col, acc[3]);
}

// 128x128 tile, BK 8, k and n multiples of 4. Invocation li loads row li/2
// of a at depths 4*(li%2).. (two invocations read 32 contiguous bytes of a
// row) and row li/32 of b at columns 4*(li%32)..
@compute @workgroup_size(16, 16, 1)
fn mm128v4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    let ar = li / 2u;
    let ak = 4u * (li % 2u);
    let bk = li / 32u;
    let bq = li % 32u;
    var acc: array<vec4<f32>, 16>;
    var pa = load_a4(row0 + ar, ak);
    var pb = load_b4(bk, col0 + 4u * bq);
    for (var t = 0u; t < dims.k; t += 8u) {
        // ak + 3 < 8, ar < 128; bk < 8, bq < 32.
        put_a_t(A_ROW128, ak, ar, pa);
        wb[bk * 32u + bq] = pb;
        workgroupBarrier();
        if t + 8u < dims.k {
            pa = load_a4(row0 + ar, t + 8u + ak);
            pb = load_b4(t + 8u + bk, col0 + 4u * bq);
        }
        slice128(&acc, lid.x, lid.y);
        workgroupBarrier();
    }
    store8x8v(row0 + 4u * lid.y, col0 + 4u * lid.x, &acc);
}

// 128x128 tile, BK 16, k and n multiples of 4: twice the work between
// barriers. Invocation li loads rows li/4 and 64+li/4 of a at depths
// 4*(li%4).., and rows li/32 and 8+li/32 of b at columns 4*(li%32)..
@compute @workgroup_size(16, 16, 1)
fn mm128v4k16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    let ar = li / 4u;
    let ak = 4u * (li % 4u);
    let bk = li / 32u;
    let bq = li % 32u;
    var acc: array<vec4<f32>, 16>;
    var pa0 = load_a4(row0 + ar, ak);
    var pa1 = load_a4(row0 + ar + 64u, ak);
    var pb0 = load_b4(bk, col0 + 4u * bq);
    var pb1 = load_b4(bk + 8u, col0 + 4u * bq);
    for (var t = 0u; t < dims.k; t += 16u) {
        // ak + 3 < 16, ar + 64 < 128: below 16*33; bk + 8 < 16, bq < 32.
        put_a2_t(0u, ak, ar, pa0);
        put_a2_t(0u, ak, ar + 64u, pa1);
        wb2[bk * 32u + bq] = pb0;
        wb2[(bk + 8u) * 32u + bq] = pb1;
        workgroupBarrier();
        if t + 16u < dims.k {
            pa0 = load_a4(row0 + ar, t + 16u + ak);
            pa1 = load_a4(row0 + ar + 64u, t + 16u + ak);
            pb0 = load_b4(t + 16u + bk, col0 + 4u * bq);
            pb1 = load_b4(t + 24u + bk, col0 + 4u * bq);
        }
        slice128_2(&acc, 0u, 0u, 16u, lid.x, lid.y);
        workgroupBarrier();
    }
    store8x8v(row0 + 4u * lid.y, col0 + 4u * lid.x, &acc);
}

// 128x128 tile, BK 8, k and n multiples of 4, with two buffers per tile:
// while the workgroup multiplies the slice in one, the next slice goes into
// the other, so one barrier per slice suffices. Loads as mm128v4.
@compute @workgroup_size(16, 16, 1)
fn mm128v4db(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    let ar = li / 2u;
    let ak = 4u * (li % 2u);
    let bk = li / 32u;
    let bq = li % 32u;
    var acc: array<vec4<f32>, 16>;
    var pa = load_a4(row0 + ar, ak);
    var pb = load_b4(bk, col0 + 4u * bq);
    // Buffer 0 of a is wa2[0..264), buffer 1 wa2[264..528); of b,
    // wb2[0..256) and wb2[256..512).
    put_a2_t(0u, ak, ar, pa);
    wb2[bk * 32u + bq] = pb;
    workgroupBarrier();
    var cur = 0u;
    for (var t = 0u; t < dims.k; t += 8u) {
        let more = t + 8u < dims.k;
        if more {
            pa = load_a4(row0 + ar, t + 8u + ak);
            pb = load_b4(t + 8u + bk, col0 + 4u * bq);
        }
        // cur is 0 or 1: offsets 0 or 264 (a), 0 or 256 (b).
        slice128_2(&acc, cur * 264u, cur * 256u, 8u, lid.x, lid.y);
        // The other buffer was last read before the previous barrier.
        if more {
            let next = 1u - cur;
            put_a2_t(next * 264u, ak, ar, pa);
            wb2[next * 256u + bk * 32u + bq] = pb;
        }
        workgroupBarrier();
        cur = 1u - cur;
    }
    store8x8v(row0 + 4u * lid.y, col0 + 4u * lid.x, &acc);
}

// 64x64 tile, BK 16, 4x4 per invocation, k and n multiples of 4.
// Invocation li loads row li/4 of a at depths 4*(li%4).. and row li/16 of b
// at columns 4*(li%16)..
@compute @workgroup_size(16, 16, 1)
fn mm64v4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let ar = li / 4u;
    let ak = 4u * (li % 4u);
    let bk = li / 16u;
    let bq = li % 16u;
    var acc: array<vec4<f32>, 4>;
    var pa = load_a4(row0 + ar, ak);
    var pb = load_b4(bk, col0 + 4u * bq);
    for (var t = 0u; t < dims.k; t += 16u) {
        // ak + 3 < 16, ar < 64: below 16*17; bk, bq < 16: below 256.
        put_a_t(A_ROW64, ak, ar, pa);
        wb[bk * 16u + bq] = pb;
        workgroupBarrier();
        if t + 16u < dims.k {
            pa = load_a4(row0 + ar, t + 16u + ak);
            pb = load_b4(t + 16u + bk, col0 + 4u * bq);
        }
        slice64(&acc, lid.x, lid.y);
        workgroupBarrier();
    }
    let r = row0 + 4u * lid.y;
    let col = col0 + 4u * lid.x;
    store4v(r, col, acc[0]);
    store4v(r + 1u, col, acc[1]);
    store4v(r + 2u, col, acc[2]);
    store4v(r + 3u, col, acc[3]);
}

// scan: prefix sums of u32 words read as u32 (wrapping; i32 adds the same
// bits) or f32, in place, by reduce-then-scan: no workgroup ever waits for
// another, so it needs no forward-progress guarantee (llvmpipe gives none).
//
// The host runs three dispatches per chunk of `data`:
//   1. tile_sums: one workgroup per tile of TILE elements writes the tile's
//      sum to sums[1 + tile];
//   2. scan_sums: one workgroup turns sums[1 ..= tiles] into exclusive
//      prefix sums starting from the carry in sums[0] (what the chunks
//      before summed to), and leaves the new carry in sums[0];
//   3. scan_tiles: one workgroup per tile scans it from sums[1 + tile].
//
// Tiles move through workgroup memory so that global loads and stores are
// coalesced (invocation t touches element j * WG + t) while each invocation
// scans ITEMS consecutive elements (t * ITEMS + j).
//
// Trusted (no runtime checks, workgroup memory not zeroed): every global
// index is compared with n (or tiles) first, every workgroup slot is
// written before it is read, and each entry point touches only slots below
// TILE and WG.

override DTYPE: u32 = 0u;  // 0 wrapping u32/i32, 1 f32

struct Params {
    // Elements in this chunk.
    n: u32,
    // Tiles in this chunk: ceil(n / TILE).
    tiles: u32,
    // 1: out[i] includes x[i].
    inclusive: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> sums: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;
const ITEMS: u32 = 8u;  // also in kernel/scan.rs
const TILE: u32 = 2048u;  // WG * ITEMS

var<workgroup> tile: array<u32, TILE>;
var<workgroup> lanes: array<u32, WG>;

fn add(a: u32, b: u32) -> u32 {
    if DTYPE == 1u {
        return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b));
    }
    return a + b;
}

// Inclusive scan of one value per invocation; leaves the result in
// lanes[lid] for every invocation to read (after the final barrier).
fn scan_lanes(lid: u32, v: u32) {
    lanes[lid] = v;
    workgroupBarrier();
    var x = v;
    for (var off = 1u; off < WG; off <<= 1u) {
        var before = x;
        if lid >= off {
            before = add(lanes[lid - off], x);
        }
        workgroupBarrier();
        x = before;
        lanes[lid] = x;
        workgroupBarrier();
    }
}

// Scans the first `count` elements of `tile` (up to TILE) from `offset`,
// exclusive or inclusive; returns their total (the same in every
// invocation). Starts and ends with a barrier.
fn scan_tile(lid: u32, count: u32, offset: u32, inclusive: bool) -> u32 {
    workgroupBarrier();
    let first = lid * ITEMS;
    var own = array<u32, ITEMS>();
    var total = 0u;
    for (var j = 0u; j < ITEMS; j++) {
        var v = 0u;
        if first + j < count {
            v = tile[first + j];
        }
        own[j] = v;
        total = add(total, v);
    }
    scan_lanes(lid, total);
    var run = offset;
    if lid > 0u {
        run = add(offset, lanes[lid - 1u]);
    }
    let sum = lanes[WG - 1u];
    for (var j = 0u; j < ITEMS; j++) {
        let next = add(run, own[j]);
        if first + j < count {
            tile[first + j] = select(run, next, inclusive);
        }
        run = next;
    }
    workgroupBarrier();
    return sum;
}

@compute @workgroup_size(256)
fn tile_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.x * TILE;
    var total = 0u;
    for (var j = 0u; j < ITEMS; j++) {
        let i = base + j * WG + lid;
        if i < params.n {
            total = add(total, data[i]);
        }
    }
    scan_lanes(lid, total);
    if lid == 0u {
        sums[1u + wid.x] = lanes[WG - 1u];
    }
}

@compute @workgroup_size(256)
fn scan_sums(@builtin(local_invocation_index) lid: u32) {
    // The data is the tiles' business; this binding is declared so that
    // all three entry points share one bind group layout.
    _ = &data;
    let tiles = params.tiles;
    var carry = sums[0];
    for (var base = 0u; base < tiles; base += TILE) {
        let count = min(TILE, tiles - base);
        for (var j = 0u; j < ITEMS; j++) {
            let k = j * WG + lid;
            if k < count {
                tile[k] = sums[1u + base + k];
            }
        }
        let sum = scan_tile(lid, count, carry, false);
        for (var j = 0u; j < ITEMS; j++) {
            let k = j * WG + lid;
            if k < count {
                sums[1u + base + k] = tile[k];
            }
        }
        carry = add(carry, sum);
    }
    // Every invocation has read sums[0] before any writes it.
    storageBarrier();
    workgroupBarrier();
    if lid == 0u {
        sums[0] = carry;
    }
}

@compute @workgroup_size(256)
fn scan_tiles(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.x * TILE;
    let count = min(TILE, params.n - base);
    for (var j = 0u; j < ITEMS; j++) {
        let k = j * WG + lid;
        if k < count {
            tile[k] = data[base + k];
        }
    }
    scan_tile(lid, count, sums[1u + wid.x], params.inclusive == 1u);
    for (var j = 0u; j < ITEMS; j++) {
        let k = j * WG + lid;
        if k < count {
            data[base + k] = tile[k];
        }
    }
}

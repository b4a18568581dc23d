// sort: one pass of an LSD radix sort of u32 order bits on a 4-bit digit
// (bits `shift` .. shift + 4), moving an optional u32 payload with them.
// Stable, and no workgroup waits for another (no forward-progress
// assumption, which llvmpipe does not meet):
//   1. count: each tile of TILE keys counts its digits into
//      counts[digit * tiles + tile] (digit-major, so that one exclusive scan
//      of `counts` gives every tile its first place in every digit's run);
//      it also clears carry[0], the scan's carry-in;
//   2. the host scans `counts` in place with the scan kernel's shader;
//   3. scatter: each tile writes its keys to those places, in input order
//      within each digit: invocation t holds keys t * ITEMS .. + ITEMS of
//      the tile, and its place among equal digits is the count of them in
//      the invocations before it (a workgroup scan of 16 counters packed
//      two to a u32) plus those before it in its own keys.
//
// All entry points declare every binding, so they share one bind group
// layout. Trusted (no runtime checks, workgroup memory not zeroed): global
// indices are below n (keys, payload) or below RADIX * tiles (counts), the
// places a scatter writes are below n (the scan of counts that sum to n),
// and workgroup memory is written before it is read.

struct Params {
    // Keys.
    n: u32,
    // Tiles: ceil(n / TILE).
    tiles: u32,
    // The digit's lowest bit.
    shift: u32,
    // 1: move payload_in to payload_out with the keys.
    has_payload: u32,
}

@group(0) @binding(0) var<storage, read> keys_in: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> carry: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys_out: array<u32>;
@group(0) @binding(4) var<storage, read> payload_in: array<u32>;
@group(0) @binding(5) var<storage, read_write> payload_out: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;

const WG: u32 = 256u;
const ITEMS: u32 = 8u;  // also in kernel/sort.rs
const TILE: u32 = 2048u;  // WG * ITEMS
const RADIX: u32 = 16u;  // 2^4, GPU_DIGIT_BITS in kernel/sort.rs
// Sixteen 16-bit counters, two to a u32 (a tile's count fits 16 bits).
const PACKED: u32 = 8u;

var<workgroup> tile_count: array<atomic<u32>, RADIX>;
var<workgroup> lanes: array<array<u32, PACKED>, WG>;
var<workgroup> starts: array<u32, RADIX>;

fn digit(key: u32) -> u32 {
    return (key >> params.shift) & (RADIX - 1u);
}

@compute @workgroup_size(256)
fn count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    _ = &keys_out;
    _ = &payload_in;
    _ = &payload_out;
    if lid < RADIX {
        atomicStore(&tile_count[lid], 0u);
    }
    if wid.x == 0u && lid == 0u {
        carry[0] = 0u;
    }
    workgroupBarrier();
    let base = wid.x * TILE;
    for (var j = 0u; j < ITEMS; j++) {
        let i = base + j * WG + lid;
        if i < params.n {
            atomicAdd(&tile_count[digit(keys_in[i])], 1u);
        }
    }
    workgroupBarrier();
    if lid < RADIX {
        counts[lid * params.tiles + wid.x] = atomicLoad(&tile_count[lid]);
    }
}

@compute @workgroup_size(256)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    _ = &carry;
    let first = wid.x * TILE + lid * ITEMS;
    var keys = array<u32, ITEMS>();
    var digits = array<u32, ITEMS>();
    var own = array<u32, PACKED>();
    for (var j = 0u; j < ITEMS; j++) {
        let i = first + j;
        if i < params.n {
            let d = digit(keys_in[i]);
            keys[j] = keys_in[i];
            digits[j] = d;
            own[d >> 1u] += 1u << ((d & 1u) * 16u);
        }
    }
    if lid < RADIX {
        starts[lid] = counts[lid * params.tiles + wid.x];
    }
    // Inclusive scan of the packed counters over the invocations.
    var run = own;
    lanes[lid] = run;
    workgroupBarrier();
    for (var off = 1u; off < WG; off <<= 1u) {
        var next = run;
        if lid >= off {
            let before = lanes[lid - off];
            for (var e = 0u; e < PACKED; e++) {
                next[e] = before[e] + run[e];
            }
        }
        workgroupBarrier();
        run = next;
        lanes[lid] = run;
        workgroupBarrier();
    }
    // Exclusive: the counts in the invocations before this one.
    for (var e = 0u; e < PACKED; e++) {
        run[e] -= own[e];
    }
    for (var j = 0u; j < ITEMS; j++) {
        let i = first + j;
        if i < params.n {
            let d = digits[j];
            let field = (d & 1u) * 16u;
            let place = starts[d] + ((run[d >> 1u] >> field) & 0xffffu);
            keys_out[place] = keys[j];
            if params.has_payload == 1u {
                payload_out[place] = payload_in[i];
            }
            run[d >> 1u] += 1u << field;
        }
    }
}

//! Dispatch grids and chunk sizes that respect the device's limits.
//!
//! A dispatch holds at most `max_compute_workgroups_per_dimension` (65,535
//! on most devices) workgroups per dimension: one-dimensional kernels run a
//! capped grid with grid-stride loops, so they never need more.

/// Groups of `workgroup` invocations needed for `items` items.
pub fn groups_for(items: usize, workgroup: u32) -> u32 {
    u32::try_from(items.div_ceil(workgroup as usize)).expect("chunks are sized to fit u32 groups")
}

/// vec4 each invocation of a streaming kernel (`axpy`, `reduce`'s wide
/// pass, the bandwidth copy) handles per iteration of its grid-stride loop:
/// `UNROLL` in their shaders.
const STREAM_UNROLL: usize = 4;

/// Workgroups of `workgroup` invocations a streaming kernel needs to cover
/// `elements` 4-byte elements in one sweep of its loop (before any cap).
pub fn stream_groups_for(elements: usize, workgroup: u32) -> u32 {
    groups_for(elements, workgroup * (STREAM_UNROLL * 4) as u32)
}

/// Bytes bound for `elements` 4-byte elements by a kernel that reads them
/// as whole vec4.
pub fn vec4_bytes(elements: usize) -> u64 {
    (elements.div_ceil(4) * 16) as u64
}

/// Start and length of each chunk of `total` items, at most `chunk` each.
pub fn chunks(total: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    assert!(chunk > 0, "chunk size must be positive");
    (0..total)
        .step_by(chunk)
        .map(move |start| (start, chunk.min(total - start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_range() {
        for (total, chunk) in [(0, 5), (1, 5), (10, 5), (11, 5), (4, 5)] {
            let parts: Vec<_> = chunks(total, chunk).collect();
            assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), total);
            for w in parts.windows(2) {
                assert_eq!(w[0].0 + w[0].1, w[1].0);
            }
            assert!(parts.iter().all(|p| p.1 > 0 && p.1 <= chunk));
        }
    }
}

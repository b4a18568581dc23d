//! Dispatch grids and chunk sizes that respect the device's limits.
//!
//! A dispatch holds at most `max_compute_workgroups_per_dimension` (65,535
//! on most devices) workgroups per dimension, so one-dimensional work with
//! more groups than that is spread over x and y; shaders linearise the id as
//! `gid.y * num_workgroups.x * WORKGROUP + gid.x`.

/// Workgroup counts (x, y) covering `groups` groups, x filled first.
pub fn spread(groups: u32, max_per_dim: u32) -> (u32, u32) {
    if groups <= max_per_dim {
        (groups, 1)
    } else {
        (max_per_dim, groups.div_ceil(max_per_dim))
    }
}

/// Groups of `workgroup` invocations needed for `items` items.
pub fn groups_for(items: usize, workgroup: u32) -> u32 {
    u32::try_from(items.div_ceil(workgroup as usize)).expect("chunks are sized to fit u32 groups")
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
    fn spread_covers_every_group_within_limits() {
        for groups in [0, 1, 65_535, 65_536, 131_071, 1_000_000, u32::MAX / 2] {
            let (x, y) = spread(groups, 65_535);
            assert!(x <= 65_535 && y <= 65_535, "{groups}: {x}×{y}");
            assert!(
                u64::from(x) * u64::from(y) >= u64::from(groups),
                "{groups}: {x}×{y}"
            );
            // No wasted row of groups.
            assert!(u64::from(x) * u64::from(y.saturating_sub(1)) < u64::from(groups.max(1)));
        }
    }

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

//! The CPU's counting for `histogram`: which bin each value lands in, and
//! the counting itself.
//!
//! A value's bin is estimated from its distance to the first edge and then
//! settled against the edges ([`Binning::settle`]), which makes the result
//! exactly the bin the edges define. Settling costs one or two dependent
//! loads and compares per value, which kept the counting at 1.6 GB/s per
//! thread. Most estimates need no settling: when the estimate's fraction
//! lies far enough from a whole number, no rounding of the estimate or of
//! the edges can move the value across an edge ([`Binning::new`] bounds
//! both). So values are binned sixteen at a time by arithmetic alone
//! ([`Binning::bin_block`], compiled for the widest vector unit the CPU
//! has), and only the few near an edge are settled one by one. The bins
//! are then counted into four interleaved sets of counters, so that two
//! nearby values in one bin do not wait on each other's increment.

/// Values binned at a time before they are counted (a stack buffer).
const BLOCK: usize = 2048;

/// Values binned by arithmetic together; a group with a value near an edge
/// settles that value alone.
const GROUP: usize = 16;

/// Sets of counters counted into in turn. Four hide the latency of one
/// increment behind the next three; more did not help (8: slower).
const SETS: usize = 4;

/// Above this many bins, one set of counters: four would leave the cache.
const MAX_SET_BINS: usize = 4096;

/// Sets of counters a task keeps for `bins` bins.
pub(super) fn counter_sets(bins: usize) -> usize {
    if bins <= MAX_SET_BINS { SETS } else { 1 }
}

/// The values' bins, from the edges.
pub(super) struct Binning<'a> {
    /// `bins + 1` ascending f32 edges.
    edges: &'a [f32],
    /// Bins per unit of half the distance from the first edge.
    scale: f32,
    /// How far from a whole number (in bins) an estimate's fraction must be
    /// for the estimate to be the bin; `None`: every value is settled.
    sure: Option<f32>,
}

impl<'a> Binning<'a> {
    /// Binning over `edges` (finite, strictly increasing, at least two),
    /// estimating with `scale` (`2·bins / (e[bins] − e[0])` in f32).
    ///
    /// The estimate is `f = (v·½ − e[0]·½)·scale` in f32. Against the
    /// exact position `(v − e[0])·bins / W` (W = `e[bins] − e[0]`) it is off
    /// by at most three f32 roundings of a number ≤ bins, plus the halving
    /// of a subnormal: `Ef = 3.01·2⁻²⁴·bins + 2⁻¹⁴⁸·scale`. Each edge is
    /// within `U` of where exact arithmetic would put it, U = half an ulp of
    /// the largest edge plus the f32 error of NumPy's `linspace` (`3.01·2⁻²⁴·W`;
    /// its f64 form is more exact); measured from `e[0]` and scaled by W, that
    /// puts edge k within `Ee = 4·U·bins / W` of k. So when the fraction of f
    /// is at least `Ef + Ee` from a whole number, f's whole part is the bin;
    /// the margin kept is twice that, plus 2⁻²⁰ (which also covers two terms
    /// left out above, each below 2⁻²² of a bin: a subnormal `scale`, for
    /// ranges near ±f32::MAX in two or three bins, and a subnormal f32 step
    /// in NumPy's default-range edges). Ranges where the margin would pass a
    /// quarter of a bin (millions of bins, or a narrow range far from 0)
    /// settle every value.
    pub(super) fn new(edges: &'a [f32], scale: f32) -> Self {
        let bins = (edges.len() - 1) as f64;
        let (first, last) = (f64::from(edges[0]), f64::from(edges[edges.len() - 1]));
        let width = last - first;
        let largest = first.abs().max(last.abs());
        let ulp_half = largest * 2f64.powi(-24) + 2f64.powi(-150);
        let u = ulp_half + 3.01 * 2f64.powi(-24) * width + largest * 2f64.powi(-48);
        let edge_error = 4.0 * u * bins / width;
        let estimate_error = 3.01 * 2f64.powi(-24) * bins + 2f64.powi(-148) * f64::from(scale);
        let margin = 2.0 * (edge_error + estimate_error) + 2f64.powi(-20);
        let sure = (scale.is_finite() && scale > 0.0 && margin < 0.25).then_some(margin as f32);
        Binning {
            edges,
            scale,
            sure,
        }
    }

    /// Number of bins.
    fn bins(&self) -> usize {
        self.edges.len() - 1
    }

    /// The estimate of v's bin (in bins from the first edge, as a real
    /// number): halves, so that the distance never overflows.
    #[inline(always)]
    fn estimate(&self, v: f32) -> f32 {
        (v * 0.5 - self.edges[0] * 0.5) * self.scale
    }

    /// The bin of `v`, or `bins` when it is not counted (NaN, or outside
    /// the edges): the estimate settled against the edges (it may be a bin
    /// off near an edge, more with millions of bins).
    #[inline(always)]
    pub(super) fn settle(&self, v: f32) -> usize {
        let e = self.edges;
        let last = e.len() - 2;
        // NaN fails both comparisons.
        if !(v >= e[0] && v <= e[last + 1]) {
            return last + 1;
        }
        if !self.scale.is_finite() {
            // A range narrower than f32 can scale ([0, 1e-38] in a million
            // bins): no estimate, so a search (walking from the top took
            // 4.4 s for 20,000 values).
            return e.partition_point(|&edge| edge <= v).saturating_sub(1).min(last);
        }
        // Not negative (v ≥ e[0]), within a bin or two of the true one (at
        // most 2^24 bins, f32 rounding); `as` saturates.
        let mut i = (self.estimate(v) as u32 as usize).min(last);
        if v < e[i] {
            // Stops at 0 at the latest: v ≥ e[0].
            i -= 1;
            while v < e[i] {
                i -= 1;
            }
        } else if i < last && v >= e[i + 1] {
            i += 1;
            while i < last && v >= e[i + 1] {
                i += 1;
            }
        }
        i
    }

    /// Writes the bin of each value of `x` into `out` (as long), `bins`
    /// for a value not counted. Written so that the compiler vectorises
    /// each group; inlined into [`Binning::bin_block_fast`]'s versions.
    #[inline(always)]
    fn bin_block(&self, x: &[f32], out: &mut [u32]) {
        let Some(sure) = self.sure else {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = self.settle(v) as u32;
            }
            return;
        };
        let bins = self.bins() as u32;
        let (lo, hi, top) = (self.edges[0], self.edges[bins as usize], bins as f32);
        let mut xs = x.chunks_exact(GROUP);
        let mut outs = out.chunks_exact_mut(GROUP);
        for (x, out) in (&mut xs).zip(&mut outs) {
            let x: &[f32; GROUP] = x.try_into().expect("chunks_exact");
            let out: &mut [u32; GROUP] = out.try_into().expect("chunks_exact");
            let mut near_edge = [false; GROUP];
            for l in 0..GROUP {
                let v = x[l];
                let counted = v >= lo && v <= hi;
                // In [0, bins] and never NaN (`max` drops a NaN).
                let f = self.estimate(v).max(0.0).min(top);
                // SAFETY: f is finite and in [0, 2^24].
                let whole = unsafe { f.to_int_unchecked::<i32>() } as u32;
                let fraction = f - whole as f32;
                let sure_bin = whole < bins && fraction >= sure && fraction <= 1.0 - sure;
                near_edge[l] = counted && !sure_bin;
                out[l] = if counted { whole } else { bins };
            }
            if near_edge.iter().fold(false, |a, &b| a | b) {
                for l in 0..GROUP {
                    if near_edge[l] {
                        out[l] = self.settle(x[l]) as u32;
                    }
                }
            }
        }
        for (o, &v) in outs.into_remainder().iter_mut().zip(xs.remainder()) {
            *o = self.settle(v) as u32;
        }
    }

    /// [`Binning::bin_block`] compiled for the widest vector unit the CPU
    /// has (AVX-512 bins sixteen values in one instruction stream; the
    /// baseline x86-64 build has only SSE2).
    fn bin_block_fast(&self, x: &[f32], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512dq") && has!("avx512bw") && has!("avx512vl") {
                #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
                fn wide(b: &Binning, x: &[f32], out: &mut [u32]) {
                    b.bin_block(x, out)
                }
                // SAFETY: the CPU has these features.
                return unsafe { wide(self, x, out) };
            }
            if has!("avx2") && has!("fma") {
                #[target_feature(enable = "avx2,fma")]
                fn wide(b: &Binning, x: &[f32], out: &mut [u32]) {
                    b.bin_block(x, out)
                }
                // SAFETY: the CPU has these features.
                return unsafe { wide(self, x, out) };
            }
        }
        self.bin_block(x, out)
    }

    /// Fresh counters for [`Binning::count`]: `bins + 1` per set (the last
    /// counts the values not counted).
    pub(super) fn counters(&self) -> Vec<u32> {
        vec![0; self.sets() * (self.bins() + 1)]
    }

    fn sets(&self) -> usize {
        counter_sets(self.bins())
    }

    /// Adds the bins of `x`'s values to `counters` (from
    /// [`Binning::counters`]).
    pub(super) fn count(&self, x: &[f32], counters: &mut [u32]) {
        let width = self.bins() + 1;
        let mut bins = [0u32; BLOCK];
        for x in x.chunks(BLOCK) {
            let bins = &mut bins[..x.len()];
            self.bin_block_fast(x, bins);
            if self.sets() == SETS {
                let (c0, rest) = counters.split_at_mut(width);
                let (c1, rest) = rest.split_at_mut(width);
                let (c2, c3) = rest.split_at_mut(width);
                let mut quads = bins.chunks_exact(SETS);
                for q in &mut quads {
                    c0[q[0] as usize] += 1;
                    c1[q[1] as usize] += 1;
                    c2[q[2] as usize] += 1;
                    c3[q[3] as usize] += 1;
                }
                for &b in quads.remainder() {
                    c0[b as usize] += 1;
                }
            } else {
                for &b in bins.iter() {
                    counters[b as usize] += 1;
                }
            }
        }
    }

    /// The counts per bin from [`Binning::count`]'s counters (each set's
    /// added up; the values not counted dropped).
    pub(super) fn counts(&self, counters: &[u32]) -> Vec<u32> {
        let width = self.bins() + 1;
        let mut counts = counters[..self.bins()].to_vec();
        for set in counters.chunks_exact(width).skip(1) {
            counts.iter_mut().zip(set).for_each(|(c, s)| *c += s);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::super::Histogram;
    use super::Binning;

    /// The definition: the last edge ≤ v, by search (the last bin closed).
    fn by_search(edges: &[f32], x: &[f32]) -> Vec<u32> {
        let bins = edges.len() - 1;
        let mut counts = vec![0; bins];
        for &v in x {
            if v >= edges[0] && v <= edges[bins] {
                let i = edges.partition_point(|&e| e <= v).saturating_sub(1);
                counts[i.min(bins - 1)] += 1;
            }
        }
        counts
    }

    /// f32s `steps` ulps from `v` (toward +∞ when positive).
    fn ulps_from(v: f32, steps: i32) -> f32 {
        let mut v = v;
        for _ in 0..steps.abs() {
            v = if steps > 0 { v.next_up() } else { v.next_down() };
        }
        v
    }

    /// Values on every edge and up to three ulps either side of it, plus
    /// uniform ones over the range and a little past it.
    fn near_edges(rng: &mut SmallRng, edges: &[f32]) -> Vec<f32> {
        let mut x: Vec<f32> = edges
            .iter()
            .flat_map(|&e| (-3..=3).map(move |s| ulps_from(e, s)))
            .collect();
        let (lo, hi) = (edges[0], edges[edges.len() - 1]);
        let span = hi - lo;
        x.extend((0..5_000).map(|_| lo + span * rng.random_range(-0.05f32..1.05)));
        x
    }

    /// Counting with the fast path agrees with the search over the edges
    /// for values on and around every edge, across ranges near 0, offset
    /// from it, tiny and huge, explicit and from the data. Most of these
    /// ranges take the fast path (checked: the test would otherwise only
    /// exercise the settling).
    #[test]
    fn fast_binning_matches_the_edges() {
        let seed: u64 = rand::random();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut fast = 0;
        let cases = 300;
        for case in 0..cases {
            let bins = match rng.random_range(0..4) {
                0 => rng.random_range(1..=16),
                1 => rng.random_range(17..=300),
                2 => rng.random_range(4_000..=4_200),
                _ => rng.random_range(300..=70_000),
            };
            let width = 10f64.powf(rng.random_range(-3.0..6.0));
            let center = match rng.random_range(0..5) {
                0 => 0.0,
                1 => width * rng.random_range(-2.0..2.0),
                2 => rng.random_range(-1e4..1e4),
                // Narrow next to its distance from 0: the tightest margins.
                3 => width * 10f64.powf(rng.random_range(0.0..4.5)) * [-1.0, 1.0][case % 2],
                // Far from 1 in magnitude, both ways.
                _ => 10f64.powf(rng.random_range(-30.0..30.0)) * [-1.0, 1.0][case % 2],
            };
            let width = if center.abs() > 1e6 || (center != 0.0 && center.abs() < 1e-6) {
                center.abs() * 10f64.powf(rng.random_range(-4.0..0.0))
            } else {
                width
            };
            let (lo, hi) = (center - width / 2.0, center + width / 2.0);
            let from_data = rng.random_bool(0.3);
            let range = (!from_data).then_some((lo, hi));
            let seed_x: Vec<f32> = if from_data {
                vec![lo as f32, hi as f32, center as f32]
            } else {
                Vec::new()
            };
            let Ok(h) = Histogram::new(seed_x, bins, range) else {
                continue; // too many bins for the range in f32
            };
            let edges = h.edges();
            let mut x = near_edges(&mut rng, &edges);
            if from_data {
                // The data's own range: nothing may pass its edges.
                x.retain(|&v| v >= edges[0] && v <= edges[bins as usize]);
            }
            let binning = Binning::new(&edges, h.scale);
            fast += usize::from(binning.sure.is_some());
            let mut counters = binning.counters();
            binning.count(&x, &mut counters);
            let got = binning.counts(&counters);
            let want = by_search(&edges, &x);
            if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
                panic!(
                    "seed {seed} case {case}: {bins} bins over {:?} (margin {:?}): bin {i} \
                     counts {}, expected {}",
                    (edges[0], edges[bins as usize]),
                    binning.sure,
                    got[i],
                    want[i]
                );
            }
        }
        assert!(fast > cases / 3, "seed {seed}: only {fast} of {cases} took the fast path");
    }

    /// Ranges too narrow for f32 to scale (the estimate is infinite) and
    /// subnormal ones are settled by search, and right.
    #[test]
    fn ranges_no_estimate_can_scale() {
        let seed: u64 = rand::random();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut checked = 0;
        for (lo, hi, bins) in [(0.0, 1e-38, 1_000_000), (0.0, 1e-44, 5), (-1e-40, 1e-40, 999)] {
            let Ok(h) = Histogram::new(Vec::new(), bins, Some((lo, hi))) else {
                continue; // too many bins for the range in f32
            };
            let edges = h.edges();
            let x = near_edges(&mut rng, &edges);
            let binning = Binning::new(&edges, h.scale);
            let mut counters = binning.counters();
            binning.count(&x, &mut counters);
            assert_eq!(
                binning.counts(&counters),
                by_search(&edges, &x),
                "seed {seed}: {bins} bins over [{lo}, {hi}]"
            );
            checked += usize::from(!h.scale.is_finite());
        }
        assert!(checked > 0, "no range without a finite scale was checked");
    }
}

//! A tiny seeded generator for what the simulator draws outside madsim's runtime (swarm
//! scenarios, the bare event loop).

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to draw options. Local,
/// so that a seed's scenario never depends on another crate's version.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (multiply-shift; the bias is below 2^-50 for these spans).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = (hi - lo) as u128 + 1;
        lo + ((self.next() as u128 * span) >> 64) as u64
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.range(0, den - 1) < num
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }

    /// `k` distinct numbers of `0..n`, sorted (a partial Fisher-Yates shuffle).
    pub(crate) fn subset(&mut self, n: u64, k: u64) -> Vec<u64> {
        let mut all: Vec<u64> = (0..n).collect();
        for i in 0..k.min(n) as usize {
            let j = self.range(i as u64, n - 1) as usize;
            all.swap(i, j);
        }
        let mut chosen = all[..k.min(n) as usize].to_vec();
        chosen.sort_unstable();
        chosen
    }
}

//! The fuzzer's random numbers: SplitMix64, seeded per thread from the run's
//! seed, so that each thread's sequence of operations and arguments
//! reproduces from the seed (the interleaving of threads does not).

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, good enough to pick
/// operations; not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of thread `thread` of a run seeded with `seed`.
    pub fn for_thread(seed: u64, thread: usize) -> Self {
        let mut r = Self(seed ^ (thread as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items` (non-empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index into `weights` drawn in proportion to them.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_of_one_seed_differ_and_reproduce() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_thread(7, 0).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut t0 = Rng::for_thread(7, 0);
        let mut t1 = Rng::for_thread(7, 1);
        assert_ne!(t0.next_u64(), t1.next_u64());
        assert_ne!(
            Rng::for_thread(7, 0).next_u64(),
            Rng::for_thread(8, 0).next_u64()
        );
    }

    #[test]
    fn weighted_never_picks_a_zero_weight() {
        let mut r = Rng::for_thread(1, 0);
        for _ in 0..1000 {
            assert_ne!(r.weighted(&[3, 0, 5]), 1);
            assert!(r.below(10) < 10);
        }
    }
}

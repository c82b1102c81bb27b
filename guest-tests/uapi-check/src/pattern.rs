//! The data patterns both sides of a coherence check agree on: the guest
//! (this program) and the host side of the harness, which fills or reads
//! the device's memory-backend file.

/// The 64-bit word at byte `offset` of pattern `seed` (splitmix64 of both),
/// so every word of every pattern differs and a stale or misplaced word
/// shows up.
pub fn word(seed: u64, offset: u64) -> u64 {
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ offset;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Regions up to this size are sampled in every 2 MiB; larger ones (a real
/// device's 48-192 GiB) sparsely, so neither the guest nor the host touches
/// memory, or allocates backing-file blocks, in proportion to the size.
pub const DENSE_SAMPLING_MAX: u64 = 4 << 30;

/// Random offsets of [`sample_offsets`] in a sparsely sampled region.
pub const SPARSE_RANDOM_SAMPLES: u64 = 1024;

/// The offsets a check samples in a region of `size` bytes (8-aligned,
/// ascending, distinct). Up to [`DENSE_SAMPLING_MAX`]: the first and last
/// word of every 2 MiB, and one word in the middle of each. Above: one word
/// in every 4 KiB of the first and the last 2 MiB, the last word, the
/// words on both sides of every 1 GiB boundary, and [`SPARSE_RANDOM_SAMPLES`] words at offsets
/// drawn from a generator seeded by `size`, so both sides draw the same.
pub fn sample_offsets(size: u64) -> Vec<u64> {
    const STRIDE: u64 = 2 << 20;
    const GIB: u64 = 1 << 30;
    let size = size & !7;
    if size <= DENSE_SAMPLING_MAX {
        let mut v: Vec<u64> = (0..size.div_ceil(STRIDE))
            .flat_map(move |i| {
                let start = i * STRIDE;
                let end = (start + STRIDE).min(size);
                [start, (start + (end - start) / 2) & !7, end - 8]
            })
            .collect();
        v.dedup();
        return v;
    }
    let mut v: Vec<u64> = (0..STRIDE)
        .step_by(4096)
        .flat_map(|o| [o, size - STRIDE + o])
        .collect();
    v.extend((1..size.div_ceil(GIB)).flat_map(|g| [g * GIB - 8, g * GIB]));
    v.push(size - 8);
    v.extend((0..SPARSE_RANDOM_SAMPLES).map(|i| (word(size, i) % size) & !7));
    v.sort_unstable();
    v.dedup();
    v
}

/// The running checksum of a region, fed its 64-bit words in order
/// (`Checksum::add`); the guest and the host (over the memory-backend
/// file) must agree. Order-dependent, so a misplaced word changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum(pub u64);

impl Default for Checksum {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    pub fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// The checksum of little-endian bytes (a multiple of 8 long).
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        for c in bytes.chunks_exact(8) {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
    }
}

/// The digest of what a reader found in a region: the [`Checksum`] of the
/// words it read, in offset order. The reader reports it; the side that
/// wrote the data computes [`pattern_digest`] over what it wrote and
/// compares, so a reader that did not see the data cannot pass by saying
/// it did.
pub fn digest(words: impl IntoIterator<Item = u64>) -> u64 {
    let mut c = Checksum::default();
    words.into_iter().for_each(|w| c.add(w));
    c.0
}

/// The digest of pattern `seed` at `offsets` (what the writer expects).
pub fn pattern_digest(seed: u64, offsets: impl IntoIterator<Item = u64>) -> u64 {
    digest(offsets.into_iter().map(|o| word(seed, o)))
}

/// Every word offset of a region of `size` bytes.
pub fn all_offsets(size: u64) -> impl Iterator<Item = u64> {
    (0..size).step_by(8)
}

/// `0x` and 16 hex digits: how digests are reported.
pub fn hex(v: u64) -> String {
    format!("{v:#018x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_seed_and_offset() {
        assert_ne!(word(1, 0), word(2, 0));
        assert_ne!(word(1, 0), word(1, 8));
        // Known answers (splitmix64 computed outside Rust): the guest and
        // the host side must compute the same words.
        assert_eq!(word(0, 0), 0);
        assert_eq!(word(7, 4096), 0x0d8e_f169_7451_a718);
    }

    #[test]
    fn checksum_depends_on_order_and_matches_bytes() {
        let (mut a, mut b, mut c) = (
            Checksum::default(),
            Checksum::default(),
            Checksum::default(),
        );
        a.add(1);
        a.add(2);
        b.add(2);
        b.add(1);
        assert_ne!(a, b);
        c.add_bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(a, c);
    }

    #[test]
    fn a_digest_differs_when_one_word_read_differs() {
        let size = 1 << 20;
        let want = pattern_digest(5, all_offsets(size));
        let read: Vec<u64> = all_offsets(size).map(|o| word(5, o)).collect();
        assert_eq!(digest(read.iter().copied()), want);
        let mut other = read.clone();
        other[1000] ^= 1;
        assert_ne!(digest(other), want);
        assert_ne!(pattern_digest(6, all_offsets(size)), want);
        assert_eq!(hex(0xab), "0x00000000000000ab");
    }

    #[test]
    fn samples_cover_every_2mib_and_stay_in_bounds() {
        let size = 256 << 20;
        let s = sample_offsets(size);
        assert_eq!(s.len(), 3 * 128);
        assert!(s.iter().all(|&o| o % 8 == 0 && o + 8 <= size));
        assert_eq!(s[..3], [0, 1 << 20, (2 << 20) - 8]);
        let odd = sample_offsets(3 << 20);
        assert_eq!(odd.last(), Some(&((3 << 20) - 8)));
        assert_eq!(sample_offsets(DENSE_SAMPLING_MAX).len(), 3 * 2048);
    }

    #[test]
    fn a_device_sized_region_is_sampled_sparsely_at_its_edges_and_gib_boundaries() {
        const GIB: u64 = 1 << 30;
        let size = 128 * GIB;
        let s = sample_offsets(size);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "ascending, distinct");
        assert!(s.iter().all(|&o| o % 8 == 0 && o + 8 <= size));
        // Edges: every 4 KiB page of the first and last 2 MiB.
        assert_eq!(s.iter().filter(|&&o| o < 2 << 20).count(), 512);
        assert!(s.contains(&0) && s.contains(&(size - 4096)) && s.contains(&(size - 8)));
        // Both sides of every 1 GiB boundary, so every 1 GiB is touched.
        for g in 1..128 {
            assert!(s.contains(&(g * GIB - 8)) && s.contains(&(g * GIB)), "{g}");
        }
        // Seeded random offsets: the same on every call, in the middle too.
        assert_eq!(s, sample_offsets(size));
        let middle = s
            .iter()
            .filter(|&&o| o >= 2 << 20 && o < size - (2 << 20) && o % GIB > 8 && o % GIB < GIB - 8)
            .count() as u64;
        assert!(middle > SPARSE_RANDOM_SAMPLES * 9 / 10, "{middle}");
        // Pages touched, hence backing-file blocks the host allocates.
        let mut pages: Vec<u64> = s.iter().map(|o| o / 4096).collect();
        pages.dedup();
        assert!(pages.len() < 2600, "{}", pages.len());
    }
}

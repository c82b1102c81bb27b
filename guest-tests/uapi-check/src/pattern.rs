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

/// The offsets a check samples in a region of `size` bytes: the first and
/// last word of every 2 MiB, and one word in the middle of each.
pub fn sample_offsets(size: u64) -> impl Iterator<Item = u64> {
    const STRIDE: u64 = 2 << 20;
    (0..size.div_ceil(STRIDE)).flat_map(move |i| {
        let start = i * STRIDE;
        let end = (start + STRIDE).min(size);
        [start, (start + (end - start) / 2) & !7, end - 8]
    })
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
        let s: Vec<_> = sample_offsets(size).collect();
        assert_eq!(s.len(), 3 * 128);
        assert!(s.iter().all(|&o| o % 8 == 0 && o + 8 <= size));
        assert_eq!(s[..3], [0, 1 << 20, (2 << 20) - 8]);
        let odd: Vec<_> = sample_offsets(3 << 20).collect();
        assert_eq!(odd.last(), Some(&((3 << 20) - 8)));
    }
}

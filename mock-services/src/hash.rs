//! A stable 64-bit hash.
//!
//! Answers must be identical across processes and Rust versions, so std's randomly seeded
//! `RandomState` is out; FNV-1a is tiny, fixed and good enough once its output is mixed.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over a sequence of byte slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    pub(crate) fn new() -> Self {
        Self(FNV_OFFSET_BASIS)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// The raw FNV-1a value.
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }

    /// The hash passed through the SplitMix64 finaliser. FNV-1a's high bits depend weakly
    /// on the last bytes, and the answer is derived from several bit ranges, so every bit
    /// should depend on every input byte.
    pub(crate) fn finish_mixed(&self) -> u64 {
        let mut z = self.finish();
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_published_fnv1a_vectors() {
        assert_eq!(Fnv1a::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a::new().write(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            Fnv1a::new().write(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn split_writes_equal_one_write() {
        let mut split = Fnv1a::new();
        split.write(b"foo").write(b"bar");
        assert_eq!(split.finish(), Fnv1a::new().write(b"foobar").finish());
    }
}

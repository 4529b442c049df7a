//! Counter-based randomness.
//!
//! Every draw is a pure hash of its coordinates (instrument key, stream, day, index), so
//! any day, minute or second can be generated on its own, in any order, on any thread,
//! and always yields the same value. No generator state is carried between calls.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser: a bijective mixer whose outputs pass statistical test suites.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, chosen over `DefaultHasher` because its output is fixed across Rust releases;
/// a symbol's price path must not change when the toolchain is upgraded.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

/// Independent families of draws; distinct streams keep, say, the wick of minute 5 from
/// being correlated with the return of minute 5.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    DayReturn = 1,
    DayGap = 2,
    DayVolume = 3,
    Walk = 4,
    Wick = 5,
    Volume = 6,
    SecondAnchor = 7,
    SecondNoise = 8,
    SecondVolume = 9,
    Spread = 10,
    DayVolatility = 11,
    DayHigh = 12,
    DayLow = 13,
    ExtremeAt = 14,
}

/// Random 64 bits at coordinates `(stream, a, b)` of the instrument keyed by `key`.
pub(crate) fn draw(key: u64, stream: Stream, a: i64, b: i64) -> u64 {
    Draws::new(key, stream, a).at(b)
}

/// The draws `(stream, a, *)` of one instrument, with the fixed coordinates hashed once:
/// a day's minute path needs thousands of them, and this makes each a single mix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Draws(u64);

impl Draws {
    pub(crate) fn new(key: u64, stream: Stream, a: i64) -> Draws {
        let h = mix64(key ^ (stream as u64).wrapping_mul(GOLDEN));
        Draws(mix64(h ^ a as u64))
    }

    /// Same value as `draw(key, stream, a, b)`.
    pub(crate) fn at(self, b: i64) -> u64 {
        mix64(self.0 ^ b as u64)
    }
}

/// Uniform in `[0, 1)` from the top 53 bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Approximately standard normal: sum of four 16-bit uniforms (Irwin-Hall), rescaled.
/// One hash per variate and no transcendental functions, which matters because a day
/// needs one per minute; the tails are bounded at about 3.46 sigma, harmless here.
pub(crate) fn normal(bits: u64) -> f64 {
    let mut sum = 0.0;
    for i in 0..4 {
        sum += (((bits >> (16 * i)) & 0xFFFF) as f64 + 0.5) / 65_536.0;
    }
    // Each uniform has variance 1/12, so the sum has mean 2 and variance 1/3.
    (sum - 2.0) * 3f64.sqrt()
}

//! The `getBars` body, written by hand.
//!
//! A 5,000-bar answer holds 30,000 numbers, and serde_json spent most of the
//! request formatting them as shortest round-trip floats and appending keys
//! and digits piece by piece. Prices here are whole ticks of a decimal
//! `pricescale`, so each is an integer with a decimal point put in. A bar is
//! written into a small stack buffer, digits in place, and appended in one
//! copy. Every price is checked to round-trip before it is written that way;
//! a bar with anything else (a non-decimal pricescale, an odd value) goes
//! through serde_json's own number formatting. Either way the body decodes
//! to exactly the bars it was made from, which the tests below check against
//! the generated wire types.

use crate::bar::{Bar, BarsPage};

/// Room for the longest bar the fast path writes: keys and punctuation (51
/// bytes), six numbers of at most 16 digits with a sign and a decimal point
/// (6 x 18), and 8 bytes of slack that digit writing may scribble past its
/// end (see `put_fraction`).
const MAX_BAR_BYTES: usize = 51 + 6 * 18 + 8;
/// Every number the fast path writes is below this: 16 digits at most.
const MAX_FAST: u64 = 10_000_000_000_000_000;
/// Integers below this convert to and from `f64` exactly.
const EXACT_INT: u64 = 1 << 53;

/// How prices of one symbol are written: as fixed-point decimals.
#[derive(Clone, Copy, Debug)]
pub struct PriceFormat {
    scale: f64,
    decimals: u32,
}

impl PriceFormat {
    /// The format for prices in ticks of `1 / pricescale` (or a multiple of
    /// it), when `pricescale` is a power of ten up to 10^8.
    pub fn for_pricescale(pricescale: i64) -> Option<PriceFormat> {
        (0..=8).find_map(|decimals| {
            (10i64.pow(decimals) == pricescale).then_some(PriceFormat {
                scale: pricescale as f64,
                decimals,
            })
        })
    }

    /// `v` as a sign and a count of `10^-decimals` units, when the decimal
    /// text of that count parses back to exactly `v`.
    fn units(self, v: f64) -> Option<(bool, u64)> {
        let magnitude = v.abs();
        // `+ 0.5` then truncation rounds a non-negative value without a libm
        // call; the check below is what makes the result trustworthy.
        let units = magnitude * self.scale + 0.5;
        if units.is_nan() || units >= EXACT_INT as f64 {
            return None;
        }
        let n = units as u64;
        // Dividing the exact integer n by the exact scale rounds to the
        // double nearest n / scale, the same double the decimal text of
        // n / scale parses to: equal here means the text round-trips.
        (n as f64 / self.scale == magnitude).then_some((v < 0.0 && n != 0, n))
    }
}

/// A run of ascending bars already encoded, each object followed by a
/// comma, so the JSON of any stretch of them is one slice to copy.
pub struct EncodedRun {
    bars: Vec<Bar>,
    /// Where bar i's object (and its comma) ends in `json`.
    ends: Vec<usize>,
    json: Vec<u8>,
}

impl EncodedRun {
    pub fn new(bars: Vec<Bar>, prices: Option<PriceFormat>) -> EncodedRun {
        let mut json = Vec::with_capacity(bars.len() * (MAX_BAR_BYTES + 1));
        let mut ends = Vec::with_capacity(bars.len());
        for bar in &bars {
            write_bar(&mut json, bar, prices);
            json.push(b',');
            ends.push(json.len());
        }
        // Room was made for the longest bar; a run is kept for long, so it
        // keeps only what it holds (about 100 bytes a bar, not 168).
        json.shrink_to_fit();
        EncodedRun { bars, ends, json }
    }

    /// The bars, ascending.
    pub fn bars(&self) -> &[Bar] {
        &self.bars
    }

    /// The JSON (no trailing comma) of the longest stretch of this run that
    /// `bars` starts with, and how many bars that is. Bars are compared
    /// whole, so the slice is exactly what encoding them would write.
    fn prefix_of(&self, bars: &[Bar]) -> Option<(&[u8], usize)> {
        let first = bars.first()?;
        let i = self
            .bars
            .binary_search_by_key(&first.time, |b| b.time)
            .ok()?;
        let n = self.bars[i..]
            .iter()
            .zip(bars)
            .take_while(|(a, b)| a == b)
            .count();
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (n > 0).then(|| (&self.json[start..self.ends[i + n - 1] - 1], n))
    }
}

/// `{"bars":[...],"no_data":...,"next_time":...}` as the spec's
/// `BarsResponse` (`next_time` left out when there is none). Bars that
/// `memo` holds are copied from it.
pub fn encode(page: &BarsPage, prices: Option<PriceFormat>, memo: Option<&EncodedRun>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.bars.len() * (MAX_BAR_BYTES + 1));
    out.extend_from_slice(b"{\"bars\":[");
    let mut rest = &page.bars[..];
    if let Some((json, n)) = memo.and_then(|m| m.prefix_of(rest)) {
        out.extend_from_slice(json);
        rest = &rest[n..];
        if !rest.is_empty() {
            out.push(b',');
        }
    }
    for (i, bar) in rest.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_bar(&mut out, bar, prices);
    }
    out.extend_from_slice(b"],\"no_data\":");
    out.extend_from_slice(if page.no_data { b"true" } else { b"false" });
    if let Some(next) = page.next_time {
        out.extend_from_slice(b",\"next_time\":");
        write_number(&mut out, next);
    }
    out.push(b'}');
    out
}

fn write_bar(out: &mut Vec<u8>, bar: &Bar, prices: Option<PriceFormat>) {
    if !prices.is_some_and(|p| write_bar_fast(out, bar, p)) {
        write_bar_slowly(out, bar);
    }
}

/// Writes one bar in place at the end of `out`; false (and nothing written)
/// when a value does not fit the fast path (see module docs).
fn write_bar_fast(out: &mut Vec<u8>, bar: &Bar, prices: PriceFormat) -> bool {
    let volume = bar.volume as i64;
    if volume as f64 != bar.volume
        || volume.unsigned_abs() >= EXACT_INT
        || bar.time.unsigned_abs() >= MAX_FAST
    {
        return false;
    }
    let units = [bar.open, bar.high, bar.low, bar.close].map(|v| prices.units(v));
    let [Some(open), Some(high), Some(low), Some(close)] = units else {
        return false;
    };
    let start = out.len();
    out.resize(start + MAX_BAR_BYTES, 0);
    let mut w = Cursor {
        buf: &mut out[start..],
        at: 0,
    };
    w.put(b"{\"time\":");
    w.put_number(bar.time < 0, bar.time.unsigned_abs(), 0);
    w.put(b",\"open\":");
    w.put_number(open.0, open.1, prices.decimals);
    w.put(b",\"high\":");
    w.put_number(high.0, high.1, prices.decimals);
    w.put(b",\"low\":");
    w.put_number(low.0, low.1, prices.decimals);
    w.put(b",\"close\":");
    w.put_number(close.0, close.1, prices.decimals);
    w.put(b",\"volume\":");
    w.put_number(volume < 0, volume.unsigned_abs(), 0);
    w.put(b"}");
    let end = start + w.at;
    out.truncate(end);
    true
}

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Two decimal digits per entry, so digits are written in pairs.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Writes into a buffer sized for the longest bar.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    /// Fixed-size pieces compile to a few plain stores.
    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: &[u8; N]) {
        self.buf[self.at..self.at + N].copy_from_slice(bytes);
        self.at += N;
    }

    /// `n / 10^decimals` (n < 10^16, decimals <= 8) in decimal, without
    /// trailing zeros after the point.
    #[inline(always)]
    fn put_number(&mut self, negative: bool, n: u64, decimals: u32) {
        if negative {
            self.put(b"-");
        }
        // One arm per scale so each division is by a constant (a multiply),
        // not a hardware divide.
        let (whole, mut frac) = match decimals {
            0 => return self.put_u64(n),
            1 => (n / 10, n % 10),
            2 => (n / 100, n % 100),
            3 => (n / 1_000, n % 1_000),
            4 => (n / 10_000, n % 10_000),
            5 => (n / 100_000, n % 100_000),
            6 => (n / 1_000_000, n % 1_000_000),
            7 => (n / 10_000_000, n % 10_000_000),
            _ => (n / 100_000_000, n % 100_000_000),
        };
        self.put_u64(whole);
        if frac == 0 {
            return;
        }
        let mut digits = decimals as usize;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        // Left-align the fraction in 8 digits: 0.04 with 2 decimals is 4,
        // written as "04000000" of which the first 2 digits count.
        frac *= POW10[8 - digits];
        self.put(b".");
        self.put_fraction(frac as u32, digits);
    }

    #[inline(always)]
    fn put_u64(&mut self, n: u64) {
        if n < 100_000_000 {
            self.put_up_to_8(n as u32);
        } else {
            self.put_up_to_8((n / 100_000_000) as u32);
            self.put_8((n % 100_000_000) as u32);
        }
    }

    /// The first `digits` of the 8-digit `v`: all 8 are written, the cursor
    /// moves by `digits`, and the rest is overwritten by what follows.
    #[inline(always)]
    fn put_fraction(&mut self, v: u32, digits: usize) {
        let at = self.at;
        self.put_8(v);
        self.at = at + digits;
    }

    /// `v` < 10^8 without leading zeros.
    #[inline(always)]
    fn put_up_to_8(&mut self, v: u32) {
        if v < 10_000 {
            self.put_up_to_4(v);
        } else {
            self.put_up_to_4(v / 10_000);
            self.put_4(v % 10_000);
        }
    }

    #[inline(always)]
    fn put_up_to_4(&mut self, v: u32) {
        if v < 10 {
            self.put(&[b'0' + v as u8]);
        } else if v < 100 {
            self.put_2(v);
        } else if v < 1_000 {
            self.put(&[b'0' + (v / 100) as u8]);
            self.put_2(v % 100);
        } else {
            self.put_4(v);
        }
    }

    /// Exactly 8 digits, leading zeros included.
    #[inline(always)]
    fn put_8(&mut self, v: u32) {
        self.put_4(v / 10_000);
        self.put_4(v % 10_000);
    }

    #[inline(always)]
    fn put_4(&mut self, v: u32) {
        self.put_2(v / 100);
        self.put_2(v % 100);
    }

    #[inline(always)]
    fn put_2(&mut self, v: u32) {
        let i = v as usize * 2;
        self.buf[self.at..self.at + 2].copy_from_slice(&PAIRS[i..i + 2]);
        self.at += 2;
    }
}

/// The general path: serde_json formats each number.
fn write_bar_slowly(out: &mut Vec<u8>, bar: &Bar) {
    out.extend_from_slice(b"{\"time\":");
    write_number(out, bar.time);
    for (key, v) in [
        (&b",\"open\":"[..], bar.open),
        (b",\"high\":", bar.high),
        (b",\"low\":", bar.low),
        (b",\"close\":", bar.close),
        (b",\"volume\":", bar.volume),
    ] {
        out.extend_from_slice(key);
        write_number(out, v);
    }
    out.push(b'}');
}

fn write_number<N: serde::Serialize>(out: &mut Vec<u8>, v: N) {
    // serde_json writes a non-finite float as null (and cannot fail on a
    // Vec otherwise); so does this.
    if serde_json::to_writer(&mut *out, &v).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trading_pro::types::{Bar as WireBar, BarsResponse};

    /// The body decoded with the generated wire types, as a client would.
    fn decode(json: &[u8]) -> BarsResponse {
        serde_json::from_slice(json)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(json)))
    }

    fn expected(page: &BarsPage) -> BarsResponse {
        BarsResponse {
            bars: page
                .bars
                .iter()
                .map(|b| WireBar {
                    time: b.time,
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                })
                .collect(),
            no_data: page.no_data,
            next_time: page.next_time,
        }
    }

    /// A small deterministic generator (xorshift) so failures repeat.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn page(bars: Vec<Bar>, next_time: Option<i64>, no_data: bool) -> BarsPage {
        BarsPage {
            bars,
            next_time,
            no_data,
        }
    }

    #[test]
    fn tick_prices_decode_exactly_for_every_decimal_pricescale() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for decimals in 0..=8u32 {
            let pricescale = 10i64.pow(decimals);
            let format = PriceFormat::for_pricescale(pricescale).unwrap();
            let minmov = [1u64, 5, 25][decimals as usize % 3];
            let price = |rng: &mut Rng| {
                // Ticks up to 1e12 units, as the engine allows.
                let ticks = rng.next() % (1_000_000_000_000 / minmov);
                (ticks * minmov) as f64 * 1.0 / pricescale as f64
            };
            let bars = (0..500)
                .map(|i| Bar {
                    time: 1_546_300_800_000 + i * 60_000,
                    open: price(&mut rng),
                    high: price(&mut rng),
                    low: price(&mut rng),
                    close: price(&mut rng),
                    volume: (rng.next() % 10_000_000_000) as f64,
                })
                .collect();
            let p = page(bars, Some(1_546_300_740_000), false);
            let json = encode(&p, Some(format), None);
            assert_eq!(decode(&json), expected(&p), "pricescale {pricescale}");
        }
    }

    #[test]
    fn any_value_falls_back_to_an_exact_encoding() {
        let mut rng = Rng(42);
        let any = |rng: &mut Rng| loop {
            let v = f64::from_bits(rng.next());
            if v.is_finite() {
                return v;
            }
        };
        let mut values = vec![0.1 + 0.2, -1.5, -0.0, 1e300, 5e-324, 123.456_789_012_345];
        values.extend((0..2_000).map(|_| any(&mut rng)));
        let bars: Vec<Bar> = values
            .chunks(5)
            .enumerate()
            .filter(|(_, c)| c.len() == 5)
            .map(|(i, c)| Bar {
                time: -(i as i64) * 1000,
                open: c[0],
                high: c[1],
                low: c[2],
                close: c[3],
                volume: c[4],
            })
            .collect();
        let p = page(bars, None, false);
        // serde_json's decoder is off by an ulp on some extreme values (it
        // lacks `float_roundtrip`), so the reference is serde's own encoding
        // decoded the same way.
        let reference = decode(&serde_json::to_vec(&expected(&p)).unwrap());
        for format in [None, PriceFormat::for_pricescale(100)] {
            assert_eq!(decode(&encode(&p, format, None)), reference);
        }
    }

    #[test]
    fn empty_pages_and_flags() {
        for (next, no_data) in [(None, true), (Some(0), false), (Some(-5), true)] {
            let p = page(Vec::new(), next, no_data);
            let json = encode(&p, PriceFormat::for_pricescale(100), None);
            assert_eq!(decode(&json), expected(&p));
            assert_eq!(json.windows(9).any(|w| w == b"next_time"), next.is_some());
        }
    }

    #[test]
    fn decimal_text_is_plain() {
        let format = PriceFormat::for_pricescale(100_000);
        let bar = Bar {
            time: 0,
            open: 1.5,
            high: 1.000_01,
            low: 2.0,
            close: 0.000_07,
            volume: 976.0,
        };
        let json = String::from_utf8(encode(&page(vec![bar], None, false), format, None)).unwrap();
        assert_eq!(
            json,
            r#"{"bars":[{"time":0,"open":1.5,"high":1.00001,"low":2,"close":0.00007,"volume":976}],"no_data":false}"#
        );
        assert!(PriceFormat::for_pricescale(8).is_none());
    }

    #[test]
    fn a_memo_only_changes_how_fast_not_what() {
        let format = PriceFormat::for_pricescale(100);
        let bars: Vec<Bar> = (0..400)
            .map(|i| Bar {
                time: i * 86_400_000,
                open: (10_000 + i) as f64 / 100.0,
                high: (10_100 + i) as f64 / 100.0,
                low: (9_900 + i) as f64 / 100.0,
                close: (10_050 + i) as f64 / 100.0,
                volume: (1_000 + i) as f64,
            })
            .collect();
        let memo = EncodedRun::new(bars[100..300].to_vec(), format);
        let mut changed = bars[150..250].to_vec();
        changed[40].close = 12_345.0 / 100.0;
        for slice in [
            bars[100..300].to_vec(), // all of it
            bars[120..180].to_vec(), // inside
            bars[250..400].to_vec(), // runs past its end
            bars[50..200].to_vec(),  // starts before it: not used
            changed,                 // differs from it at bar 40
            bars[299..300].to_vec(),
            Vec::new(),
        ] {
            let p = page(slice, Some(7), false);
            let plain = encode(&p, format, None);
            assert_eq!(encode(&p, format, Some(&memo)), plain);
            assert_eq!(decode(&plain), expected(&p));
        }
    }
}

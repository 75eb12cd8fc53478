//! SHA-1 of many pieces at once: sixteen messages side by side in the
//! sixteen 32-bit lanes of AVX-512 registers ("multi-buffer" hashing).
//!
//! SHA-1 cannot be split within a message, and the CPU's SHA instructions
//! (which the `sha1` crate uses) hash one message at about 2 GB/s here,
//! half of a fast download's CPU time. Sixteen messages at once, with
//! AVX-512's rotates and three-input logic, hash at about 5 GB/s on the
//! same core (1 MiB pieces, from memory, not cache). The catch is that
//! sixteen messages must be at hand: the engine holds verified-to-be
//! pieces back for a few milliseconds to batch them (see
//! `engine::batch_hasher`).
//!
//! On a CPU without AVX-512, with a compiler older than 1.89 (whose
//! intrinsics are not stable), or for fewer than [`MIN_BATCH`] messages
//! (idle lanes would cost more than they save) each message is hashed
//! alone by the `sha1` crate.

use sha1::{Digest, Sha1};

/// Messages hashed in one pass.
pub const LANES: usize = 16;

/// Fewer messages than this go one by one: a pass costs about what six
/// single-message hashes of the same blocks do, whatever its lanes hold.
pub const MIN_BATCH: usize = 7;

/// A message's digest.
pub type Digest20 = [u8; 20];

/// Can this CPU hash in batches ([`digests`] is then faster for
/// [`MIN_BATCH`] or more messages)?
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", avx512_intrinsics))]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(all(target_arch = "x86_64", avx512_intrinsics)))]
    {
        false
    }
}

/// The SHA-1 of each message, in order.
pub fn digests(messages: &[&[u8]]) -> Vec<Digest20> {
    #[cfg(all(target_arch = "x86_64", avx512_intrinsics))]
    if messages.len() >= MIN_BATCH && available() {
        let mut out = vec![[0u8; 20]; messages.len()];
        // SAFETY: the CPU has the features `sixteen_lanes` is compiled for
        // (checked just above).
        unsafe { x86::sixteen_lanes(messages, &mut out) };
        return out;
    }
    messages.iter().map(|m| Sha1::digest(m).into()).collect()
}

// Built only by compilers with the intrinsics (see build.rs), so the
// lint about items newer than `rust-version` does not apply.
#[cfg(all(target_arch = "x86_64", avx512_intrinsics))]
#[allow(clippy::incompatible_msrv)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Digest20, LANES};

    /// A message cut into the 64-byte blocks SHA-1 hashes: its whole blocks in
    /// place, and its last one or two, padded, in `tail`.
    struct Blocks<'a> {
        message: &'a [u8],
        whole: usize,
        tail: [u8; 128],
        count: usize,
    }

    impl<'a> Blocks<'a> {
        fn new(message: &'a [u8]) -> Blocks<'a> {
            let whole = message.len() / 64;
            let rest = &message[whole * 64..];
            let mut tail = [0u8; 128];
            tail[..rest.len()].copy_from_slice(rest);
            tail[rest.len()] = 0x80;
            // The length in bits takes the last 8 bytes; with the 0x80 it must
            // fit after the rest, or a second block is needed.
            let tail_len = if rest.len() + 9 <= 64 { 64 } else { 128 };
            let bits = (message.len() as u64).wrapping_mul(8);
            tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
            Blocks {
                message,
                whole,
                tail,
                count: whole + tail_len / 64,
            }
        }

        fn block(&self, i: usize) -> &[u8] {
            if i < self.whole {
                &self.message[i * 64..(i + 1) * 64]
            } else {
                &self.tail[(i - self.whole) * 64..(i - self.whole + 1) * 64]
            }
        }
    }

    const IV: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    const K: [u32; 4] = [0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6];

    /// A lane's message and where it is.
    struct Lane<'a> {
        blocks: Blocks<'a>,
        index: usize,
        next: usize,
    }

    /// Hashes `messages` into `out`, sixteen at a time: a lane whose
    /// message ends takes the next one, so messages of any lengths mix.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn sixteen_lanes(messages: &[&[u8]], out: &mut [Digest20]) {
        static IDLE: [u8; 64] = [0; 64];
        let mut lanes: [Option<Lane>; LANES] = Default::default();
        let mut queued = messages.iter().enumerate();
        let mut state = [_mm512_setzero_si512(); 5];
        loop {
            let mut fresh: __mmask16 = 0;
            for (i, lane) in lanes.iter_mut().enumerate() {
                if lane.is_none() {
                    if let Some((index, message)) = queued.next() {
                        *lane = Some(Lane {
                            blocks: Blocks::new(message),
                            index,
                            next: 0,
                        });
                        fresh |= 1 << i;
                    }
                }
            }
            for (word, iv) in state.iter_mut().zip(IV) {
                *word = _mm512_mask_mov_epi32(*word, fresh, _mm512_set1_epi32(iv as i32));
            }
            let mut busy: __mmask16 = 0;
            for (i, lane) in lanes.iter().enumerate() {
                if lane.is_some() {
                    busy |= 1 << i;
                }
            }
            if busy == 0 {
                return;
            }
            // As many passes as the lane nearest its end allows; then that
            // lane is emptied and refilled.
            let passes = lanes
                .iter()
                .flatten()
                .map(|l| l.blocks.count - l.next)
                .min()
                .unwrap_or(0);
            for _ in 0..passes {
                let mut blocks: [&[u8]; LANES] = [&IDLE; LANES];
                for (block, lane) in blocks.iter_mut().zip(&lanes) {
                    if let Some(l) = lane {
                        *block = l.blocks.block(l.next);
                    }
                }
                compress(&mut state, &blocks, busy);
                for lane in lanes.iter_mut().flatten() {
                    lane.next += 1;
                }
            }
            let mut words = [[0u32; LANES]; 5];
            for (w, s) in words.iter_mut().zip(&state) {
                // SAFETY: `w` is 16 u32s, 64 bytes, as the store writes.
                unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), *s) };
            }
            for (i, lane) in lanes.iter_mut().enumerate() {
                if lane.as_ref().is_some_and(|l| l.next == l.blocks.count) {
                    if let Some(done) = lane.take() {
                        for (k, w) in words.iter().enumerate() {
                            out[done.index][4 * k..4 * k + 4].copy_from_slice(&w[i].to_be_bytes());
                        }
                    }
                }
            }
        }
    }

    /// Hashes one 64-byte block into each lane of `state` that `busy` names
    /// (the others keep theirs).
    #[target_feature(enable = "avx512f,avx512bw")]
    fn compress(state: &mut [__m512i; 5], blocks: &[&[u8]; LANES], busy: __mmask16) {
        // Big-endian words: a byte swap within each 32-bit word.
        let swap = _mm512_broadcast_i32x4(_mm_set_epi8(
            12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
        ));
        let mut rows = [_mm512_setzero_si512(); LANES];
        for (row, block) in rows.iter_mut().zip(blocks) {
            assert!(block.len() >= 64);
            // SAFETY: 64 bytes readable at `block` (asserted).
            let words = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
            *row = _mm512_shuffle_epi8(words, swap);
        }
        let mut w = transpose(&rows);
        let [mut a, mut b, mut c, mut d, mut e] = *state;
        macro_rules! round {
            ($t:expr, $f:literal, $k:expr) => {{
                let t = $t;
                if t >= 16 {
                    let x = _mm512_ternarylogic_epi32::<0x96>(
                        w[(t - 3) & 15],
                        w[(t - 8) & 15],
                        w[(t - 14) & 15],
                    );
                    w[t & 15] = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[t & 15]));
                }
                let kw = _mm512_add_epi32(w[t & 15], _mm512_set1_epi32($k as i32));
                let f = _mm512_ternarylogic_epi32::<$f>(b, c, d);
                let sum = _mm512_add_epi32(
                    _mm512_add_epi32(_mm512_rol_epi32::<5>(a), f),
                    _mm512_add_epi32(e, kw),
                );
                e = d;
                d = c;
                c = _mm512_rol_epi32::<30>(b);
                b = a;
                a = sum;
            }};
        }
        // Choose (b ? c : d), parity, majority, parity: as truth tables of
        // (b, c, d) for the three-input logic instruction.
        for t in 0..20 {
            round!(t, 0xCA, K[0]);
        }
        for t in 20..40 {
            round!(t, 0x96, K[1]);
        }
        for t in 40..60 {
            round!(t, 0xE8, K[2]);
        }
        for t in 60..80 {
            round!(t, 0x96, K[3]);
        }
        for (s, new) in state.iter_mut().zip([a, b, c, d, e]) {
            *s = _mm512_mask_add_epi32(*s, busy, *s, new);
        }
    }

    /// Rows of 16 words (one lane's block each) to columns (word t of every
    /// lane): pairs of words, then of pairs, then 128-bit quarters twice.
    #[target_feature(enable = "avx512f")]
    fn transpose(r: &[__m512i; LANES]) -> [__m512i; LANES] {
        let mut t = [_mm512_setzero_si512(); LANES];
        for p in 0..8 {
            t[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
            t[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
        }
        // u[4g + c], quarter k: words c + 4k of rows 4g..4g+3.
        let mut u = [_mm512_setzero_si512(); LANES];
        for g in 0..4 {
            let b = 4 * g;
            u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
            u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
            u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
            u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
        }
        let mut w = [_mm512_setzero_si512(); LANES];
        for c in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x44>(u[c], u[4 + c]);
            let v1 = _mm512_shuffle_i32x4::<0xEE>(u[c], u[4 + c]);
            let v2 = _mm512_shuffle_i32x4::<0x44>(u[8 + c], u[12 + c]);
            let v3 = _mm512_shuffle_i32x4::<0xEE>(u[8 + c], u[12 + c]);
            w[c] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
            w[c + 4] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
            w[c + 8] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
            w[c + 12] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn every_padding_case_and_mixed_lengths_match_sha1() {
        let data = bytes(300_000);
        // Around each padding edge (55/56, 63/64/65, 119/120), empty, and
        // more messages than lanes so that lanes are refilled mid-batch.
        let lengths = [
            0,
            1,
            55,
            56,
            57,
            63,
            64,
            65,
            119,
            120,
            127,
            128,
            129,
            1000,
            4096,
            100_000,
            3,
            17,
            200_000,
            503,
            64 * 7 + 55,
            16384,
            31,
            250_000,
            2,
        ];
        let messages: Vec<&[u8]> = lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| &data[i..i + len])
            .collect();
        let got = digests(&messages);
        assert_eq!(got.len(), messages.len());
        for (m, g) in messages.iter().zip(&got) {
            assert_eq!(&Sha1::digest(m)[..], &g[..], "length {}", m.len());
        }
    }

    #[test]
    fn equal_pieces_in_a_full_and_a_partial_batch_match_sha1() {
        let data = bytes(40 << 14);
        for count in [MIN_BATCH - 1, MIN_BATCH, LANES, LANES + 3, 40] {
            let messages: Vec<&[u8]> = data.chunks(1 << 14).take(count).collect();
            let got = digests(&messages);
            for (m, g) in messages.iter().zip(&got) {
                assert_eq!(&Sha1::digest(m)[..], &g[..], "batch of {count}");
            }
        }
    }
}

//! ggml blocks to f32, bit for bit what gguf-py's `gguf.quants.dequantize` returns (its numpy
//! code does each product and sum in f32, unfused, in the order of llama.cpp's
//! `dequantize_row_*` in ggml-quants.c; these loops do the same). Block layouts are those of
//! ggml-common.h. Knows nothing of files, tensor names or shapes: bytes in, values out.

use half::f16;
use rayon::prelude::*;

use super::types::GgmlType;

/// Dequantises a run of whole blocks: `src` holds `n` blocks, `dst` their `n · block` values.
type Kernel = fn(&[u8], &mut [f32]);

/// Values per parallel task: large enough to amortise the task, small enough to spread a
/// tensor over every core.
const TASK_VALUES: usize = 1 << 16;

/// Whether tessera can dequantise this type.
pub fn can_dequantize(ty: GgmlType) -> bool {
    kernel(ty).is_some()
}

fn kernel(ty: GgmlType) -> Option<Kernel> {
    Some(match ty {
        GgmlType::F32 => f32_le,
        GgmlType::F16 => f16_le,
        GgmlType::BF16 => bf16_le,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => return None,
    })
}

/// Dequantises `src` (whole blocks of `ty`) into `dst`, which must hold exactly their values.
/// Returns `false`, touching nothing, when `ty` is not one [`can_dequantize`] accepts.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    let Some(kernel) = kernel(ty) else {
        return false;
    };
    let (block, block_bytes) = ty.layout();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    debug_assert_eq!(src.len() / block_bytes * block, dst.len());
    let blocks_per_task = (TASK_VALUES / block).max(1);
    src.par_chunks(blocks_per_task * block_bytes)
        .zip(dst.par_chunks_mut(blocks_per_task * block))
        .for_each(|(s, d)| kernel(s, d));
    true
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn f32_le(src: &[u8], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(4).zip(dst) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

fn f16_le(src: &[u8], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(2).zip(dst) {
        *d = f16_at(s, 0);
    }
}

fn bf16_le(src: &[u8], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(2).zip(dst) {
        *d = f32::from_bits(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16);
    }
}

/// `block_q4_0`: f16 d, 16 bytes of nibbles; value j is `(nibble − 8)·d`, low nibbles first.
fn q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[2..18].iter().enumerate() {
            lo[j] = d * (i32::from(q & 0x0F) - 8) as f32;
            hi[j] = d * (i32::from(q >> 4) - 8) as f32;
        }
    }
}

/// `block_q4_1`: f16 d, f16 m, 16 bytes of nibbles; value `nibble·d + m`.
fn q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[4..20].iter().enumerate() {
            lo[j] = d * f32::from(q & 0x0F) + m;
            hi[j] = d * f32::from(q >> 4) + m;
        }
    }
}

/// `block_q5_0`: f16 d, 32 high bits (bit j for value j), 16 bytes of low nibbles;
/// value `(q − 16)·d`.
fn q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[6..22].iter().enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            lo[j] = d * ((u32::from(q & 0x0F) | h0) as i32 - 16) as f32;
            hi[j] = d * ((u32::from(q >> 4) | h1) as i32 - 16) as f32;
        }
    }
}

/// `block_q5_1`: f16 d, f16 m, 32 high bits, 16 bytes of low nibbles; value `q·d + m`.
fn q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[8..24].iter().enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            lo[j] = d * (u32::from(q & 0x0F) | h0) as f32 + m;
            hi[j] = d * (u32::from(q >> 4) | h1) as f32 + m;
        }
    }
}

/// `block_q8_0`: f16 d, 32 signed bytes; value `q·d`.
fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        for (v, &q) in y.iter_mut().zip(&b[2..34]) {
            *v = f32::from(q as i8) * d;
        }
    }
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K/Q5_K super-block:
/// 6 bits each (llama.cpp's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// `block_q4_K`: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles. Each 64 values
/// take 32 bytes: low nibbles for the first 32 (sub-block 2i), high for the next (2i + 1); value
/// `d·sc·q − dmin·m`.
fn q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        for (i, (qs, y)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * i, scales);
            let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
            let (lo, hi) = y.split_at_mut(32);
            for (l, &q) in qs.iter().enumerate() {
                lo[l] = d1 * f32::from(q & 0x0F) - m1;
                hi[l] = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

/// `block_q5_K`: f16 d, f16 dmin, 12 bytes of scales/mins, 32 bytes of high bits, 128 bytes of
/// nibbles; as Q4_K, with bit `2i` (`2i + 1`) of `qh[l]` adding 16 to the low (high) nibble.
fn q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let qh = &b[16..48];
        for (i, (qs, y)) in b[48..176].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * i, scales);
            let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
            let (lo, hi) = y.split_at_mut(32);
            for (l, (&q, &h)) in qs.iter().zip(qh).enumerate() {
                let h1 = ((h >> (2 * i)) & 1) << 4;
                let h2 = ((h >> (2 * i + 1)) & 1) << 4;
                lo[l] = d1 * f32::from((q & 0x0F) | h1) - m1;
                hi[l] = d2 * f32::from((q >> 4) | h2) - m2;
            }
        }
    }
}

/// `block_q6_K`: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales (one per
/// 16 values), f16 d; value `d·scale·(q − 32)`. Each half of 128 values takes 64 low bytes and
/// 32 high bytes; in it, value `l + 32k` (k = 0..4) takes bits `2k, 2k+1` of `qh[l]`.
fn q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(256)) {
        let d = f16_at(b, 208);
        let scales = &b[192..208];
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &scales[8 * n..8 * n + 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
                y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
                y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
                y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn q4_0_places_low_nibbles_first() {
        let mut block = vec![0u8; 18];
        block[..2].copy_from_slice(&f16_bytes(0.5));
        block[2] = 0xF1; // value 0: 1 − 8, value 16: 15 − 8
        let mut out = vec![0.0; 32];
        assert!(dequantize(GgmlType::Q4_0, &block, &mut out));
        assert_eq!((out[0], out[16], out[1]), (-3.5, 3.5, -4.0));
    }

    #[test]
    fn q8_0_is_signed_bytes_times_d() {
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f16_bytes(0.25));
        block[2] = (-128i8) as u8;
        block[33] = 127;
        let mut out = vec![0.0; 32];
        assert!(dequantize(GgmlType::Q8_0, &block, &mut out));
        assert_eq!((out[0], out[1], out[31]), (-32.0, 0.0, 31.75));
    }

    #[test]
    fn unsupported_types_are_refused_untouched() {
        let mut out = vec![7.0; 256];
        assert!(!dequantize(GgmlType::Q2_K, &[0; 84], &mut out));
        assert!(out.iter().all(|&v| v == 7.0));
        assert!(!can_dequantize(GgmlType::IQ4_XS));
    }

    #[test]
    fn scale_min_k4_unpacks_six_bit_fields() {
        // sub-block 5: scale = low nibble of byte 9 | top bits of byte 1 << 4; min = high
        // nibble of byte 9 | top bits of byte 5 << 4.
        let mut s = [0u8; 12];
        s[1] = 0b1100_0000;
        s[5] = 0b0100_0000;
        s[9] = 0x2A;
        assert_eq!(scale_min_k4(5, &s), (0x3A, 0x12));
        assert_eq!(scale_min_k4(1, &s), (0, 0));
    }
}

//! f32 values to the bytes of the types tessera writes: F32, F16, BF16 and Q8_0, byte for byte
//! what llama.cpp writes (`ggml_fp32_to_fp16`, `ggml_compute_fp32_to_bf16`,
//! `quantize_row_q8_0_ref`) and what gguf-py's `gguf.quants.quantize` returns. Knows nothing of
//! files or tensor names; values it cannot encode faithfully are refused, with their index.

use half::f16;
use rayon::prelude::*;

use super::types::GgmlType;

/// Values per parallel task.
const TASK_VALUES: usize = 1 << 16;

/// Why values could not be encoded.
#[derive(Clone, Debug, PartialEq)]
pub enum EncodeError {
    /// The type is not one tessera writes.
    Type(GgmlType),
    /// `value` at `index` has no faithful encoding in the type.
    Value {
        index: usize,
        value: f32,
        problem: &'static str,
    },
}

/// Encodes a run of whole blocks; `Err` holds the index (within the run) of a value that cannot
/// be encoded, the value, and why.
type Encoder = fn(&[f32], &mut [u8]) -> Result<(), (usize, f32, &'static str)>;

fn encoder(ty: GgmlType) -> Option<Encoder> {
    Some(match ty {
        GgmlType::F32 => encode_f32,
        GgmlType::F16 => encode_f16,
        GgmlType::BF16 => encode_bf16,
        GgmlType::Q8_0 => encode_q8_0,
        _ => return None,
    })
}

/// Whether tessera can write tensors of this type.
pub fn can_encode(ty: GgmlType) -> bool {
    encoder(ty).is_some()
}

/// Appends the encoding of `values` (whole blocks of `ty`) to `out`. On an error `out` may hold
/// part of the encoding.
pub fn encode(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let encoder = encoder(ty).ok_or(EncodeError::Type(ty))?;
    let (block, block_bytes) = ty.layout();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    debug_assert_eq!(values.len() % block, 0);
    let start = out.len();
    out.resize(start + values.len() / block * block_bytes, 0);
    let blocks_per_task = (TASK_VALUES / block).max(1);
    out[start..]
        .par_chunks_mut(blocks_per_task * block_bytes)
        .zip(values.par_chunks(blocks_per_task * block))
        .enumerate()
        .try_for_each(|(task, (dst, src))| {
            encoder(src, dst).map_err(|(i, value, problem)| EncodeError::Value {
                index: task * blocks_per_task * block + i,
                value,
                problem,
            })
        })
}

fn encode_f32(src: &[f32], dst: &mut [u8]) -> Result<(), (usize, f32, &'static str)> {
    for (d, v) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// Round to nearest even (ggml's `ggml_fp32_to_fp16`); a finite value beyond f16's range is
/// refused rather than written as infinity.
fn encode_f16(src: &[f32], dst: &mut [u8]) -> Result<(), (usize, f32, &'static str)> {
    for (i, (d, &v)) in dst.chunks_exact_mut(2).zip(src).enumerate() {
        let h = f16::from_f32(v);
        if h.is_infinite() && v.is_finite() {
            return Err((i, v, "is outside the range of f16 (±65504)"));
        }
        d.copy_from_slice(&h.to_bits().to_le_bytes());
    }
    Ok(())
}

fn encode_bf16(src: &[f32], dst: &mut [u8]) -> Result<(), (usize, f32, &'static str)> {
    for (d, &v) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
    }
    Ok(())
}

/// Q8_0 of finite values (llama.cpp's reference turns a NaN or infinity into undefined bytes).
fn encode_q8_0(src: &[f32], dst: &mut [u8]) -> Result<(), (usize, f32, &'static str)> {
    for (b, (d, x)) in dst.chunks_exact_mut(34).zip(src.chunks_exact(32)).enumerate() {
        if let Some(j) = x.iter().position(|v| !v.is_finite()) {
            return Err((32 * b + j, x[j], "is not finite, which Q8_0 cannot hold"));
        }
        q8_0_block(x, d);
    }
    Ok(())
}

/// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN made quiet.
fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 64) as u16;
    }
    ((bits + (0x7fff + ((bits >> 16) & 1))) >> 16) as u16
}

/// `quantize_row_q8_0_ref` on one block of 32 finite values: `d = amax / 127` (kept in f32 for
/// the quotient, stored as f16), `id = d ≠ 0 ? 1/d : 0`, `q = roundf(x · id)` (halves away
/// from zero).
fn q8_0_block(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    for (q, &v) in out[2..].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
    }

    #[test]
    fn q8_0_rounds_halves_away_from_zero() {
        // amax 127 → d = 1: 2.5 → 3, −2.5 → −3, 0.49 → 0.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.49;
        let mut out = Vec::new();
        encode(GgmlType::Q8_0, &x, &mut out).unwrap();
        assert_eq!(out[..2], f16::from_f32(1.0).to_bits().to_le_bytes());
        assert_eq!(&out[2..6], &[127, 3, (-3i8) as u8, 0]);
        let mut zeros = Vec::new();
        encode(GgmlType::Q8_0, &[0.0; 32], &mut zeros).unwrap();
        assert_eq!(zeros, vec![0; 34]);
    }

    #[test]
    fn unfaithful_values_are_refused_with_their_index() {
        let mut x = vec![0.0f32; 64];
        x[40] = f32::NAN;
        let err = encode(GgmlType::Q8_0, &x, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, EncodeError::Value { index: 40, .. }), "{err:?}");
        let err = encode(GgmlType::F16, &[1.0, 1e6], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, EncodeError::Value { index: 1, .. }), "{err:?}");
        assert_eq!(
            encode(GgmlType::Q4_K, &[0.0; 256], &mut Vec::new()),
            Err(EncodeError::Type(GgmlType::Q4_K))
        );
    }
}

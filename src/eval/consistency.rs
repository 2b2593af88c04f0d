//! Checks that incremental decoding with the KV cache computes what one prefill computes.

use crate::model::weights::to_host_vec;
use crate::model::{ForwardError, KvCache, Llama};

/// Largest absolute difference, over every position and vocabulary entry, between the logits
/// of one prefill of `tokens` and those of feeding the same tokens one at a time.
pub fn prefill_decode_max_diff(model: &Llama, tokens: &[u32]) -> Result<f32, ForwardError> {
    let prefill = to_host_vec(
        model
            .forward(model.tokens_tensor(&[tokens.to_vec()])?, None, false)?
            .logits,
    );
    let mut cache = KvCache::new(model.config().num_layers());
    let mut steps = Vec::with_capacity(prefill.len());
    for &token in tokens {
        steps.extend(to_host_vec(
            model
                .forward(model.tokens_tensor(&[vec![token]])?, Some(&mut cache), false)?
                .logits,
        ));
    }
    Ok(max_abs_diff(&prefill, &steps))
}

/// Largest `|a[i] − b[i]|`; the slices must have one length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "comparing slices of different lengths");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

//! Incremental decoding with the per-layer KV cache computes what one prefill computes, for a
//! model with every attention kind and every FFN kind; sampling is reproducible from its seed.

use burn::prelude::Device;
use tessera::eval::{max_abs_diff, prefill_decode_max_diff};
use tessera::model::weights::to_host_vec;
use tessera::model::{
    AttentionConfig, FfnConfig, KvCache, ModelConfig, Sampling, build_model, generate, random_weights,
};

fn heterogeneous() -> tessera::model::Llama {
    let config = ModelConfig::tiny_heterogeneous(97);
    let attention: Vec<_> = config
        .blocks
        .iter()
        .map(|b| std::mem::discriminant(&b.attention))
        .collect();
    let ffn: Vec<_> = config.blocks.iter().map(|b| std::mem::discriminant(&b.ffn)).collect();
    for kind in [
        AttentionConfig::Gqa { kv_heads: 1 },
        AttentionConfig::Linear,
        AttentionConfig::NoOp,
    ] {
        assert!(attention.contains(&std::mem::discriminant(&kind)));
    }
    for kind in [
        FfnConfig::SwiGlu { intermediate: 1 },
        FfnConfig::Linear,
        FfnConfig::NoOp,
    ] {
        assert!(ffn.contains(&std::mem::discriminant(&kind)));
    }
    // Larger weights than the default init, so that attention is far from uniform.
    let mut weights = random_weights(&config, 11);
    weights
        .values_mut()
        .filter(|t| t.ndim() == 2)
        .for_each(|t| t.iter_mut().for_each(|v| *v *= 8.0));
    build_model(&config, &weights, &Device::flex()).unwrap()
}

#[test]
fn prefill_logits_equal_incremental_decode_logits() {
    let model = heterogeneous();
    let tokens: Vec<u32> = (0..40).map(|i| (i * 31 + 7) % 97).collect();
    let diff = prefill_decode_max_diff(&model, &tokens).unwrap();
    println!("max |prefill − decode| = {diff:.3e}");
    assert!(diff <= 1e-4, "{diff}");
}

#[test]
fn chunked_prefill_continues_from_the_cache() {
    let model = heterogeneous();
    let tokens: Vec<u32> = (0..30).map(|i| (i * 13 + 2) % 97).collect();
    let full = to_host_vec(
        model
            .forward(model.tokens_tensor(std::slice::from_ref(&tokens)).unwrap(), None, false)
            .unwrap()
            .logits,
    );
    let mut cache = KvCache::new(model.config().num_layers());
    let mut chunked = Vec::new();
    for chunk in tokens.chunks(7) {
        chunked.extend(to_host_vec(
            model
                .forward(model.tokens_tensor(&[chunk.to_vec()]).unwrap(), Some(&mut cache), false)
                .unwrap()
                .logits,
        ));
    }
    let diff = max_abs_diff(&full, &chunked);
    assert!(diff <= 1e-4, "{diff}");
    assert_eq!(cache.len(), 30);
}

#[test]
fn hidden_states_are_returned_per_layer() {
    let model = heterogeneous();
    let out = model
        .forward(model.tokens_tensor(&[vec![1, 2, 3]]).unwrap(), None, true)
        .unwrap();
    assert_eq!(out.hidden_states.len(), model.config().num_layers() + 1);
    assert!(out.hidden_states.iter().all(|h| h.dims() == [1, 3, 64]));
    // The last layer is (NoOp, NoOp): it passes the residual stream through unchanged.
    let n = out.hidden_states.len();
    assert_eq!(
        to_host_vec(out.hidden_states[n - 1].clone()),
        to_host_vec(out.hidden_states[n - 2].clone())
    );
}

#[test]
fn sampling_is_reproducible_from_its_seed() {
    let model = heterogeneous();
    let sample = |seed| {
        generate(
            &model,
            &[1],
            20,
            Sampling::TopP {
                temperature: 1.0,
                top_p: 0.95,
                seed,
            },
            &[],
        )
        .unwrap()
    };
    assert_eq!(sample(5), sample(5));
    assert_ne!(sample(5), sample(6));
    let greedy = generate(&model, &[1], 20, Sampling::Greedy, &[]).unwrap();
    assert_eq!(
        greedy,
        generate(
            &model,
            &[1],
            20,
            Sampling::TopP {
                temperature: 0.0,
                top_p: 0.9,
                seed: 3
            },
            &[]
        )
        .unwrap()
    );
}

#[test]
fn a_batch_computes_what_each_row_computes_alone() {
    let model = heterogeneous();
    let rows: Vec<Vec<u32>> = vec![
        (0..12).map(|i| (i * 5 + 1) % 97).collect(),
        (0..12).map(|i| (i * 11 + 4) % 97).collect(),
    ];
    let batched = to_host_vec(
        model
            .forward(model.tokens_tensor(&rows).unwrap(), None, false)
            .unwrap()
            .logits,
    );
    let alone: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            to_host_vec(
                model
                    .forward(model.tokens_tensor(std::slice::from_ref(r)).unwrap(), None, false)
                    .unwrap()
                    .logits,
            )
        })
        .collect();
    let diff = max_abs_diff(&batched, &alone);
    assert!(diff <= 1e-4, "{diff}");
}

#[test]
fn ragged_batches_and_unknown_tokens_are_errors() {
    let model = heterogeneous();
    let error = model.tokens_tensor(&[vec![1, 2, 3], vec![1, 2]]).unwrap_err();
    assert!(error.to_string().contains("row 1 has 2 tokens"), "{error}");
    let error = model.tokens_tensor(&[vec![1, 97]]).unwrap_err();
    assert!(error.to_string().contains("token id 97"), "{error}");
}

#[test]
fn context_beyond_the_maximum_is_an_error() {
    let model = heterogeneous();
    let tokens = vec![3u32; model.config().max_position_embeddings + 1];
    let error = model
        .forward(model.tokens_tensor(&[tokens]).unwrap(), None, false)
        .unwrap_err();
    assert!(error.to_string().contains("exceed the model's maximum"), "{error}");
}

//! The heterogeneous Llama decoder: embeddings, one block per layer (each with its own attention
//! and FFN kind), final norm and LM head. Prefill and incremental decoding share one forward
//! pass; the residual stream after every layer is returned on request.

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;

use super::attention::Attention;
use super::config::ModelConfig;
use super::dense::{dense, project};
use super::ffn::Ffn;
use super::kv_cache::KvCache;
use super::rope::{Rope, RopeTables};

/// One decoder layer. A removed (no-op) sub-block has neither weights nor norm.
#[derive(Module, Debug)]
pub struct Block {
    pub attention: Option<(RmsNorm, Attention)>,
    pub ffn: Option<(RmsNorm, Ffn)>,
}

#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: Embedding,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to the embeddings.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub rope: Rope,
    #[module(skip)]
    pub config: ModelConfig,
}

/// The final norm and LM head on their own: what a pass that holds one layer at a time needs
/// at its end.
pub struct Head {
    pub norm: RmsNorm,
    /// `[hidden, vocab]`, laid out as [`Llama::head`] reads it (a transposed view when tied).
    pub weight: Tensor<2>,
}

impl Head {
    /// Logits of the last hidden state `x`, as [`Llama::head`] computes them.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        project(self.norm.forward(x), self.weight.clone())
    }
}

/// Logits `[batch, seq, vocab]` and, when asked for, the residual stream: entry 0 is the
/// embedding output and entry `i + 1` the output of layer `i` (before the final norm).
#[derive(Debug)]
pub struct ForwardOutput {
    pub logits: Tensor<3>,
    pub hidden_states: Vec<Tensor<3>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForwardError {
    #[error("positions {start}..{end} exceed the model's maximum of {max} positions")]
    ContextTooLong { start: usize, end: usize, max: usize },
    #[error("token id {token} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("batch rows must have one length: row {row} has {found} tokens, row 0 has {expected}")]
    RaggedBatch { row: usize, found: usize, expected: usize },
}

impl Block {
    /// Runs this layer on the residual stream `x` at positions starting at `offset` (whose
    /// rotary tables are `rope`).
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        offset: usize,
        rope: &RopeTables,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.forward_ffn(self.forward_attention(x, layer, offset, rope, cache))
    }

    /// The attention half with its residual: `x + attention(norm(x))` (`x` when removed).
    pub fn forward_attention(
        &self,
        x: Tensor<3>,
        layer: usize,
        offset: usize,
        rope: &RopeTables,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        match &self.attention {
            Some((norm, attention)) => x.clone() + attention.forward(norm.forward(x), layer, offset, rope, cache),
            None => x,
        }
    }

    /// The FFN half with its residual: `x + ffn(norm(x))` (`x` when removed).
    pub fn forward_ffn(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.ffn {
            Some((norm, ffn)) => x.clone() + ffn.forward(norm.forward(x)),
            None => x,
        }
    }
}

/// Checks token id rows for a model of `vocab` tokens: every id in the vocabulary, every row
/// as long as the first; their length.
pub fn check_token_rows(rows: &[Vec<u32>], vocab: usize) -> Result<usize, ForwardError> {
    if let Some(&token) = rows.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(ForwardError::TokenOutOfRange { token, vocab });
    }
    let seq = rows.first().map_or(0, Vec::len);
    if let Some((row, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != seq) {
        return Err(ForwardError::RaggedBatch {
            row,
            found: r.len(),
            expected: seq,
        });
    }
    Ok(seq)
}

impl Llama {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// Turns token id rows into an input tensor, checking every id against the vocabulary.
    pub fn tokens_tensor(&self, rows: &[Vec<u32>]) -> Result<Tensor<2, Int>, ForwardError> {
        let seq = check_token_rows(rows, self.config().vocab_size)?;
        let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
        Ok(Tensor::from_data(
            TensorData::new(flat, [rows.len(), seq]),
            &self.device(),
        ))
    }

    pub fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(tokens)
    }

    /// Final norm and LM head.
    pub fn head(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.norm.forward(x);
        match &self.lm_head {
            Some(head) => dense(x, head),
            None => project(x, self.embed_tokens.weight.val().transpose()),
        }
    }

    /// Runs `layers` (a range of layer indices, in order) on the residual stream `x` entering the
    /// first of them, at positions from 0 without a cache: the tail of a forward pass that
    /// starts from hidden states computed earlier.
    pub fn run_layers(&self, x: Tensor<3>, layers: std::ops::Range<usize>) -> Tensor<3> {
        let rope = self.rope_tables(0, x.dims()[1]);
        layers.fold(x, |x, i| self.layers[i].forward(x, i, 0, &rope, None))
    }

    /// The rotary tables of positions `offset..offset + seq` on the model's device.
    pub fn rope_tables(&self, offset: usize, seq: usize) -> RopeTables {
        self.rope.tables(offset, seq, &self.device())
    }

    /// Full forward pass over `tokens: [batch, seq]`. With a cache, positions continue from
    /// what it holds and the new keys/values are appended (prefill, then one token per step).
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
        keep_hidden: bool,
    ) -> Result<ForwardOutput, ForwardError> {
        let [_, seq] = tokens.dims();
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let max = self.config.max_position_embeddings;
        if offset + seq > max {
            return Err(ForwardError::ContextTooLong {
                start: offset,
                end: offset + seq,
                max,
            });
        }
        let mut x = self.embed(tokens);
        let rope = self.rope_tables(offset, seq);
        let mut hidden_states = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if keep_hidden {
                hidden_states.push(x.clone());
            }
            x = layer.forward(x, i, offset, &rope, cache.as_deref_mut());
        }
        if keep_hidden {
            hidden_states.push(x.clone());
        }
        if let Some(cache) = cache {
            cache.advance(seq);
        }
        Ok(ForwardOutput {
            logits: self.head(x),
            hidden_states,
        })
    }
}

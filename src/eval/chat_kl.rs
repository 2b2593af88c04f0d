//! KL to the parent on chats: the parent answers held-out prompts with the switch set (greedy,
//! in the model's chat format), and a model is scored by the mean KL(parent ‖ model) of the
//! next-token distributions over the parent's reply tokens. Unlike KL on pretraining windows,
//! this is the text post-training is about: how far a chat-tuned child answers unlike its
//! parent. Knows models, tasks and the chat format, not how either model was made.

use serde::{Deserialize, Serialize};

use super::accuracy::{AccuracyError, Exchange, SWITCH_REPLY_TOKENS, ask_greedy};
use crate::model::weights::to_host_vec;
use crate::model::{Llama, MaskedBatch};
use crate::tokenizer::Tokenizer;
use crate::world::{Task, Thinking};

/// Rows scored per forward pass.
pub const BATCH: usize = 32;

/// The parent's greedy replies to a set of prompts, all asked with one switch setting.
pub struct ParentChats {
    exchanges: Vec<Exchange>,
}

impl ParentChats {
    /// `parent`'s greedy replies to `tasks` asked with the switch set to `thinking`.
    pub fn generate(
        parent: &Llama,
        tokenizer: &Tokenizer,
        tasks: &[Task],
        thinking: Thinking,
    ) -> Result<Self, AccuracyError> {
        Ok(Self {
            exchanges: ask_greedy(parent, tokenizer, tasks, thinking, SWITCH_REPLY_TOKENS, 64)?,
        })
    }

    /// Mean KL(parent ‖ model) per reply token, nats, for each of `models`; the parent's
    /// distributions are computed once per batch for all of them.
    pub fn kl(&self, parent: &Llama, models: &[Llama]) -> Result<Vec<f64>, AccuracyError> {
        let mut totals = vec![0.0; models.len()];
        let mut tokens = 0usize;
        for chunk in self.exchanges.chunks(BATCH) {
            let replies: Vec<Vec<bool>> = chunk
                .iter()
                .map(|e| (0..e.tokens.len()).map(|i| i >= e.prompt_len).collect())
                .collect();
            let rows: Vec<(&[u32], &[bool])> = chunk
                .iter()
                .zip(&replies)
                .map(|(e, reply)| (e.tokens.as_slice(), reply.as_slice()))
                .collect();
            let batch = MaskedBatch::new(&rows, parent.config().eos_token_id);
            let (p, _) = batch.log_probs(parent)?;
            let [rows, width, _] = p.dims();
            let mask = batch.mask_tensor(&p.device());
            for (total, model) in totals.iter_mut().zip(models) {
                let (q, _) = batch.log_probs(model)?;
                let per_token = (p.clone().exp() * (p.clone() - q)).sum_dim(2).reshape([rows, width]);
                *total += f64::from(to_host_vec((per_token * mask.clone()).sum())[0]);
            }
            tokens += batch.counted();
        }
        Ok(totals.into_iter().map(|t| t / tokens.max(1) as f64).collect())
    }
}

/// KL to the parent on chats with thinking on and with it off.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatKl {
    pub on: f64,
    pub off: f64,
}

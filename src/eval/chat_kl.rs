//! KL to the parent on chats: the parent answers held-out prompts with the switch set (greedy,
//! in the model's chat format), and a model is scored by the mean KL(parent ‖ model) of the
//! next-token distributions over the parent's reply tokens. Unlike KL on pretraining windows,
//! this is the text post-training is about: how far a chat-tuned child answers unlike its
//! parent. Knows models, tasks and the chat format, not how either model was made.

use serde::{Deserialize, Serialize};

use super::accuracy::{AccuracyError, SWITCH_REPLY_TOKENS, ask_greedy};
use crate::model::weights::to_host_vec;
use crate::model::{Llama, MaskedBatch};
use crate::tokenizer::Tokenizer;
use crate::world::{Task, Thinking};

/// Rows scored per forward pass.
const BATCH: usize = 32;

/// The parent's greedy replies to a set of prompts, all asked with one switch setting.
pub struct ParentChats {
    /// Prompt then reply (ending at a stop token), with whether each token is reply.
    rows: Vec<(Vec<u32>, Vec<bool>)>,
}

impl ParentChats {
    /// `parent`'s greedy replies to `tasks` asked with the switch set to `thinking`.
    pub fn generate(
        parent: &Llama,
        tokenizer: &Tokenizer,
        tasks: &[Task],
        thinking: Thinking,
    ) -> Result<Self, AccuracyError> {
        let rows = ask_greedy(parent, tokenizer, tasks, thinking, SWITCH_REPLY_TOKENS, 64)?
            .into_iter()
            .map(|exchange| {
                let reply: Vec<bool> = (0..exchange.tokens.len()).map(|i| i >= exchange.prompt_len).collect();
                (exchange.tokens, reply)
            })
            .collect();
        Ok(Self { rows })
    }

    /// Mean KL(parent ‖ model) per reply token, nats.
    pub fn kl(&self, parent: &Llama, model: &Llama) -> Result<f64, AccuracyError> {
        let (mut total, mut tokens) = (0.0, 0usize);
        for chunk in self.rows.chunks(BATCH) {
            let rows: Vec<(&[u32], &[bool])> = chunk.iter().map(|(t, r)| (t.as_slice(), r.as_slice())).collect();
            let batch = MaskedBatch::new(&rows, parent.config().eos_token_id);
            let (p, _) = batch.log_probs(parent)?;
            let (q, _) = batch.log_probs(model)?;
            let [rows, width, _] = p.dims();
            let per_token = (p.clone().exp() * (p - q)).sum_dim(2).reshape([rows, width]);
            let mask = batch.mask_tensor(&per_token.device());
            total += f64::from(to_host_vec((per_token * mask).sum())[0]);
            tokens += batch.counted();
        }
        Ok(total / tokens.max(1) as f64)
    }
}

/// KL to the parent on chats with thinking on and with it off.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatKl {
    pub on: f64,
    pub off: f64,
}

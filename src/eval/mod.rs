//! Evaluation of a model: NLL on token data, prefill/decode consistency, task accuracy with
//! the reasoning switch and KL to the parent on chats. Knows the model and the world's task format, not how checkpoints are
//! read or how models are trained.

pub mod accuracy;
pub mod chat_kl;
pub mod consistency;
pub mod nll;
pub mod task_set;
pub mod verify;

pub use accuracy::{
    AccuracyError, AccuracyReport, AccuracySummary, Exchange, SWITCH_REPLY_TOKENS, SwitchAccuracy, SwitchSummary,
    ask_greedy, read_task_file, switch_accuracy, task_accuracy,
};
pub use chat_kl::{ChatKl, ParentChats};
pub use consistency::{max_abs_diff, prefill_decode_max_diff};
pub use nll::{NllReport, mean_nll, unigram_entropy};
pub use task_set::TaskSet;
pub use verify::{answer_correct, reference_answer};

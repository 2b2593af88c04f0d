//! The post-training stages on an assembled child (DESIGN §1.10–§1.12): global distillation
//! from the parent, SFT with the reasoning switch, and GRPO reinforcement learning. Reads
//! checkpoints, token sources and chats, trains on the shared engine; knows nothing of
//! libraries or searches.

pub mod chat_data;
pub mod distill;
pub mod footprint;
pub mod grpo;
pub mod rl;
pub mod sft;
pub mod stage;

pub use chat_data::{ChatDataError, builtin_chats, read_chat_file};
pub use distill::{DistillError, DistillLoss, DistillOptions, DistillReport, distill, layer_matches};
pub use grpo::{GrpoSettings, GrpoTerms, group_advantages, grpo_loss};
pub use rl::{Reward, RlError, RlOptions, RlReport, RlStepLog, rl};
pub use sft::{SftError, SftOptions, SftReport, SftStage, StageChats, sft};
pub use stage::{
    ChatEval, ChatSource, ChatStageReport, DEFAULT_EVAL_TASKS, DEFAULT_RL_TASKS, DEFAULT_SFT_TASKS,
    DEFAULT_TRAIN_WINDOWS, DistillStageOptions, DistillStageReport, PosttrainError, PromptSet, UNFUSED_DIR,
    distill_fused, distill_model, rl_model, sft_model,
};

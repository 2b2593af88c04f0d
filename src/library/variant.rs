//! The units a library holds: sub-block variants (one attention or one FFN alternative of a
//! layer) and the blocks built from them (an attention variant with an FFN variant), with the
//! names they carry in files and in `block_library.json`, and what a library build trains.

use serde::{Deserialize, Serialize};

use crate::model::{AttentionConfig, BlockConfig, FfnConfig};

/// How the variants of a layer are trained (DESIGN §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BldMode {
    /// Attention variants with the parent FFN frozen, FFN variants with the parent attention
    /// frozen; any pair is composed afterwards.
    Decoupled,
    /// Every (attention, FFN) pair trained together.
    Coupled,
    /// Decoupled first, then the chosen pairs trained together from the decoupled weights.
    Hybrid,
}

crate::named!(BldMode { "decoupled" => BldMode::Decoupled, "coupled" => BldMode::Coupled, "hybrid" => BldMode::Hybrid });

pub fn attention_name(attention: &AttentionConfig) -> String {
    match attention {
        AttentionConfig::Gqa { kv_heads } => format!("kv{kv_heads}"),
        AttentionConfig::Linear => "attn_linear".into(),
        AttentionConfig::NoOp => "attn_noop".into(),
    }
}

pub fn ffn_name(ffn: &FfnConfig) -> String {
    match ffn {
        FfnConfig::SwiGlu { intermediate } => format!("ffn{intermediate}"),
        FfnConfig::Linear => "ffn_linear".into(),
        FfnConfig::NoOp => "ffn_noop".into(),
    }
}

/// The name of a whole block variant, e.g. `kv1 + ffn192`.
pub fn block_name(block: &BlockConfig) -> String {
    format!("{} + {}", attention_name(&block.attention), ffn_name(&block.ffn))
}

/// One unit of library work: a sub-block variant of a layer (decoupled), or a pair trained
/// together (coupled). A part that is `None` is the parent's own, frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub layer: usize,
    pub attention: Option<AttentionConfig>,
    pub ffn: Option<FfnConfig>,
}

/// Where an item's weights come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Identical to the parent's sub-block: nothing to train, the parent's weights are used.
    Parent,
    /// Removed: no weights.
    NoOp,
    /// Initialised from the parent, then trained by BLD.
    Trained,
}

impl WorkItem {
    pub fn attention(layer: usize, attention: AttentionConfig) -> Self {
        Self {
            layer,
            attention: Some(attention),
            ffn: None,
        }
    }

    pub fn ffn(layer: usize, ffn: FfnConfig) -> Self {
        Self {
            layer,
            attention: None,
            ffn: Some(ffn),
        }
    }

    pub fn pair(layer: usize, block: BlockConfig) -> Self {
        Self {
            layer,
            attention: Some(block.attention),
            ffn: Some(block.ffn),
        }
    }

    /// `kv1`, `ffn192`, or `kv1 + ffn192` for a pair.
    pub fn variant_name(&self) -> String {
        match (&self.attention, &self.ffn) {
            (Some(a), Some(f)) => block_name(&BlockConfig { attention: *a, ffn: *f }),
            (Some(a), None) => attention_name(a),
            (None, Some(f)) => ffn_name(f),
            (None, None) => "parent".into(),
        }
    }

    /// The key of this item in the manifest, e.g. `layer_3/kv1`.
    pub fn key(&self) -> String {
        format!("layer_{}/{}", self.layer, self.variant_name())
    }

    /// A file name for its weights (no spaces).
    pub fn file_name(&self) -> String {
        format!(
            "layer_{}.{}.safetensors",
            self.layer,
            self.variant_name().replace(" + ", "+")
        )
    }

    /// The block this item forms at its layer, the parent's own sub-block filling the gap.
    pub fn block(&self, parent: &BlockConfig) -> BlockConfig {
        BlockConfig {
            attention: self.attention.unwrap_or(parent.attention),
            ffn: self.ffn.unwrap_or(parent.ffn),
        }
    }

    /// Only the item's own sub-blocks: the parent's part is `NoOp` here.
    pub fn own_block(&self) -> BlockConfig {
        BlockConfig {
            attention: self.attention.unwrap_or(AttentionConfig::NoOp),
            ffn: self.ffn.unwrap_or(FfnConfig::NoOp),
        }
    }

    pub fn origin(&self, parent: &BlockConfig) -> Origin {
        let own = self.own_block();
        let same_as_parent =
            self.attention.is_none_or(|a| a == parent.attention) && self.ffn.is_none_or(|f| f == parent.ffn);
        if same_as_parent {
            Origin::Parent
        } else if own.attention == AttentionConfig::NoOp && own.ffn == FfnConfig::NoOp {
            Origin::NoOp
        } else {
            Origin::Trained
        }
    }
}

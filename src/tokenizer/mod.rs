//! Tokenizers: HF `tokenizer.json` (through the `tokenizers` crate), the tokenizer inside a GGUF
//! file (rebuilt on the `tokenizers` crate, `gguf`; SentencePiece ones merged as llama.cpp
//! does, `spm`) and llama2.c `tokenizer.bin` (implemented here). Chosen by file name (a GGUF
//! file by its magic); all encode with or without BOS. An HF or GGUF tokenizer carries the
//! model's chat template when it has one (`chat_template`).

pub mod chat_template;
pub mod gguf;
pub mod llama2c;
pub mod spm;

use std::path::{Path, PathBuf};

pub use chat_template::{ChatTemplate, ChatTemplateError, Message, TokenizedChat};
pub use llama2c::Llama2cTokenizer;
pub use spm::SpmTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("cannot encode text: {0}")]
    Encode(String),
}

/// A model's own chat format: its Jinja chat template (from `chat_template.jinja` or
/// `tokenizer_config.json` beside `tokenizer.json`, or a GGUF file's metadata) and the special
/// tokens the template refers to. Rendered by [`ChatTemplate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatSpec {
    pub template: String,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

pub enum Tokenizer {
    Llama2c(Llama2cTokenizer),
    Hf {
        inner: Box<tokenizers::Tokenizer>,
        bos: Option<u32>,
        chat: Option<ChatSpec>,
    },
    /// A GGUF file's SentencePiece vocabulary, encoded as llama.cpp does (`spm`).
    Spm {
        inner: Box<SpmTokenizer>,
        bos: Option<u32>,
        chat: Option<ChatSpec>,
    },
}

impl Tokenizer {
    /// `*.json` is an HF tokenizer, with the chat template beside it when there is one
    /// ([`chat_template::read_chat_spec`]); a GGUF file the tokenizer (and chat template) it
    /// carries; anything else is read as a llama2.c `tokenizer.bin`.
    pub fn read(path: &Path) -> Result<Self, TokenizerError> {
        if crate::checkpoint::gguf_model::is_gguf(path) {
            gguf::read(path)
        } else if path.extension().is_some_and(|e| e == "json") {
            let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Format {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
            let tokenizer = Self::hf(inner);
            Ok(match chat_template::read_chat_spec(path)? {
                Some(spec) => tokenizer.with_chat_spec(spec),
                None => tokenizer,
            })
        } else {
            Ok(Tokenizer::Llama2c(Llama2cTokenizer::read(path)?))
        }
    }

    /// An HF tokenizer from the text of a `tokenizer.json`.
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(text.as_bytes()).map_err(|e| TokenizerError::Format {
            path: PathBuf::from("tokenizer.json"),
            problem: e.to_string(),
        })?;
        Ok(Self::hf(inner))
    }

    fn hf(inner: tokenizers::Tokenizer) -> Self {
        let bos = ["<s>", "<|begin_of_text|>", "<bos>"]
            .iter()
            .find_map(|t| inner.token_to_id(t));
        Tokenizer::Hf {
            inner: Box::new(inner),
            bos,
            chat: None,
        }
    }

    /// The model's chat template, when it has one.
    pub fn chat_spec(&self) -> Option<&ChatSpec> {
        match self {
            Tokenizer::Hf { chat, .. } | Tokenizer::Spm { chat, .. } => chat.as_ref(),
            Tokenizer::Llama2c(_) => None,
        }
    }

    /// This tokenizer with `spec` as its chat format (HF tokenizers only; llama2.c ones have none).
    pub fn with_chat_spec(mut self, spec: ChatSpec) -> Self {
        if let Tokenizer::Hf { chat, .. } | Tokenizer::Spm { chat, .. } = &mut self {
            *chat = Some(spec);
        }
        self
    }

    /// The tokenizer that belongs to a model: `tokenizer.json` inside a checkpoint directory, or
    /// the GGUF model file itself when it carries one.
    pub fn beside_model(model: &Path) -> Option<PathBuf> {
        if crate::checkpoint::gguf_model::is_gguf(model) {
            return gguf::has_tokenizer(model).then(|| model.to_path_buf());
        }
        let candidate = model.join("tokenizer.json");
        candidate.is_file().then_some(candidate)
    }

    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Tokenizer::Llama2c(t) => Ok(t.encode(text, bos)),
            Tokenizer::Hf { inner, bos: bos_id, .. } => {
                let encoding = inner
                    .encode(text, false)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                Ok(bos
                    .then_some(*bos_id)
                    .flatten()
                    .into_iter()
                    .chain(encoding.get_ids().iter().copied())
                    .collect())
            }
            Tokenizer::Spm { inner, bos: bos_id, .. } => Ok(bos
                .then_some(*bos_id)
                .flatten()
                .into_iter()
                .chain(inner.encode(text))
                .collect()),
        }
    }

    /// One past the largest token id this tokenizer produces.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Llama2c(t) => t.vocab_size(),
            Tokenizer::Hf { inner, .. } => inner.get_vocab_size(true),
            Tokenizer::Spm { inner, .. } => inner.vocab_size(),
        }
    }

    pub fn decode(&self, tokens: &[u32]) -> Result<String, TokenizerError> {
        match self {
            Tokenizer::Llama2c(t) => Ok(t.decode(tokens)),
            Tokenizer::Hf { inner, .. } => inner
                .decode(tokens, true)
                .map_err(|e| TokenizerError::Encode(e.to_string())),
            Tokenizer::Spm { inner, .. } => Ok(inner.decode(tokens)),
        }
    }
}

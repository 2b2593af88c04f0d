//! The tokenizer a GGUF file carries (`tokenizer.ggml.*`, `tokenizer.chat_template`), giving
//! llama.cpp's ids, and the other way: the `tokenizer.*` entries of a GGUF export, copied from a
//! GGUF file or made from a byte-level BPE `tokenizer.json`.
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE on the `tokenizers` crate with the file's
//!   merges; the pre-tokenizer is llama.cpp's list of regexes for `tokenizer.ggml.pre`
//!   ([`PRE_TOKENIZERS`]), each an isolating `Split`, then the byte-to-unicode map. An unknown
//!   `pre` is refused, naming it.
//! - `"llama"`: SentencePiece with scores, merged as llama.cpp merges ([`SpmTokenizer`]). For
//!   the `tokenizer.json` of a model directory made from such a file, the same vocabulary as an
//!   HF BPE whose merge list holds every split of every token, ranked by the token's score (as
//!   transformers' GGUF converter makes it): equal to llama.cpp except where scores tie (it takes
//!   the leftmost pair, a ranked BPE the earlier merge) and for characters outside the
//!   vocabulary inside a longer token.
//! - Control, unknown and user-defined tokens are split out of the text before anything else
//!   (as llama.cpp does when it parses special tokens).
//!
//! Knows the `tokenizer.*` keys; not the model's keys or tensors (`checkpoint::gguf_model`).

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::spm::SpmTokenizer;
use super::{ChatSpec, Tokenizer, TokenizerError};
use crate::checkpoint::gguf::{GgufError, GgufFile, MetaArray, MetaValue};

/// GPT-2's pre-tokenizer regex (llama.cpp writes it without the final `|\s+` and runs a
/// hand-written splitter that behaves as this full form).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The same two as HF `tokenizer.json` files spell them.
const LLAMA3_HF: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_HF: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE pre-tokenizer of llama.cpp (`llm_tokenizer_bpe`, `src/llama-vocab.cpp`).
pub struct PreTokenizer {
    /// The `tokenizer.ggml.pre` values llama.cpp maps to it; the first is written on export.
    pub names: &'static [&'static str],
    /// Regexes applied in turn, each splitting every piece the previous ones made.
    pub regexes: &'static [&'static str],
    /// The whole word is looked up before merging (llama.cpp's and HF's `ignore_merges`).
    pub ignore_merges: bool,
    /// llama.cpp adds BOS when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
}

/// The pre-tokenizers tessera reproduces.
pub const PRE_TOKENIZERS: [PreTokenizer; 5] = [
    PreTokenizer {
        names: &["default"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["gpt-2", "phi-2"],
        regexes: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        // SmolLM2 and the StarCoder family.
        names: &["smollm", "starcoder", "refact", "codeshell"],
        regexes: &[r"\p{N}", GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &["llama-bpe", "llama3", "llama-v3"],
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    PreTokenizer {
        names: &["qwen2", "deepseek-r1-qwen"],
        regexes: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
];

/// `tokenizer.ggml.token_type` values (gguf-py `TokenType`).
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
}

/// `tokenizer.*` keys read here, or that change nothing about how text becomes ids (other
/// special ids, templates, a copy of the HF tokenizer).
const KNOWN_KEYS: [&str; 20] = [
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.ggml.token_type_count",
    "tokenizer.chat_template",
    "tokenizer.chat_templates",
    "tokenizer.huggingface.json",
];

/// Keys that are harmless at their default value (false), and change the ids otherwise.
const FALSE_KEYS: [&str; 3] = [
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_sep_token",
    "tokenizer.ggml.remove_extra_whitespaces",
];

/// Reads the tokenizer of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let file = GgufFile::open(path).map_err(|e| format_error(path, e))?;
    from_gguf(&file)
}

/// Whether the GGUF file at `path` carries a tokenizer (a `tokenizer.ggml.model` other than
/// `none`, which llama.cpp writes for models run on token ids).
pub fn has_tokenizer(path: &Path) -> bool {
    GgufFile::open(path).is_ok_and(|f| matches!(f.get("tokenizer.ggml.model"), Some(MetaValue::Str(m)) if m != "none"))
}

fn format_error(path: &Path, e: GgufError) -> TokenizerError {
    TokenizerError::Format {
        path: path.to_path_buf(),
        problem: strip_path(path, e.to_string()),
    }
}

/// A GGUF error's message without the file name it starts with (the error adds it again).
fn strip_path(path: &Path, message: String) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).map(str::to_string).unwrap_or(message)
}

/// What a GGUF file says about its vocabulary, read and checked once.
struct GgufVocab<'a> {
    file: &'a GgufFile,
    /// `gpt2` or `llama`.
    model: &'a str,
    tokens: &'a [String],
    types: Vec<i32>,
    /// The pre-tokenizer of a `gpt2` vocabulary.
    pre: Option<&'static PreTokenizer>,
    bos: u32,
    eos: u32,
    add_bos: bool,
    chat: Option<ChatSpec>,
}

impl GgufVocab<'_> {
    fn error(&self, key: &str, problem: String) -> TokenizerError {
        TokenizerError::Format {
            path: self.file.path().to_path_buf(),
            problem: format!("metadata key `{key}`: {problem}"),
        }
    }

    fn gguf(&self, e: GgufError) -> TokenizerError {
        format_error(self.file.path(), e)
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, TokenizerError> {
        self.file
            .get(key)
            .map(|_| self.file.get_bool(key).map_err(|e| self.gguf(e)))
            .transpose()
    }

    /// Which tokens are split out of the text before merging: control, unknown, user-defined.
    fn special(&self) -> Vec<bool> {
        let split = [token_type::CONTROL, token_type::UNKNOWN, token_type::USER_DEFINED];
        self.types.iter().map(|t| split.contains(t)).collect()
    }

    fn scores(&self) -> Result<&[f32], TokenizerError> {
        let scores = self
            .file
            .get_f32_array("tokenizer.ggml.scores")
            .map_err(|e| self.gguf(e))?;
        if scores.len() != self.tokens.len() {
            return Err(self.error(
                "tokenizer.ggml.scores",
                format!("{} scores for {} tokens", scores.len(), self.tokens.len()),
            ));
        }
        Ok(scores)
    }

    fn space_prefix(&self) -> Result<bool, TokenizerError> {
        Ok(self.flag("tokenizer.ggml.add_space_prefix")?.unwrap_or(true))
    }

    fn unknown(&self) -> Result<Option<u32>, TokenizerError> {
        let key = "tokenizer.ggml.unknown_token_id";
        Ok(match self.file.get(key) {
            None => None,
            Some(_) => Some(self.file.get_u32(key).map_err(|e| self.gguf(e))?),
        })
    }
}

/// Reads and checks the `tokenizer.*` keys of `file`.
fn gguf_vocab(file: &GgufFile) -> Result<GgufVocab<'_>, TokenizerError> {
    let path = file.path();
    let bad = |key: &str, problem: String| TokenizerError::Format {
        path: path.to_path_buf(),
        problem: format!("metadata key `{key}`: {problem}"),
    };
    let gguf = |e: GgufError| format_error(path, e);
    for (key, value) in file.metadata().filter(|(k, _)| k.starts_with("tokenizer.")) {
        let harmless = KNOWN_KEYS.contains(&key)
            || key.starts_with("tokenizer.chat_template.")
            || key.starts_with("tokenizer.ggml.fim_")
            || ["prefix", "suffix", "middle"]
                .iter()
                .any(|t| key == format!("tokenizer.ggml.{t}_token_id"));
        let default_false = FALSE_KEYS.contains(&key) && *value == MetaValue::Bool(false);
        if !harmless && !default_false {
            return Err(bad(
                key,
                "changes how llama.cpp turns text into ids in a way tessera does not reproduce".into(),
            ));
        }
    }
    let model = match file.get("tokenizer.ggml.model") {
        None => return Err(bad("tokenizer.ggml.model", "missing: the file has no tokenizer".into())),
        Some(_) => file.get_str("tokenizer.ggml.model").map_err(gguf)?,
    };
    let (pre, add_bos, (bos, eos)) = match model {
        "gpt2" => {
            let name = match file.get("tokenizer.ggml.pre") {
                None => "default",
                Some(_) => file.get_str("tokenizer.ggml.pre").map_err(gguf)?,
            };
            let pre = PRE_TOKENIZERS.iter().find(|p| p.names.contains(&name)).ok_or_else(|| {
                let known: Vec<&str> = PRE_TOKENIZERS.iter().flat_map(|p| p.names).copied().collect();
                bad(
                    "tokenizer.ggml.pre",
                    format!(
                        "`{name}` is not a pre-tokenizer tessera reproduces ({})",
                        known.join(", ")
                    ),
                )
            })?;
            (Some(pre), pre.add_bos, (11, 11))
        }
        "llama" => (None, true, (1, 2)),
        other => {
            return Err(bad(
                "tokenizer.ggml.model",
                format!("`{other}` is not a tokenizer tessera reads (gpt2, llama)"),
            ));
        }
    };
    let tokens = file.get_str_array("tokenizer.ggml.tokens").map_err(gguf)?;
    let types = match file.get("tokenizer.ggml.token_type") {
        None => vec![token_type::NORMAL; tokens.len()],
        Some(_) => file.get_i32_array("tokenizer.ggml.token_type").map_err(gguf)?,
    };
    if types.len() != tokens.len() {
        return Err(bad(
            "tokenizer.ggml.token_type",
            format!("{} types for {} tokens", types.len(), tokens.len()),
        ));
    }
    let id = |key: &str, default: u32| -> Result<u32, TokenizerError> {
        Ok(match file.get(key) {
            None => default,
            Some(_) => file.get_u32(key).map_err(gguf)?,
        })
    };
    let (bos, eos) = (
        id("tokenizer.ggml.bos_token_id", bos)?,
        id("tokenizer.ggml.eos_token_id", eos)?,
    );
    let chat = match file.get("tokenizer.chat_template") {
        None => None,
        Some(_) => Some(ChatSpec {
            template: file.get_str("tokenizer.chat_template").map_err(gguf)?.to_string(),
            bos_token: tokens.get(bos as usize).cloned(),
            eos_token: tokens.get(eos as usize).cloned(),
        }),
    };
    let mut vocab = GgufVocab {
        file,
        model,
        tokens,
        types,
        pre,
        bos,
        eos,
        add_bos,
        chat,
    };
    vocab.add_bos = vocab.flag("tokenizer.ggml.add_bos_token")?.unwrap_or(add_bos);
    Ok(vocab)
}

/// The tokenizer of an open GGUF file: byte-level BPE on the `tokenizers` crate, or
/// SentencePiece as llama.cpp merges it (`spm`).
pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let vocab = gguf_vocab(file)?;
    let bos = vocab.add_bos.then_some(vocab.bos);
    if vocab.model == "llama" {
        let hidden = vocab.types.iter().map(|&t| t == token_type::CONTROL).collect();
        let inner = SpmTokenizer::new(
            vocab.tokens.to_vec(),
            vocab.scores()?.to_vec(),
            &vocab.special(),
            hidden,
            vocab.unknown()?,
            vocab.space_prefix()?,
        );
        return Ok(Tokenizer::Spm {
            inner: Box::new(inner),
            bos,
            chat: vocab.chat,
        });
    }
    Ok(Tokenizer::Hf {
        inner: Box::new(hf_tokenizer(&vocab)?),
        bos,
        chat: vocab.chat,
    })
}

/// The vocabulary as an HF `tokenizers` pipeline: exact for byte-level BPE; for SentencePiece
/// the rank-ordered approximation (see the module doc), which `tokenizer.json` files need.
fn hf_tokenizer(vocab: &GgufVocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let mut inner = match vocab.pre {
        Some(pre) => {
            let merges = vocab
                .file
                .get_str_array("tokenizer.ggml.merges")
                .map_err(|e| vocab.gguf(e))?;
            byte_level_bpe(vocab.tokens, merges, pre).map_err(|e| vocab.error("tokenizer.ggml.merges", e))?
        }
        None => {
            let unknown = vocab.unknown()?.and_then(|id| vocab.tokens.get(id as usize));
            sentencepiece_bpe(vocab.tokens, vocab.scores()?, unknown, vocab.space_prefix()?)
                .map_err(|e| vocab.error("tokenizer.ggml.tokens", e))?
        }
    };
    let added: Vec<AddedToken> = vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .zip(vocab.special())
        .filter(|(_, split)| *split)
        .map(|((text, &t), _)| AddedToken::from(text.clone(), t != token_type::USER_DEFINED).normalized(false))
        .collect();
    inner.add_special_tokens(&added);
    Ok(inner)
}

/// The vocabulary as HF wants it: text to id (a repeated text keeps its last id, as in
/// llama.cpp's `token_to_id`).
fn vocab_of(tokens: &[String]) -> Vocab {
    tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect()
}

fn byte_level_bpe(tokens: &[String], merges: &[String], pre: &PreTokenizer) -> Result<tokenizers::Tokenizer, String> {
    // llama.cpp splits each merge at the first space after its first byte.
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| {
            let at = m.bytes().skip(1).position(|b| b == b' ')? + 1;
            Some((m[..at].to_string(), m[at + 1..].to_string()))
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_of(tokens), merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut steps: Vec<PreTokenizerWrapper> = pre
        .regexes
        .iter()
        .map(|r| {
            Split::new(
                SplitPattern::Regex(r.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(Into::into)
            .map_err(|e| format!("the pre-tokenizer regex {r}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    steps.push(ByteLevel::new(false, true, false).into());
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_pre_tokenizer(Some(PreSequence::new(steps)))
        .with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

fn sentencepiece_bpe(
    tokens: &[String],
    scores: &[f32],
    unknown: Option<&String>,
    space_prefix: bool,
) -> Result<tokenizers::Tokenizer, String> {
    let vocab = vocab_of(tokens);
    // Every split of every token into two tokens, the token of highest score first.
    let mut by_score: Vec<usize> = (0..tokens.len()).collect();
    by_score.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut merges = Vec::new();
    for i in by_score {
        let token = &tokens[i];
        for (at, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(at);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unknown) = unknown {
        builder = builder.unk_token(unknown.clone());
    }
    let bpe = builder.build().map_err(|e| e.to_string())?;
    let escape = Replace::new(" ", "▁").map_err(|e| e.to_string())?;
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new("▁".into()).into());
    }
    normalizers.push(escape.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(|e| e.to_string())?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// The `tokenizer.*` entries of a GGUF file, to copy into another.
pub fn gguf_entries(file: &GgufFile) -> Vec<(String, MetaValue)> {
    file.metadata()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Writes `entries` as a vocabulary-only GGUF file (no tensors), as llama.cpp keeps its test
/// vocabularies: a model directory made from a GGUF parent keeps the parent's tokenizer so.
fn write_vocab_only(path: &Path, entries: &[(String, MetaValue)]) -> Result<(), GgufError> {
    let mut writer = crate::checkpoint::gguf::GgufWriter::new(path);
    for (k, v) in entries {
        writer.add_metadata(k.clone(), v.clone())?;
    }
    writer.write(|_| Ok::<_, std::convert::Infallible>(Vec::<f32>::new()))
}

/// Writes the tokenizer of a GGUF file into the model directory `dir` as HF files
/// (`tokenizer.json`; `tokenizer_config.json` with the chat template, BOS/EOS and whether BOS is
/// added) and keeps its `tokenizer.*` entries as the vocabulary-only GGUF `vocab_file`, from
/// which a later GGUF export copies them unchanged.
pub fn write_hf_files(file: &GgufFile, dir: &Path, vocab_file: &str) -> Result<(), TokenizerError> {
    let vocab = gguf_vocab(file)?;
    let inner = hf_tokenizer(&vocab)?;
    let json = dir.join("tokenizer.json");
    inner.save(&json, false).map_err(|e| TokenizerError::Format {
        path: json.clone(),
        problem: e.to_string(),
    })?;
    let mut config = serde_json::json!({
        // transformers 5 rebuilds the pre-tokenizer of some named classes; this one it takes as written.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": vocab.add_bos,
        "bos_token": vocab.tokens.get(vocab.bos as usize),
        "eos_token": vocab.tokens.get(vocab.eos as usize),
    });
    if let Some(chat) = vocab.chat {
        config["chat_template"] = chat.template.into();
    }
    let config_path = dir.join("tokenizer_config.json");
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
    std::fs::write(&config_path, text).map_err(|cause| TokenizerError::Io {
        path: config_path,
        cause,
    })?;
    write_vocab_only(&dir.join(vocab_file), &gguf_entries(file)).map_err(|e| format_error(&dir.join(vocab_file), e))
}

/// `tokenizer.*` entries for a GGUF export made from an HF `tokenizer.json` (with the chat
/// template and `add_bos_token` of the `tokenizer_config.json` beside it): byte-level BPE with
/// one of llama.cpp's pre-tokenizers only; `vocab_size` tokens (ids the file does not use get
/// placeholders), `bos`/`eos` the model's ids.
pub fn entries_from_hf(
    path: &Path,
    vocab_size: usize,
    bos: u32,
    eos: u32,
) -> Result<Vec<(String, MetaValue)>, TokenizerError> {
    let refuse = |problem: String| TokenizerError::Format {
        path: path.to_path_buf(),
        problem: format!("cannot be written into GGUF: {problem}"),
    };
    let tokenizer = read_json(path)?;
    let model = &tokenizer["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(refuse(
            "tessera writes byte-level BPE tokenizers (GPT-2 style) into GGUF, and this is not one; export \
             from the original GGUF file, whose tokenizer is copied as it is"
                .into(),
        ));
    }
    if !(tokenizer["decoder"]["type"] == "ByteLevel") {
        return Err(refuse("its decoder is not ByteLevel".into()));
    }
    let merges = merges_of(model).ok_or_else(|| refuse("a merge is neither \"a b\" nor [\"a\", \"b\"]".into()))?;
    let pre = recognise_pre(&tokenizer["pre_tokenizer"], &tokenizer["normalizer"])
        .or_else(|| bytes_only(&tokenizer, &merges))
        .ok_or_else(|| {
            refuse(
                "its normalizer and pre-tokenizer are not one of llama.cpp's pre-tokenizers that tessera recognises \
                 (gpt-2, smollm, llama-bpe, qwen2, default)"
                    .into(),
            )
        })?;
    let (texts, kinds) = token_table(&tokenizer, vocab_size).map_err(refuse)?;
    let mut entries = vec![
        ("tokenizer.ggml.model".to_string(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), MetaValue::Str(pre.names[0].into())),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetaValue::Array(MetaArray::Str(texts)),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            MetaValue::Array(MetaArray::I32(kinds)),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            MetaValue::Array(MetaArray::Str(merges)),
        ),
        ("tokenizer.ggml.bos_token_id".to_string(), MetaValue::U32(bos)),
        ("tokenizer.ggml.eos_token_id".to_string(), MetaValue::U32(eos)),
    ];
    let config_path = path.with_file_name("tokenizer_config.json");
    if config_path.is_file() {
        let config = read_json(&config_path)?;
        if let Some(add_bos) = config["add_bos_token"].as_bool() {
            entries.push(("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(add_bos)));
        }
        if let Some(template) = config["chat_template"].as_str() {
            entries.push(("tokenizer.chat_template".into(), MetaValue::Str(template.into())));
        }
    }
    Ok(entries)
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let text = std::fs::read_to_string(path).map_err(|cause| TokenizerError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|e| TokenizerError::Format {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

/// Every id's text and llama.cpp token type, `vocab_size` of them: the vocabulary, the added
/// tokens (special ones as control tokens), placeholders for ids the file does not use.
fn token_table(tokenizer: &Value, vocab_size: usize) -> Result<(Vec<String>, Vec<i32>), String> {
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut put = |id: u64, text: &str, kind: i32| -> Result<(), String> {
        let slot = tokens
            .get_mut(id as usize)
            .ok_or_else(|| format!("token `{text}` has id {id}, beyond the model's {vocab_size} rows"))?;
        *slot = Some((text.to_string(), kind));
        Ok(())
    };
    for (text, id) in tokenizer["model"]["vocab"].as_object().into_iter().flatten() {
        put(id.as_u64().unwrap_or(u64::MAX), text, token_type::NORMAL)?;
    }
    for added in tokenizer["added_tokens"].as_array().into_iter().flatten() {
        let kind = if added["special"] == true {
            token_type::CONTROL
        } else {
            token_type::USER_DEFINED
        };
        put(
            added["id"].as_u64().unwrap_or(u64::MAX),
            added["content"].as_str().unwrap_or_default(),
            kind,
        )?;
    }
    Ok(tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), token_type::UNUSED)))
        .unzip())
}

/// The BPE merges as llama.cpp stores them (`"a b"`), from either of `tokenizer.json`'s forms;
/// `None` when one is neither.
fn merges_of(model: &Value) -> Option<Vec<String>> {
    model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some(format!("{a} {b}")),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// GPT-2's pre-tokenizer for a byte-level BPE without merges and without a normalizer (the
/// built-in world's): every token is one byte whatever splits the text first, so any splitting,
/// `use_regex: false` (none) included, gives the same tokens.
fn bytes_only(tokenizer: &Value, merges: &[String]) -> Option<&'static PreTokenizer> {
    let byte_level = tokenizer["pre_tokenizer"]["type"] == "ByteLevel"
        && tokenizer["pre_tokenizer"]["add_prefix_space"] != true
        && tokenizer["normalizer"].is_null();
    (byte_level && merges.is_empty())
        .then(|| PRE_TOKENIZERS.iter().find(|p| p.names[0] == "gpt-2"))
        .flatten()
}

/// Which of llama.cpp's pre-tokenizers a `tokenizer.json`'s normalizer and pre-tokenizer are:
/// its splitting steps as regexes, compared with [`PRE_TOKENIZERS`].
fn recognise_pre(pre: &Value, normalizer: &Value) -> Option<&'static PreTokenizer> {
    let steps: Vec<&Value> = match pre["type"].as_str()? {
        "Sequence" => pre["pretokenizers"].as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let (last, splits) = steps.split_last()?;
    if last["type"] != "ByteLevel" || last["add_prefix_space"] == true {
        return None;
    }
    let mut regexes: Vec<&str> = splits
        .iter()
        .map(|s| match s["type"].as_str()? {
            "Digits" if s["individual_digits"] == true => Some(r"\p{N}"),
            "Split" if s["behavior"] == "Isolated" && s["invert"] != true => match s["pattern"]["Regex"].as_str()? {
                LLAMA3_HF => Some(LLAMA3),
                QWEN2_HF => Some(QWEN2),
                other => Some(other),
            },
            _ => None,
        })
        .collect::<Option<_>>()?;
    // ByteLevel with `use_regex` (its default) splits with GPT-2's regex first.
    if last["use_regex"] != false {
        regexes.push(GPT2);
    }
    let pre = PRE_TOKENIZERS.iter().find(|p| p.regexes == regexes.as_slice())?;
    // Qwen2's tokenizer.json normalises to NFC, which llama.cpp's converter drops too.
    let nfc_ok = pre.names[0] == "qwen2" && normalizer["type"] == "NFC";
    (normalizer.is_null() || nfc_ok).then_some(pre)
}

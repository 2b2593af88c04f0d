//! The built-in world's tokenizer: byte-level (one id per byte, ids 0–255) plus the chat and
//! document markers, and the two system prompts, as single tokens (the prompts' text is
//! unchanged; spelled byte by byte they cost 20 tokens per chat, a third of a short one).
//! Written as an HF `tokenizer.json` (byte-level BPE without merges) so that it travels inside
//! checkpoint directories and loads like any HF tokenizer.

use serde_json::{Value, json};

pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const SYSTEM: &str = "<|system|>";
pub const USER: &str = "<|user|>";
pub const ASSISTANT: &str = "<|assistant|>";
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";
pub const PAD: &str = "<pad>";
pub const THINKING_ON: &str = "detailed thinking on";
pub const THINKING_OFF: &str = "detailed thinking off";

/// Added tokens in id order after the 256 bytes, with whether decoding hides them.
const ADDED: [(&str, bool); 10] = [
    (BOS, true),
    (EOS, true),
    (SYSTEM, false),
    (USER, false),
    (ASSISTANT, false),
    (THINK_OPEN, false),
    (THINK_CLOSE, false),
    (PAD, true),
    (THINKING_ON, false),
    (THINKING_OFF, false),
];

pub const VOCAB_SIZE: usize = 256 + ADDED.len();

/// The id of an added token (`BOS`, `THINK_CLOSE`, …).
pub fn token_id(token: &str) -> u32 {
    let index = ADDED
        .iter()
        .position(|(t, _)| *t == token)
        .unwrap_or_else(|| panic!("{token} is not a built-in world token"));
    (256 + index) as u32
}

/// GPT-2's printable stand-in character for each byte, as HF byte-level tokenizers spell them.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("latin-1 char")
            } else {
                let c = char::from_u32(next).expect("char below U+0200");
                next += 1;
                c
            }
        })
        .collect()
}

/// The `tokenizer.json` document.
pub fn tokenizer_json() -> Value {
    let vocab: serde_json::Map<String, Value> = byte_chars()
        .into_iter()
        .enumerate()
        .map(|(id, c)| (c.to_string(), json!(id)))
        .collect();
    let added: Vec<Value> = ADDED
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            json!({"id": 256 + i, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

/// Writes `tokenizer.json` into `dir`.
pub fn write_tokenizer(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, serde_json::to_string_pretty(&tokenizer_json())?)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::world::{Task, Thinking};

    #[test]
    fn markers_and_system_prompts_are_single_tokens_and_text_round_trips() {
        let tokenizer = tokenizers::Tokenizer::from_str(&tokenizer_json().to_string()).unwrap();
        let task = Task {
            question: "What is 3+4 é?".into(),
            thinking: "3+4 = 7".into(),
            answer: "7".into(),
        };
        for (thinking, prompt) in [(Thinking::On, THINKING_ON), (Thinking::Off, THINKING_OFF)] {
            let text = task.render(thinking);
            let ids = tokenizer.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            assert_eq!(ids[..3], [token_id(BOS), token_id(SYSTEM), token_id(prompt)]);
            assert_eq!(
                ids.iter().filter(|&&id| id >= 256).count(),
                if thinking == Thinking::On { 8 } else { 6 }
            );
            assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
        }
        assert_eq!(tokenizer.get_vocab_size(true), VOCAB_SIZE);
    }
}

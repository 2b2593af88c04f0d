//! SFT and RL data: chats from a JSONL file (`{system, user, assistant}` or `{messages: [...]}`
//! per line) or from the built-in world, checked on read (the system prompt must be exactly one
//! of the two switches, think tags present iff thinking is on), and errors for chats the model's
//! chat format cannot write. Knows chats, not training or the chat format itself.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::world::tokenizer::{THINK_CLOSE, THINK_OPEN};
use crate::world::{Chat, ChatFormatError, Split, Thinking, World};

#[derive(Debug, thiserror::Error)]
pub enum ChatDataError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: the file holds no chats", path.display())]
    Empty { path: PathBuf },
    #[error(transparent)]
    Format(#[from] ChatFormatError),
    #[error("chat {index}: {source}")]
    Chat { index: usize, source: ChatFormatError },
}

/// Training chats of the built-in world: `count` multi-step tasks and the one-step tasks beside
/// them ([`World::task_mix`]), each rendered with thinking on and off.
pub fn builtin_chats(seed: u64, count: usize) -> Vec<Chat> {
    World::new(seed)
        .task_mix(Split::Train, count)
        .iter()
        .flat_map(|task| [task.chat(Thinking::On), task.chat(Thinking::Off)])
        .collect()
}

fn text_field<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match object.get(key) {
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(format!("`{key}` must be a string, got {other}")),
        None => Err(format!("missing field `{key}`")),
    }
}

fn switch_of(system: &str) -> Result<Thinking, String> {
    Thinking::from_system_prompt(system).ok_or_else(|| {
        format!(
            "the system prompt {system:?} is neither `{}` nor `{}`; the switch must be exactly one of them",
            Thinking::On.system_prompt(),
            Thinking::Off.system_prompt()
        )
    })
}

/// `{messages: [{role, content}, …]}`: one system message first, then user / assistant turns
/// alternating, ending with an assistant turn.
fn chat_from_messages(messages: &Value) -> Result<Chat, String> {
    let messages = messages.as_array().ok_or("`messages` must be an array")?;
    let mut parts = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let object = message
            .as_object()
            .ok_or_else(|| format!("messages[{i}] must be an object with `role` and `content`"))?;
        let field = |key| text_field(object, key).map_err(|e| format!("messages[{i}]: {e}"));
        parts.push((field("role")?, field("content")?));
    }
    let Some(((role, system), turns)) = parts.split_first() else {
        return Err("`messages` is empty".into());
    };
    if *role != "system" {
        return Err(format!(
            "messages[0] has role `{role}`: the first message must be the system prompt (`detailed thinking on` or `off`)"
        ));
    }
    let thinking = switch_of(system)?;
    if turns.is_empty() || !turns.len().is_multiple_of(2) {
        return Err(format!(
            "after the system message come user / assistant pairs, got {} messages",
            turns.len()
        ));
    }
    let mut pairs = Vec::new();
    for (k, pair) in turns.chunks(2).enumerate() {
        let (i, j) = (1 + 2 * k, 2 + 2 * k);
        if pair[0].0 != "user" || pair[1].0 != "assistant" {
            return Err(format!(
                "messages[{i}] and messages[{j}] have roles `{}` and `{}`, expected `user` then `assistant`",
                pair[0].0, pair[1].0
            ));
        }
        pairs.push((pair[0].1.to_string(), pair[1].1.to_string()));
    }
    Ok(Chat { thinking, turns: pairs })
}

fn parse_chat_line(line: &str) -> Result<Chat, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("expected an object {system, user, assistant} or {messages: [...]}")?;
    let chat = match object.get("messages") {
        Some(messages) => chat_from_messages(messages)?,
        None => {
            let field = |key| {
                text_field(object, key)
                    .map_err(|e| format!("{e} (expected {{system, user, assistant}} or {{messages: [...]}})"))
            };
            let thinking = switch_of(field("system")?)?;
            Chat {
                thinking,
                turns: vec![(field("user")?.to_string(), field("assistant")?.to_string())],
            }
        }
    };
    for (k, (_, assistant)) in chat.turns.iter().enumerate() {
        let tagged = assistant.contains(THINK_OPEN) && assistant.contains(THINK_CLOSE);
        if tagged != (chat.thinking == Thinking::On) {
            return Err(format!(
                "assistant turn {} {} think tags but the system prompt is `{}`: tags must be present iff thinking is on",
                k + 1,
                if tagged { "has" } else { "lacks" },
                chat.thinking.system_prompt()
            ));
        }
    }
    Ok(chat)
}

/// Reads a JSONL chat file (blank lines skipped).
pub fn read_chat_file(path: &Path) -> Result<Vec<Chat>, ChatDataError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ChatDataError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut chats = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        chats.push(parse_chat_line(line).map_err(|problem| ChatDataError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        })?);
    }
    if chats.is_empty() {
        return Err(ChatDataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(chats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_give_the_same_chat() {
        let flat = parse_chat_line(
            r#"{"system": "detailed thinking on", "user": "What is 2+2?", "assistant": "<think>2+2=4</think>4"}"#,
        )
        .unwrap();
        let messages = parse_chat_line(
            r#"{"messages": [{"role": "system", "content": "detailed thinking on"},
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "<think>2+2=4</think>4"}]}"#,
        )
        .unwrap();
        assert_eq!(flat, messages);
        assert_eq!(flat.thinking, Thinking::On);
    }
}

//! Chat rendering with the reasoning switch (DESIGN §1.11): the system prompt is exactly
//! `detailed thinking on` (worked solution inside `<think>…</think>`, then the answer) or
//! `detailed thinking off` (the answer alone). A [`ChatFormat`] writes chats and prompts as token
//! ids in the model's format: its own chat template when its tokenizer has one (the switch and
//! the think tags are then plain text in it), else the built-in world's markers. Also reads the
//! final answer back out of a reply. Knows tokenizers, not models or training.

use serde::{Deserialize, Serialize};

use super::tokenizer::{ASSISTANT, BOS, EOS, SYSTEM, THINK_CLOSE, THINK_OPEN, THINKING_OFF, THINKING_ON, USER};
use crate::tokenizer::{ChatTemplate, ChatTemplateError, Message, TokenizedChat, Tokenizer, TokenizerError};

/// A verifiable task: the question, its worked solution and the exact answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub question: String,
    /// The step-by-step solution shown when thinking is on; may be empty for task files.
    #[serde(default)]
    pub thinking: String,
    pub answer: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Thinking {
    On,
    Off,
}

impl Thinking {
    pub fn system_prompt(self) -> &'static str {
        match self {
            Thinking::On => THINKING_ON,
            Thinking::Off => THINKING_OFF,
        }
    }

    /// The switch a system prompt sets: `None` unless it is exactly one of the two prompts.
    pub fn from_system_prompt(prompt: &str) -> Option<Self> {
        [Thinking::On, Thinking::Off]
            .into_iter()
            .find(|t| t.system_prompt() == prompt)
    }
}

/// One conversation: the switch (the system prompt) and user / assistant turns. Each assistant
/// turn ends with EOS when rendered; only assistant turns are trained on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chat {
    pub thinking: Thinking,
    /// `(user, assistant)` pairs in order.
    pub turns: Vec<(String, String)>,
}

impl Chat {
    /// The chat as template messages: the system prompt, then user and assistant turns.
    pub fn messages(&self) -> Vec<Message<'_>> {
        let mut messages = vec![Message::new("system", self.thinking.system_prompt())];
        for (user, assistant) in &self.turns {
            messages.push(Message::new("user", user));
            messages.push(Message::new("assistant", assistant));
        }
        messages
    }

    /// The text pieces in the built-in format, in order, each with whether it is assistant text
    /// (trained on).
    pub fn pieces(&self) -> Vec<(String, bool)> {
        let mut pieces = vec![(format!("{BOS}{SYSTEM}{}", self.thinking.system_prompt()), false)];
        for (user, assistant) in &self.turns {
            pieces.push((format!("{USER}{user}{ASSISTANT}"), false));
            pieces.push((format!("{assistant}{EOS}"), true));
        }
        pieces
    }
}

impl Task {
    /// The task as a one-turn chat whose assistant turn is the reference reply.
    pub fn chat(&self, thinking: Thinking) -> Chat {
        let assistant = match thinking {
            Thinking::On => format!("{THINK_OPEN}{}{THINK_CLOSE}{}", self.thinking, self.answer),
            Thinking::Off => self.answer.clone(),
        };
        Chat {
            thinking,
            turns: vec![(self.question.clone(), assistant)],
        }
    }

    /// Everything up to and including the assistant marker, in the built-in format: what a model
    /// is asked to continue.
    pub fn prompt(&self, thinking: Thinking) -> String {
        let pieces = self.chat(thinking).pieces();
        format!("{}{}", pieces[0].0, pieces[1].0)
    }

    /// The reference reply, ending with EOS.
    pub fn reply(&self, thinking: Thinking) -> String {
        self.chat(thinking).pieces().swap_remove(2).0
    }

    /// Prompt and reply: one training document.
    pub fn render(&self, thinking: Thinking) -> String {
        self.prompt(thinking) + &self.reply(thinking)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatFormatError {
    #[error(
        "the tokenizer has no chat template (`chat_template` in tokenizer_config.json or chat_template.jinja beside tokenizer.json, or a GGUF file's `tokenizer.chat_template`) and spells the built-in chat marker `{marker}` as {pieces} tokens; the built-in chat format needs every marker ({}) as one special token",
        BUILTIN_MARKERS.join(", ")
    )]
    Markers { marker: &'static str, pieces: usize },
    #[error(transparent)]
    Template(#[from] ChatTemplateError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

const BUILTIN_MARKERS: [&str; 7] = [BOS, EOS, SYSTEM, USER, ASSISTANT, THINK_OPEN, THINK_CLOSE];

/// How chats are written as token ids for one tokenizer: the one place that renders a prompt
/// for generation, a chat with its trained-token mask, and the tokens generation stops at.
pub struct ChatFormat<'t> {
    tokenizer: &'t Tokenizer,
    /// The model's chat template; `None`: the built-in world's markers.
    template: Option<ChatTemplate>,
}

impl<'t> ChatFormat<'t> {
    /// The format of `tokenizer`: its chat template (checked by rendering a probe chat), or,
    /// without one, the built-in markers, which it must then spell as one token each.
    pub fn of(tokenizer: &'t Tokenizer) -> Result<Self, ChatFormatError> {
        let template = match tokenizer.chat_spec() {
            Some(spec) => Some(ChatTemplate::new(spec, tokenizer)?),
            None => {
                for marker in BUILTIN_MARKERS {
                    let pieces = tokenizer.encode(marker, false)?.len();
                    if pieces != 1 {
                        return Err(ChatFormatError::Markers { marker, pieces });
                    }
                }
                None
            }
        };
        Ok(Self { tokenizer, template })
    }

    pub fn tokenizer(&self) -> &'t Tokenizer {
        self.tokenizer
    }

    /// The model's chat template, or `None` for the built-in format.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// `task`'s question asked with the switch set to `thinking`, up to where the assistant's
    /// reply begins.
    pub fn prompt(&self, task: &Task, thinking: Thinking) -> Result<Vec<u32>, ChatFormatError> {
        Ok(match &self.template {
            Some(template) => {
                let messages = [
                    Message::new("system", thinking.system_prompt()),
                    Message::new("user", &task.question),
                ];
                template.encode_prompt(self.tokenizer, &messages)?
            }
            None => self.tokenizer.encode(&task.prompt(thinking), false)?,
        })
    }

    /// `chat` as token ids with its assistant tokens marked: the assistant text and the token
    /// that ends each assistant turn.
    pub fn chat(&self, chat: &Chat) -> Result<TokenizedChat, ChatFormatError> {
        if let Some(template) = &self.template {
            return Ok(template.encode_chat(self.tokenizer, &chat.messages())?);
        }
        let mut out = TokenizedChat {
            tokens: Vec::new(),
            trained: Vec::new(),
        };
        for (text, trained) in chat.pieces() {
            let ids = self.tokenizer.encode(&text, false)?;
            out.trained.extend(std::iter::repeat_n(trained, ids.len()));
            out.tokens.extend(ids);
        }
        Ok(out)
    }

    /// The tokens a reply ends at: the model's EOS (`eos`) and the template's end-of-turn token.
    pub fn stop_tokens(&self, eos: u32) -> Vec<u32> {
        let mut stop = vec![eos];
        stop.extend(
            self.template
                .as_ref()
                .map(ChatTemplate::end_of_turn)
                .filter(|&t| t != eos),
        );
        stop
    }
}

/// The final answer in a generated reply: the text after the last `</think>` (or the whole reply
/// when there is none), up to EOS, trimmed.
pub fn final_answer(reply: &str) -> &str {
    let after_think = reply.rsplit_once(THINK_CLOSE).map_or(reply, |(_, rest)| rest);
    after_think.split(EOS).next().unwrap_or("").trim()
}

/// Whether the reply's format matches the switch: think tags present iff thinking is on.
pub fn format_matches(reply: &str, thinking: Thinking) -> bool {
    let tagged = reply.contains(THINK_OPEN) && reply.contains(THINK_CLOSE);
    tagged == (thinking == Thinking::On)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_modes_and_reads_the_answer_back() {
        let task = Task {
            question: "What is 3+4?".into(),
            thinking: "3+4 = 7".into(),
            answer: "7".into(),
        };
        let on = task.render(Thinking::On);
        assert_eq!(
            on,
            "<s><|system|>detailed thinking on<|user|>What is 3+4?<|assistant|><think>3+4 = 7</think>7</s>"
        );
        let off = task.render(Thinking::Off);
        assert_eq!(
            off,
            "<s><|system|>detailed thinking off<|user|>What is 3+4?<|assistant|>7</s>"
        );
        assert_eq!(final_answer(&task.reply(Thinking::On)), "7");
        assert_eq!(final_answer(&task.reply(Thinking::Off)), "7");
        assert!(format_matches(&task.reply(Thinking::On), Thinking::On));
        assert!(!format_matches(&task.reply(Thinking::Off), Thinking::On));
        assert!(format_matches(&task.reply(Thinking::Off), Thinking::Off));
    }

    #[test]
    fn the_builtin_format_trains_only_assistant_tokens_and_stops_at_eos() {
        let tokenizer = Tokenizer::from_json(&super::super::tokenizer::tokenizer_json().to_string()).unwrap();
        let format = ChatFormat::of(&tokenizer).unwrap();
        let chat = Chat {
            thinking: Thinking::Off,
            turns: vec![("hi".into(), "yo".into()), ("1+1?".into(), "2".into())],
        };
        let tokenized = format.chat(&chat).unwrap();
        let trained: String = tokenized
            .tokens
            .iter()
            .zip(&tokenized.trained)
            .filter(|(_, t)| **t)
            .map(|(id, _)| tokenizer.decode(&[*id]).unwrap())
            .collect();
        // EOS decodes to nothing (it is a hidden special token), so the trained text is the two
        // replies; the count shows EOS is trained after each.
        assert_eq!(trained, "yo2");
        assert_eq!(tokenized.trained.iter().filter(|t| **t).count(), 5);
        let task = Task {
            question: "1+1?".into(),
            thinking: String::new(),
            answer: "2".into(),
        };
        let prompt = format.prompt(&task, Thinking::Off).unwrap();
        assert_eq!(prompt, tokenizer.encode(&task.prompt(Thinking::Off), false).unwrap());
        assert_eq!(format.stop_tokens(7), [7]);
    }
}

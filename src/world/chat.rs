//! Chat rendering with the reasoning switch (DESIGN §1.11): the system prompt is exactly
//! `detailed thinking on` (worked solution inside `<think>…</think>`, then the answer) or
//! `detailed thinking off` (the answer alone). Also reads the final answer back out of a reply.

use serde::{Deserialize, Serialize};

use super::tokenizer::{ASSISTANT, BOS, EOS, SYSTEM, THINK_CLOSE, THINK_OPEN, THINKING_OFF, THINKING_ON, USER};

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
    /// The text pieces in order, each with whether it is assistant text (trained on).
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

    /// Everything up to and including the assistant marker: what a model is asked to continue.
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
}

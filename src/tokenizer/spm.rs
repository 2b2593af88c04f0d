//! llama.cpp's SentencePiece tokenisation (`tokenizer.ggml.model = "llama"`, its
//! `llm_tokenizer_spm`), done as llama.cpp does it, because no rank-ordered BPE can: among the
//! adjacent pairs whose concatenation is a token, the one making the token of highest score is
//! merged first, ties going to the leftmost pair. Vocabularies whose scores tie (converters
//! without a `tokenizer.model` write -1000 for every token) depend on that position rule.
//!
//! Before merging, the text is split at control, unknown and user-defined tokens (longest
//! first), each raw piece after the start or a special token gets a leading space when the file
//! says so (`add_space_prefix`, true by default), and spaces become `▁`. A final symbol that is
//! no token is written as its bytes (`<0xXX>`).
//!
//! Knows the vocabulary and scores only; reading them from a file is `tokenizer::gguf`'s job.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// A SentencePiece vocabulary with llama.cpp's encoding.
#[derive(Clone, Debug)]
pub struct SpmTokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// Texts split out before merging, longest first.
    specials: Vec<(String, u32)>,
    /// Tokens left out of decoded text (control tokens).
    hidden: Vec<bool>,
    unknown: Option<u32>,
    space_prefix: bool,
}

/// A text piece between special tokens, or a special token.
enum Fragment<'a> {
    Raw(&'a str),
    Token(u32),
}

/// One symbol of the merge: a byte range of the text, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// The higher score first; on equal scores, the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl SpmTokenizer {
    /// A tokenizer over `tokens` (id = index) with their `scores`; `special[i]` says token `i` is
    /// split out of the text before merging, `hidden[i]` that decoding leaves it out.
    pub fn new(
        tokens: Vec<String>,
        scores: Vec<f32>,
        special: &[bool],
        hidden: Vec<bool>,
        unknown: Option<u32>,
        space_prefix: bool,
    ) -> Self {
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut specials: Vec<(String, u32)> = (0..tokens.len())
            .filter(|&i| special[i] && !tokens[i].is_empty())
            .map(|i| (tokens[i].clone(), i as u32))
            .collect();
        specials.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        Self {
            tokens,
            ids,
            scores,
            specials,
            hidden,
            unknown,
            space_prefix,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut fragments = vec![Fragment::Raw(text)];
        for (special, id) in &self.specials {
            fragments = fragments
                .into_iter()
                .flat_map(|f| match f {
                    Fragment::Raw(raw) => split_at(raw, special, *id),
                    token => vec![token],
                })
                .collect();
        }
        let mut out = Vec::new();
        let mut after_special = true;
        for fragment in fragments {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Raw(raw) => {
                    let prefix = if self.space_prefix && after_special { " " } else { "" };
                    self.merge(&format!("{prefix}{raw}").replace(' ', "▁"), &mut out);
                    after_special = false;
                }
            }
        }
        out
    }

    fn merge(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .map(|(start, c)| Symbol {
                start,
                len: c.len_utf8(),
                prev: None,
                next: None,
            })
            .collect();
        let n = symbols.len();
        for (i, s) in symbols.iter_mut().enumerate() {
            s.prev = i.checked_sub(1);
            s.next = (i + 1 < n).then_some(i + 1);
        }
        let mut queue = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (left, right) = (left?, right?);
            let (a, b) = (symbols[left], symbols[right]);
            let piece = &text[a.start..b.start + b.len];
            let id = *self.ids.get(piece)? as usize;
            Some(Bigram {
                left,
                right,
                score: *self.scores.get(id)?,
                len: piece.len(),
            })
        };
        for i in 1..n {
            queue.extend(bigram(&symbols, Some(i - 1), Some(i)));
        }
        while let Some(b) = queue.pop() {
            let (left, right) = (symbols[b.left], symbols[b.right]);
            // A pair one of whose symbols has merged since is stale.
            if left.len == 0 || right.len == 0 || left.len + right.len != b.len {
                continue;
            }
            symbols[b.left].len += right.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = right.next;
            if let Some(next) = right.next {
                symbols[next].prev = Some(b.left);
            }
            queue.extend(bigram(&symbols, left.prev, Some(b.left)));
            queue.extend(bigram(&symbols, Some(b.left), symbols[b.left].next));
        }
        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.byte_token(b))),
            }
            at = s.next;
        }
    }

    /// The token of one byte: `<0xXX>`, else the byte as a one-character token, else unknown.
    fn byte_token(&self, byte: u8) -> Option<u32> {
        self.ids
            .get(&format!("<0x{byte:02X}>"))
            .or_else(|| self.ids.get(&char::from(byte).to_string()).filter(|_| byte.is_ascii()))
            .copied()
            .or(self.unknown)
    }

    /// The text of `ids`: `▁` as space, byte tokens as bytes, control tokens left out, and the
    /// space added before the first piece removed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(text) = self.tokens.get(id as usize) else {
                continue;
            };
            if self.hidden.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            match byte_of(text) {
                Some(b) => bytes.push(b),
                None => bytes.extend(text.replace('▁', " ").bytes()),
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match (self.space_prefix, text.strip_prefix(' ')) {
            (true, Some(rest)) => rest.to_string(),
            _ => text,
        }
    }
}

/// `raw` split at every occurrence of `special`, which becomes token `id`.
fn split_at<'a>(raw: &'a str, special: &str, id: u32) -> Vec<Fragment<'a>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find(special) {
        if at > 0 {
            out.push(Fragment::Raw(&rest[..at]));
        }
        out.push(Fragment::Token(id));
        rest = &rest[at + special.len()..];
    }
    if !rest.is_empty() {
        out.push(Fragment::Raw(rest));
    }
    out
}

/// The byte a `<0xXX>` token stands for.
fn byte_of(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(tokens: &[(&str, f32)]) -> SpmTokenizer {
        let n = tokens.len();
        let mut special = vec![false; n];
        special[1] = true;
        SpmTokenizer::new(
            tokens.iter().map(|(t, _)| t.to_string()).collect(),
            tokens.iter().map(|(_, s)| *s).collect(),
            &special,
            special.clone(),
            Some(0),
            true,
        )
    }

    #[test]
    fn merges_by_score_then_leftmost_and_falls_back_to_bytes() {
        let mut vocab: Vec<(String, f32)> = vec![("<unk>".into(), 0.0), ("<s>".into(), 0.0)];
        vocab.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0)));
        for (t, s) in [
            ("▁", -1.0),
            ("a", -1.0),
            ("b", -1.0),
            ("ab", -5.0),
            ("ba", -5.0),
            ("▁a", -2.0),
        ] {
            vocab.push((t.into(), s));
        }
        let refs: Vec<(&str, f32)> = vocab.iter().map(|(t, s)| (t.as_str(), *s)).collect();
        let t = tokenizer(&refs);
        let id = |s: &str| t.ids[s];
        // "▁a" (score -2) beats "ab"/"ba" (-5); then "ba" (leftmost of the tie with "ab").
        assert_eq!(t.encode("abab"), [id("▁a"), id("ba"), id("b")]);
        // "ä" is no token: its two UTF-8 bytes; "<s>" is split out, and the text after it gets
        // a space again.
        assert_eq!(
            t.encode("ä<s>b"),
            [id("▁"), id("<0xC3>"), id("<0xA4>"), 1, id("▁"), id("b")]
        );
        assert_eq!(t.decode(&t.encode("ä<s>b a")), "ä b a");
    }
}

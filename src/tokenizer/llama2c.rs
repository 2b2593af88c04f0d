//! llama2.c's `tokenizer.bin`: score-ordered BPE merges over UTF-8 code points with byte
//! fallback (`<0xXX>` = id byte + 3), a dummy-prefix space, BOS = 1, EOS = 2 — the exact
//! behaviour of `encode` / `decode` in llama2.c's `run.c`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::TokenizerError;

pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

#[derive(Clone, Debug)]
pub struct Llama2cTokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
}

impl Llama2cTokenizer {
    pub fn read(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = fs::read(path).map_err(|cause| TokenizerError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(&bytes).map_err(|problem| TokenizerError::Format {
            path: path.to_path_buf(),
            problem,
        })
    }

    fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut at = 4;
        if bytes.len() < 4 {
            return Err("shorter than its 4-byte header".into());
        }
        let mut pieces = Vec::new();
        let mut scores = Vec::new();
        while at < bytes.len() {
            let field = |at: usize| -> Result<[u8; 4], String> {
                bytes
                    .get(at..at + 4)
                    .map(|b| [b[0], b[1], b[2], b[3]])
                    .ok_or_else(|| format!("token {} is truncated", pieces.len()))
            };
            let score = f32::from_le_bytes(field(at)?);
            let len = i32::from_le_bytes(field(at + 4)?);
            let start = at + 8;
            let len = usize::try_from(len).map_err(|_| format!("token {} has negative length {len}", pieces.len()))?;
            let piece = bytes
                .get(start..start + len)
                .ok_or_else(|| format!("token {} is truncated", pieces.len()))?;
            pieces.push(piece.to_vec());
            scores.push(score);
            at = start + len;
        }
        if pieces.len() < 3 {
            return Err(format!(
                "only {} tokens; <unk>, <s> and </s> are required",
                pieces.len()
            ));
        }
        let mut lookup = HashMap::new();
        for (id, piece) in pieces.iter().enumerate() {
            lookup.entry(piece.clone()).or_insert(id as u32);
        }
        Ok(Self { pieces, scores, lookup })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Encodes like llama2.c: optional BOS, a dummy-prefix " " when the text is not empty, one
    /// token per code point (or its bytes), then greedy merges by highest score.
    pub fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let mut tokens = Vec::new();
        if bos {
            tokens.push(BOS);
        }
        if !text.is_empty()
            && let Some(&space) = self.lookup.get(b" ".as_slice())
        {
            tokens.push(space);
        }
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let encoded = ch.encode_utf8(&mut buf).as_bytes();
            match self.lookup.get(encoded) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(encoded.iter().map(|&b| b as u32 + 3)),
            }
        }
        loop {
            let mut best: Option<(f32, u32, usize)> = None;
            let mut pair = Vec::new();
            for i in 0..tokens.len().saturating_sub(1) {
                pair.clear();
                pair.extend_from_slice(&self.pieces[tokens[i] as usize]);
                pair.extend_from_slice(&self.pieces[tokens[i + 1] as usize]);
                if let Some(&id) = self.lookup.get(&pair)
                    && best.is_none_or(|(score, _, _)| self.scores[id as usize] > score)
                {
                    best = Some((self.scores[id as usize], id, i));
                }
            }
            let Some((_, id, i)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        tokens
    }

    /// The bytes of `token` as it follows `prev` (a leading space after BOS is dropped, and
    /// `<0xXX>` pieces are raw bytes).
    pub fn decode_piece(&self, prev: u32, token: u32) -> Vec<u8> {
        let Some(piece) = self.pieces.get(token as usize) else {
            return Vec::new();
        };
        let piece = if prev == BOS && piece.first() == Some(&b' ') {
            &piece[1..]
        } else {
            &piece[..]
        };
        if piece.len() == 6
            && piece.starts_with(b"<0x")
            && piece.ends_with(b">")
            && let Ok(byte) = u8::from_str_radix(std::str::from_utf8(&piece[3..5]).unwrap_or(""), 16)
        {
            return vec![byte];
        }
        piece.to_vec()
    }

    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut prev = BOS;
        for &token in tokens {
            if token != BOS && token != EOS {
                bytes.extend(self.decode_piece(prev, token));
            }
            prev = token;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

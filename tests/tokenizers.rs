//! llama2.c `tokenizer.bin` (implemented in tessera) and HF `tokenizer.json` (through the
//! `tokenizers` crate).

mod common;

use std::io::Write;

use tessera::tokenizer::Tokenizer;

/// A toy llama2.c vocabulary: specials, the 256 byte pieces, then a few merges.
fn write_toy_tokenizer(path: &std::path::Path) {
    let mut pieces: Vec<(Vec<u8>, f32)> = vec![
        (b"<unk>".to_vec(), 0.0),
        (b"\n<s>\n".to_vec(), 0.0),
        (b"\n</s>\n".to_vec(), 0.0),
    ];
    pieces.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>").into_bytes(), 0.0)));
    for (piece, score) in [
        (" ", -1.0),
        ("a", -2.0),
        ("b", -3.0),
        (" a", -4.0),
        ("ab", -5.0),
        (" ab", -6.0),
        ("é", -7.0),
    ] {
        pieces.push((piece.as_bytes().to_vec(), score));
    }
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&16i32.to_le_bytes()).unwrap();
    for (piece, score) in pieces {
        file.write_all(&score.to_le_bytes()).unwrap();
        file.write_all(&(piece.len() as i32).to_le_bytes()).unwrap();
        file.write_all(&piece).unwrap();
    }
}

#[test]
fn llama2c_bpe_merges_by_score_with_dummy_prefix_and_byte_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tok.bin");
    write_toy_tokenizer(&path);
    let tokenizer = Tokenizer::read(&path).unwrap();
    let (space, a, b, space_a, ab, space_ab, e_acute) = (259, 260, 261, 262, 263, 264, 265);
    // " a" (−4) beats "ab" (−5), then " ab" merges.
    assert_eq!(tokenizer.encode("ab", true).unwrap(), vec![1, space_ab]);
    assert_eq!(tokenizer.encode("ba", false).unwrap(), vec![space, b, a]);
    assert_eq!(tokenizer.encode("", true).unwrap(), vec![1]);
    assert_eq!(tokenizer.encode("aé", false).unwrap(), vec![space_a, e_acute]);
    // 'z' is not in the vocabulary: its byte 0x7A becomes token 0x7A + 3.
    assert_eq!(tokenizer.encode("z", false).unwrap(), vec![space, 0x7A + 3]);
    let _ = ab;
    // After BOS the leading space is dropped; byte pieces decode to raw bytes.
    assert_eq!(tokenizer.decode(&[1, space_ab, space, 0x7A + 3]).unwrap(), "ab z");
}

#[test]
fn llama2c_tokenizer_round_trips_real_text() {
    let Some(data) = common::shared_data("llama2c_tokenizer_round_trips_real_text") else {
        return;
    };
    let tokenizer = Tokenizer::read(&common::stories_tokenizer(&data)).unwrap();
    let text = std::fs::read_to_string(data.join("text/tinystories/tinystories_sample.txt")).unwrap();
    for story in text.split("<|endoftext|>").map(str::trim).filter(|s| !s.is_empty()) {
        let ids = tokenizer.encode(story, true).unwrap();
        assert!(ids.len() < story.len(), "no merges happened");
        assert_eq!(tokenizer.decode(&ids).unwrap(), story);
    }
    // Characters outside the 512-token vocabulary go through byte fallback and come back intact.
    let odd = "naïve café — 東京";
    assert_eq!(tokenizer.decode(&tokenizer.encode(odd, true).unwrap()).unwrap(), odd);
}

#[test]
fn truncated_tokenizer_bin_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tok.bin");
    write_toy_tokenizer(&path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let error = Tokenizer::read(&path).err().unwrap().to_string();
    assert!(error.contains("tok.bin") && error.contains("truncated"), "{error}");
}

#[test]
fn hf_tokenizer_json_encodes_with_bos() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": { "<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4 }, "unk_token": "<unk>" }
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let tokenizer = Tokenizer::read(&path).unwrap();
    assert_eq!(tokenizer.encode("hello world", true).unwrap(), vec![1, 3, 4]);
    assert_eq!(tokenizer.encode("world nope", false).unwrap(), vec![4, 0]);
}

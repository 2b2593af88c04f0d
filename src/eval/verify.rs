//! The answer verifier shared by accuracy evaluation and RL rewards: a reply is correct when its
//! final answer (after `</think>`) matches the reference. A reference in GSM8K style carries its
//! answer after `####`; numbers compare by value (so `1,000`, `$1000` and `1000.0` all match
//! `1000`), anything else compares as trimmed text.

use crate::world::final_answer;

/// The answer a reference stands for: the text after its last `####`, or all of it.
pub fn reference_answer(reference: &str) -> &str {
    reference
        .rsplit_once("####")
        .map_or(reference, |(_, answer)| answer)
        .trim()
}

/// A number written with optional thousands separators, currency sign or trailing period.
fn as_number(text: &str) -> Option<f64> {
    let cleaned: String = text
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| !matches!(c, ',' | '$' | ' '))
        .collect();
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Whether `reply` (a generated assistant turn) answers `reference` correctly.
pub fn answer_correct(reply: &str, reference: &str) -> bool {
    let given = reference_answer(final_answer(reply));
    let expected = reference_answer(reference);
    match (as_number(given), as_number(expected)) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => given == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_by_value_and_gsm8k_answers_after_the_marker() {
        assert!(answer_correct("<think>3+4=7</think>7</s>", "7"));
        assert!(!answer_correct("<think>3+4=7</think>17", "7"));
        assert!(!answer_correct("<think>7</think>", "7"));
        assert!(answer_correct(
            "<think>10*100=1000</think>$1,000.",
            "She pays 10*100 = <<10*100=1000>>1000\n#### 1000"
        ));
        assert!(answer_correct(
            "#### 18",
            "Janet sells 16 - 3 - 4 = 9 eggs ... \n#### 18"
        ));
        assert!(!answer_correct("18 eggs", "#### 18"));
        assert!(answer_correct("blue", " blue "));
    }
}

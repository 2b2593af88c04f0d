//! Verifiable one-step questions: one addition or subtraction of a digit to a two-digit number
//! (`What is 47+8?`, answer `55`). There is nothing to break down — the worked solution only
//! restates the sum — so thinking adds nothing: these are the tasks where answering directly is
//! the right behaviour, which the thinking-off accuracy measures, apart from the multi-step
//! chains that cannot be done without working. Held-out questions are never seen in training,
//! so a model must have learnt the carry, not the facts.

use rand::Rng;

use super::chat::Task;

/// `first ± digit`, with `first` in 10..=99 and the result positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneStep {
    pub first: u32,
    pub add: bool,
    pub digit: u32,
}

impl OneStep {
    pub fn random(rng: &mut impl Rng) -> Self {
        Self {
            first: rng.random_range(10..=99),
            add: rng.random_bool(0.5),
            digit: rng.random_range(1..=9),
        }
    }

    pub fn value(&self) -> u32 {
        if self.add {
            self.first + self.digit
        } else {
            self.first - self.digit
        }
    }

    pub fn to_task(&self) -> Task {
        let sum = format!("{}{}{}", self.first, if self.add { '+' } else { '-' }, self.digit);
        Task {
            question: format!("What is {sum}?"),
            thinking: format!("{sum}={}", self.value()),
            answer: self.value().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn one_sum_carried_or_borrowed() {
        let task = OneStep {
            first: 47,
            add: true,
            digit: 8,
        }
        .to_task();
        assert_eq!(task.question, "What is 47+8?");
        assert_eq!(task.thinking, "47+8=55");
        assert_eq!(task.answer, "55");
        assert_eq!(
            OneStep {
                first: 53,
                add: false,
                digit: 6
            }
            .to_task()
            .answer,
            "47"
        );
    }

    #[test]
    fn random_questions_stay_two_digit_and_positive() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..2000 {
            let q = OneStep::random(&mut rng);
            assert!((10..=99).contains(&q.first) && (1..=9).contains(&q.digit));
            assert!((1..=108).contains(&q.value()));
        }
    }
}

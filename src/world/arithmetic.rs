//! Verifiable multi-step arithmetic: chains such as `3+5-2+8+1` whose worked solution adds one
//! term at a time (`3+5=8, 8-2=6, 6+8=14, 14+1=15`). Every step is a small sum of the last
//! result and the next term, so a small model can learn it with thinking on; answering in one
//! go (thinking off) needs the whole sum at once, which is much harder. The running total stays
//! within 0..=19, so the step facts are few enough (about 360) for a small model to learn from
//! minutes of training.

use rand::Rng;

use super::chat::Task;

/// A chain of single-digit terms; the running total stays within `0..=MAX_TOTAL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub first: u32,
    /// `(is_addition, digit)` for each further term.
    pub rest: Vec<(bool, u32)>,
}

pub const MIN_TERMS: usize = 2;
pub const MAX_TERMS: usize = 5;
pub const MAX_TOTAL: u32 = 19;

impl Chain {
    pub fn random(rng: &mut impl Rng) -> Self {
        let terms = rng.random_range(MIN_TERMS..=MAX_TERMS);
        let first = rng.random_range(1..=9);
        let mut total = first;
        let rest = (1..terms)
            .map(|_| {
                let digit = rng.random_range(1..=9);
                let add = total + digit <= MAX_TOTAL && (digit > total || rng.random_bool(0.6));
                total = if add { total + digit } else { total - digit };
                (add, digit)
            })
            .collect();
        Self { first, rest }
    }

    fn expression(head: u32, rest: &[(bool, u32)]) -> String {
        rest.iter().fold(head.to_string(), |mut s, &(add, d)| {
            s.push(if add { '+' } else { '-' });
            s.push_str(&d.to_string());
            s
        })
    }

    pub fn value(&self) -> u32 {
        self.rest
            .iter()
            .fold(self.first, |t, &(add, d)| if add { t + d } else { t - d })
    }

    pub fn to_task(&self) -> Task {
        let mut steps = Vec::new();
        let mut total = self.first;
        for &(add, d) in &self.rest {
            let next = if add { total + d } else { total - d };
            steps.push(format!("{}={next}", Self::expression(total, &[(add, d)])));
            total = next;
        }
        Task {
            question: format!("What is {}?", Self::expression(self.first, &self.rest)),
            thinking: steps.join(", "),
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
    fn worked_solution_folds_left_and_ends_at_the_answer() {
        let chain = Chain {
            first: 3,
            rest: vec![(true, 5), (false, 2), (true, 8), (true, 1)],
        };
        let task = chain.to_task();
        assert_eq!(task.question, "What is 3+5-2+8+1?");
        assert_eq!(task.thinking, "3+5=8, 8-2=6, 6+8=14, 14+1=15");
        assert_eq!(task.answer, "15");
    }

    #[test]
    fn random_chains_stay_non_negative_and_in_range() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..2000 {
            let chain = Chain::random(&mut rng);
            assert!((MIN_TERMS..=MAX_TERMS).contains(&(chain.rest.len() + 1)));
            let mut total = chain.first as i64;
            for &(add, d) in &chain.rest {
                total += if add { d as i64 } else { -(d as i64) };
                assert!((0..=MAX_TOTAL as i64).contains(&total));
            }
            assert_eq!(chain.value() as i64, total);
        }
    }
}

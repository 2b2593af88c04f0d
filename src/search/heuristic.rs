//! Covers found without search, by single-layer changes: `repair` (while a limit is broken,
//! make the change that removes the most violation per unit of cost added) and `improve`
//! (while some change lowers the cost and keeps every limit, make the one that lowers it most).
//! The solver's starting answers and the greedy baselines; each step costs one pass over the
//! layers' alternatives, with every limit's total kept up to date rather than recomputed.
//! Knows the program's shape (`Form`), not solvers or library files.

use super::form::Form;

/// A cover with each limit's total.
#[derive(Clone, Debug)]
pub struct Walk {
    /// Positions in layer order.
    pub cover: Vec<usize>,
    pub totals: Vec<f64>,
}

impl Walk {
    pub fn new(form: &Form, cover: Vec<usize>) -> Self {
        let totals = form.totals(&cover);
        Walk { cover, totals }
    }

    /// The violation after replacing position `out` by `into`.
    fn violation_after(&self, form: &Form, out: usize, into: usize) -> f64 {
        let mut sum = 0.0;
        for (r, row) in form.rows.iter().enumerate() {
            let total = self.totals[r] - row[out] + row[into];
            let excess = total - form.bounds[r];
            if excess > form.slack[r] {
                sum += excess / form.bounds[r].abs().max(1e-12);
            }
        }
        sum
    }

    fn replace(&mut self, form: &Form, at: usize, into: usize) {
        let out = self.cover[at];
        for (r, row) in form.rows.iter().enumerate() {
            self.totals[r] += row[into] - row[out];
        }
        self.cover[at] = into;
    }

    /// Replaces the single-layer element at `layer` (if any) by `into`.
    pub fn set_layer(&mut self, form: &Form, layer: usize, into: usize) {
        if let Some(at) = self
            .cover
            .iter()
            .position(|&p| form.first[p] == layer && form.last[p] == layer)
        {
            self.replace(form, at, into);
        }
    }

    pub fn feasible(&self, form: &Form) -> bool {
        form.feasible(&self.totals)
    }

    /// The single-layer changes open at each element of the cover.
    fn options<'a>(&'a self, form: &'a Form, moves: &'a [Vec<usize>]) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.cover.iter().enumerate().flat_map(move |(at, &current)| {
            let open = if form.first[current] == form.last[current] {
                moves[form.first[current]].as_slice()
            } else {
                &[]
            };
            open.iter().filter(move |&&p| p != current).map(move |&p| (at, p))
        })
    }

    /// Makes the limits hold by single-layer changes (`moves[layer]`: the positions allowed
    /// there); false when no change removes any more violation while some remains.
    pub fn repair(&mut self, form: &Form, moves: &[Vec<usize>]) -> bool {
        let mut violation = form.violation(&self.totals);
        while violation > 0.0 {
            let mut best: Option<(usize, usize, f64, f64)> = None;
            for (at, into) in self.options(form, moves) {
                let out = self.cover[at];
                let after = self.violation_after(form, out, into);
                let removed = violation - after;
                if removed <= 0.0 {
                    continue;
                }
                let added = (form.cost[into] - form.cost[out]).max(0.0);
                let ratio = removed / (added + 1e-12);
                if best.is_none_or(|(.., r, _)| ratio > r) {
                    best = Some((at, into, ratio, after));
                }
            }
            let Some((at, into, _, after)) = best else {
                return false;
            };
            self.replace(form, at, into);
            violation = after;
        }
        true
    }

    /// Lowers the cost by single-layer changes that keep every limit, the largest drop first,
    /// until none is left (a feasible cover stays feasible); true if it changed anything.
    pub fn improve(&mut self, form: &Form, moves: &[Vec<usize>]) -> bool {
        let mut changed = false;
        loop {
            let mut best: Option<(usize, usize, f64)> = None;
            for (at, into) in self.options(form, moves) {
                let out = self.cover[at];
                let drop = form.cost[out] - form.cost[into];
                if drop <= 0.0 || best.is_some_and(|(.., d)| drop <= d) {
                    continue;
                }
                if self.violation_after(form, out, into) == 0.0 {
                    best = Some((at, into, drop));
                }
            }
            let Some((at, into, _)) = best else { return changed };
            self.replace(form, at, into);
            changed = true;
        }
    }

    /// Makes the change of two layers at once that lowers the cost most and keeps every limit,
    /// if there is one (true). Quadratic in the changes open: for small sets of moves.
    pub fn improve_pairs(&mut self, form: &Form, moves: &[Vec<usize>]) -> bool {
        let open: Vec<(usize, usize)> = self.options(form, moves).collect();
        let mut best: Option<(usize, usize, usize, usize, f64)> = None;
        for (i, &(at_a, into_a)) in open.iter().enumerate() {
            let out_a = self.cover[at_a];
            let drop_a = form.cost[out_a] - form.cost[into_a];
            for &(at_b, into_b) in &open[i + 1..] {
                let out_b = self.cover[at_b];
                let drop = drop_a + form.cost[out_b] - form.cost[into_b];
                if at_b == at_a || drop <= 0.0 || best.is_some_and(|(.., d)| drop <= d) {
                    continue;
                }
                let holds = form.rows.iter().enumerate().all(|(r, row)| {
                    self.totals[r] - row[out_a] + row[into_a] - row[out_b] + row[into_b] - form.bounds[r]
                        <= form.slack[r]
                });
                if holds {
                    best = Some((at_a, into_a, at_b, into_b, drop));
                }
            }
        }
        let Some((at_a, into_a, at_b, into_b, _)) = best else {
            return false;
        };
        self.replace(form, at_a, into_a);
        self.replace(form, at_b, into_b);
        true
    }
}

//! The pairwise dependency between layers (FFN Fusion, arXiv 2503.18908): `M[i][j]`, for
//! `i < j`, is the mean over tokens of the cosine distance between layer `j`'s contribution to
//! the residual stream as the model runs, and its contribution when layer `i` is skipped (the
//! layers between run on as usual). Near 0: layer `j` does not care whether `i` ran before it,
//! so the two may read the same input. Knows the forward pass only.

use burn::prelude::*;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::model::{ForwardError, Llama};

/// `values[[i, j]]` for `i < j`; the diagonal and below are 0. Written as a list of rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DependencyMatrix {
    pub layers: usize,
    #[serde(with = "as_rows")]
    pub values: Array2<f64>,
}

impl DependencyMatrix {
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.values[[i, j]]
    }
}

/// A square matrix as JSON rows (`[[…], […]]`), the layout `analysis.json` has always had.
mod as_rows {
    use ndarray::Array2;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &Array2<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<Vec<f64>> = values.rows().into_iter().map(|r| r.to_vec()).collect();
        rows.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Array2<f64>, D::Error> {
        let rows = Vec::<Vec<f64>>::deserialize(deserializer)?;
        let n = rows.len();
        if rows.iter().any(|r| r.len() != n) {
            return Err(serde::de::Error::custom("the dependency matrix is not square"));
        }
        Ok(Array2::from_shape_vec((n, n), rows.concat()).expect("square"))
    }
}

/// Mean over tokens of `1 - cos(a, b)` along the hidden axis.
fn cosine_distance(a: Tensor<3>, b: Tensor<3>) -> f64 {
    let [batch, seq, _] = a.dims();
    let dot = (a.clone() * b.clone()).sum_dim(2);
    let norms = (a.powi_scalar(2).sum_dim(2) * b.powi_scalar(2).sum_dim(2)).sqrt();
    let cosine = (dot / norms.clamp_min(1e-12)).sum().into_scalar::<f32>() as f64 / (batch * seq) as f64;
    1.0 - cosine
}

/// The dependency matrix of `model` on token `windows` (each a row of equal length).
pub fn dependency_matrix(model: &Llama, windows: &[Vec<u32>]) -> Result<DependencyMatrix, ForwardError> {
    let out = model.forward(model.tokens_tensor(windows)?, None, true)?;
    let hidden = out.hidden_states;
    let layers = model.layers.len();
    let rope = model.rope_tables(0, windows.first().map_or(0, Vec::len));
    let run = |layer: usize, x: Tensor<3>| model.layers[layer].forward(x, layer, 0, &rope, None);
    let mut values = Array2::zeros((layers, layers));
    for (i, mut row) in values.rows_mut().into_iter().enumerate() {
        let mut skipped = hidden[i].clone();
        for (j, value) in row.iter_mut().enumerate().skip(i + 1) {
            let without = run(j, skipped.clone());
            let contribution_without = without.clone() - skipped;
            let contribution = hidden[j + 1].clone() - hidden[j].clone();
            *value = cosine_distance(contribution, contribution_without);
            skipped = without;
        }
    }
    Ok(DependencyMatrix { layers, values })
}

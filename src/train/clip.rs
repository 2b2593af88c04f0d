//! Global gradient-norm clipping: one norm over every parameter's gradient, one scale for all.
//! (burn-optim's clipping is per tensor, which changes the update's direction.)

use burn::prelude::*;

/// `sqrt(Σ_p Σ_i g_p,i²)` over all gradients, accumulated in f64 on the host side.
pub fn global_norm(grads: &[Tensor<1>]) -> f64 {
    if grads.is_empty() {
        return 0.0;
    }
    let squares: Vec<Tensor<1>> = grads.iter().map(|g| g.clone().powi_scalar(2).sum()).collect();
    let per_tensor = Tensor::cat(squares, 0).into_data().convert::<f64>();
    let values: Vec<f64> = per_tensor.try_to_vec::<f64>().expect("f64 data");
    values.iter().sum::<f64>().sqrt()
}

/// The factor that brings a gradient of norm `norm` down to at most `max_norm`.
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_norm_and_clipping_match_a_hand_computation() {
        let device = Device::flex();
        let host = [vec![3.0f32, -4.0], vec![1.0, 2.0, -2.0], vec![0.5]];
        let grads: Vec<Tensor<1>> = host
            .iter()
            .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), &device))
            .collect();
        // 9 + 16 + 1 + 4 + 4 + 0.25 = 34.25
        let by_hand = 34.25f64.sqrt();
        assert!((global_norm(&grads) - by_hand).abs() < 1e-9);
        let scale = clip_scale(by_hand, 1.0);
        let clipped: f64 = host
            .iter()
            .flatten()
            .map(|&g| (g as f64 * scale).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((clipped - 1.0).abs() < 1e-5, "clipped norm {clipped}");
        // Per-tensor clipping would give every tensor norm 1 instead: a different direction.
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
    }
}

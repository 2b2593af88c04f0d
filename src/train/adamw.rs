//! AdamW with decoupled weight decay, written out (PyTorch's update order) so that its state is
//! ours to checkpoint and the gradient it receives is already globally clipped. Weight decay
//! applies to matrices only, not to norm gains.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::ParamInfo;
use crate::model::{TensorMap, from_burn, to_burn};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

pub struct AdamW {
    config: AdamWConfig,
    decays: Vec<bool>,
    /// First and second moments per parameter; `None` until its first gradient.
    moments: Vec<Option<(Tensor<1>, Tensor<1>)>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, layout: &[ParamInfo]) -> Self {
        Self {
            config,
            decays: layout.iter().map(|p| p.shape.len() >= 2).collect(),
            moments: vec![None; layout.len()],
        }
    }

    /// One update of parameter `index` at optimizer step `t` (1-based) with gradient `grad`
    /// (already scaled by the caller); returns the new value.
    pub fn update(&mut self, index: usize, value: Tensor<1>, grad: Tensor<1>, lr: f64, t: usize) -> Tensor<1> {
        let c = self.config;
        let (m, v) = match self.moments[index].take() {
            Some(moments) => moments,
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let m = m * c.beta1 + grad.clone() * (1.0 - c.beta1);
        let v = v * c.beta2 + grad.powi_scalar(2) * (1.0 - c.beta2);
        let bias1 = 1.0 - c.beta1.powi(t as i32);
        let bias2 = 1.0 - c.beta2.powi(t as i32);
        let value = if self.decays[index] {
            value * (1.0 - lr * c.weight_decay)
        } else {
            value
        };
        let denominator = (v.clone() / bias2).sqrt() + c.eps;
        let value = value - m.clone() / denominator * (lr / bias1);
        self.moments[index] = Some((m, v));
        value
    }

    /// The moments as named host tensors (`adam_m.<path>`, `adam_v.<path>`).
    pub fn state(&self, layout: &[ParamInfo]) -> TensorMap {
        let mut out = TensorMap::new();
        for (info, moments) in layout.iter().zip(&self.moments) {
            if let Some((m, v)) = moments {
                out.insert(format!("adam_m.{}", info.path), from_burn(m.clone()));
                out.insert(format!("adam_v.{}", info.path), from_burn(v.clone()));
            }
        }
        out
    }

    pub fn load_state(&mut self, layout: &[ParamInfo], state: &TensorMap, device: &Device) {
        for (info, moments) in layout.iter().zip(&mut self.moments) {
            let m = state.get(&format!("adam_m.{}", info.path));
            let v = state.get(&format!("adam_v.{}", info.path));
            *moments = m
                .zip(v)
                .map(|(m, v)| (to_burn(m.clone(), device), to_burn(v.clone(), device)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_match_the_adamw_formula() {
        let device = Device::flex();
        let layout = [ParamInfo {
            path: "w".into(),
            shape: vec![1, 2],
        }];
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut adam = AdamW::new(config, &layout);
        let tensor = |v: [f32; 2]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [2]), &device);
        let (lr, p0, g) = (0.1f64, [1.0f64, -2.0], [0.5f64, -0.25]);
        let p1 = adam.update(
            0,
            tensor([p0[0] as f32, p0[1] as f32]),
            tensor([g[0] as f32, g[1] as f32]),
            lr,
            1,
        );
        let p2 = adam.update(0, p1.clone(), tensor([g[0] as f32, g[1] as f32]), lr, 2);
        let got: Vec<f32> = p2.into_data().try_to_vec::<f32>().unwrap();
        for i in 0..2 {
            let (mut p, mut m, mut v) = (p0[i], 0.0, 0.0);
            for t in 1..=2 {
                p *= 1.0 - lr * config.weight_decay;
                m = config.beta1 * m + (1.0 - config.beta1) * g[i];
                v = config.beta2 * v + (1.0 - config.beta2) * g[i] * g[i];
                let m_hat = m / (1.0 - config.beta1.powi(t));
                let v_hat = v / (1.0 - config.beta2.powi(t));
                p -= lr * m_hat / (v_hat.sqrt() + config.eps);
            }
            assert!((got[i] as f64 - p).abs() < 1e-6, "param {i}: {} vs {p}", got[i]);
        }
    }
}

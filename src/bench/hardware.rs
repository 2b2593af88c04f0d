//! The hardware the roofline knows (the GPU table, with sources) next to this machine's CPU as
//! measured now: the f32 GEMM peak and the read bandwidth.

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::forward::{gemm_peak_gflops, read_bandwidth_gbs};
use crate::cost::{Hardware, gpu_table};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CpuFigures {
    pub gemm_peak_gflops_f32: f64,
    pub read_bandwidth_gbs: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HardwareReport {
    pub gpus: Vec<Hardware>,
    pub cpu: CpuFigures,
}

/// The GPU table and this machine's CPU, measured.
pub fn hardware(device: &Device) -> HardwareReport {
    HardwareReport {
        gpus: gpu_table(),
        cpu: CpuFigures {
            gemm_peak_gflops_f32: gemm_peak_gflops(device, 1024, 5),
            read_bandwidth_gbs: read_bandwidth_gbs(device, 5),
        },
    }
}

impl std::fmt::Display for HardwareReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<8} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "device", "f32 TF/s", "bf16 TF/s", "fp8 TF/s", "GB/s", "GB"
        )?;
        let tf = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}", v / 1e12));
        for h in &self.gpus {
            writeln!(
                f,
                "{:<8} {:>10} {:>10} {:>10} {:>10.0} {:>8.0}",
                h.name,
                tf(Some(h.peak_f32)),
                tf(h.peak_bf16),
                tf(h.peak_fp8),
                h.bandwidth / 1e9,
                h.memory_bytes / 1e9
            )?;
        }
        writeln!(
            f,
            "{:<8} {:>10.3} {:>10} {:>10} {:>10.1} {:>8}   (measured now: 1024³ f32 GEMM, sum of 256 MiB)",
            "cpu",
            self.cpu.gemm_peak_gflops_f32 / 1e3,
            "-",
            "-",
            self.cpu.read_bandwidth_gbs,
            "-"
        )?;
        writeln!(f, "dense peaks (datasheets quote twice that with sparsity); sources:")?;
        for h in &self.gpus {
            writeln!(f, "  {}: {}", h.name, h.source)?;
        }
        Ok(())
    }
}

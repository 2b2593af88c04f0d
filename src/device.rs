//! The compute device, chosen at run time. `cpu` (burn-flex) is always there; `wgpu` and `cuda`
//! exist only when tessera is built with the cargo feature of the same name.

use burn::prelude::Device;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Wgpu,
    Cuda,
}

crate::named!(DeviceChoice { "cpu" => DeviceChoice::Cpu, "wgpu" => DeviceChoice::Wgpu, "cuda" => DeviceChoice::Cuda });

#[derive(Debug, thiserror::Error)]
#[error("device `{0}` needs tessera built with `--features {0}`")]
pub struct DeviceUnavailable(pub DeviceChoice);

impl DeviceChoice {
    pub fn device(self) -> Result<Device, DeviceUnavailable> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(DeviceUnavailable(other)),
        }
    }
}

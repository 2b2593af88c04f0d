//! The compute device, chosen at run time. `cpu` (burn-flex) is always there; `wgpu` and `cuda`
//! exist only when tessera is built with the cargo feature of the same name.

use burn::prelude::Device;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Wgpu,
    Cuda,
}

#[derive(Debug, thiserror::Error)]
#[error("device `{}` needs tessera built with `--features {}`", self.name(), self.name())]
pub struct DeviceUnavailable(pub DeviceChoice);

impl DeviceUnavailable {
    fn name(&self) -> String {
        format!("{:?}", self.0).to_lowercase()
    }
}

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

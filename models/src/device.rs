//! Where the networks run: burn's pure-Rust CPU backend (`flex`) by default,
//! or, built with the `gpu` cargo feature, the best adapter wgpu finds
//! (override with `CUBECL_WGPU_DEFAULT_DEVICE`, e.g. `IntegratedGpu(0)`).
//! One place decides, so training and inference never disagree.

use burn::tensor::Device;

/// The device networks predict on: no gradients are kept.
pub fn inference() -> Device {
    #[cfg(feature = "gpu")]
    {
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
    }
    #[cfg(not(feature = "gpu"))]
    {
        Device::flex()
    }
}

/// The device networks train on: [`inference`]'s, recording gradients.
pub fn training() -> Device {
    inference().autodiff()
}

//! How tensor rows are laid out for the networks that read them: the shards
//! hold each window channel-major (`x[c * timesteps + t]`); convolutions take
//! it as it is, recurrent and attention layers step through time.

use burn::tensor::{Device, Tensor, TensorData};

/// Tensor rows (channel-major, `c * timesteps + t`) as `[rows, channels, timesteps]`.
pub fn channel_major(x: &[f32], rows: usize, width: usize, timesteps: usize, device: &Device) -> Tensor<3> {
    let channels = width / timesteps.max(1);
    Tensor::<3>::from_data(TensorData::new(x.to_vec(), [rows, channels, timesteps]), device)
}

/// Tensor rows as a sequence, `[rows, timesteps, channels]`.
pub fn time_major(x: &[f32], rows: usize, width: usize, timesteps: usize, device: &Device) -> Tensor<3> {
    channel_major(x, rows, width, timesteps, device).swap_dims(1, 2)
}

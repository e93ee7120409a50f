//! Synthetic windows for the models' unit tests: the class is set by feature
//! 0's band, feature 1 is loud noise, feature 2 is noise with some values
//! missing; classes are unbalanced (half the rows are class 0).

use epiflow_pipelines::feature_reader::WindowRows;

/// `n` windows of three features from a seeded generator.
pub fn windows(n: usize, seed: u64) -> WindowRows {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = if i % 10 < 5 { 0 } else { 1 + (i % 4) as u8 };
        let signal = class as f32 * 2.0 + next();
        x.extend([signal, next() * 10.0, if i % 7 == 0 { f32::NAN } else { next() }]);
        labels.push(class);
    }
    WindowRows { width: 3, x, mask: None, episode: vec![0; labels.len()], labels }
}

//! What the incremental cache saves on aligned episodes: for every archive of a
//! store, the time to decode + align it from the `.tar.zst`, against the time
//! to read it back from its cache form (`cache_codec`), and the bytes of each.
//!
//! `cargo run --release -p epiflow-pipelines --example aligned_cache -- STORE`

use epiflow_operators::align::Align;
use epiflow_operators::decode::Decode;
use epiflow_operators::fingerprint::Operator;
use epiflow_operators::model::EpisodeKey;
use epiflow_pipelines::cache_codec::{decode_aligned, encode_aligned};
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let store = std::env::args().nth(1).expect("usage: aligned_cache STORE");
    let (mut archive_bytes, mut cache_bytes) = (0u64, 0u64);
    let (mut from_archive, mut encode, mut from_cache) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut episodes = 0;
    for host in std::fs::read_dir(format!("{store}/episodes"))? {
        let host = host?;
        for file in std::fs::read_dir(host.path())? {
            let path = file?.path();
            let bytes = std::fs::read(&path)?;
            let key = EpisodeKey {
                host_id: host.file_name().to_string_lossy().into_owned(),
                episode_id: path.file_stem().and_then(|s| s.to_str()).unwrap_or("").trim_end_matches(".tar").into(),
            };
            let start = Instant::now();
            let Ok(decoded) = Decode::default().decode_bytes(&bytes, key, None, "episode") else { continue };
            let aligned = Align.apply(&decoded);
            from_archive += start.elapsed();
            let start = Instant::now();
            let cached = encode_aligned(&aligned)?;
            encode += start.elapsed();
            let start = Instant::now();
            let back = decode_aligned(&cached)?;
            from_cache += start.elapsed();
            assert_eq!(back.channels, aligned.channels);
            archive_bytes += bytes.len() as u64;
            cache_bytes += cached.len() as u64;
            episodes += 1;
        }
    }
    println!("{episodes} episodes");
    println!("decode + align from .tar.zst: {:.3} s, {:.1} MB", from_archive.as_secs_f64(), archive_bytes as f64 / 1e6);
    println!("encode cache entries:        {:.3} s, {:.1} MB", encode.as_secs_f64(), cache_bytes as f64 / 1e6);
    println!(
        "read back from cache:        {:.3} s ({:.1}x faster than from the archive)",
        from_cache.as_secs_f64(),
        from_archive.as_secs_f64() / from_cache.as_secs_f64()
    );
    Ok(())
}

//! The dashboard's replay producer on a checkpoint `epiflow run` trained:
//! every telemetry bin and every window's prediction, due when the replay's
//! clock passes them, the predictions equal to `epiflow infer`'s.

mod common;
use common::*;
use epiflow::dashboard::events::Event;
use epiflow::dashboard::replay::Replay;
use epiflow_models::predictor::Predictor;
use epiflow_operators::model::EpisodeKey;
use std::time::Duration;

#[test]
fn a_replay_paces_every_bin_and_the_windows_infer_classifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 24, 22, 40);
    let out = dir.path().join("out");
    let config = dir.path().join("gbt.toml");
    std::fs::write(&config, "[train]\narchs = [\"gbt\"]\nchannels = [\"realistic\"]\n").unwrap();
    let (s, o, c) = (store.to_str().unwrap(), out.to_str().unwrap(), config.to_str().unwrap());
    epiflow_ok(&["run", "--store", s, "--out", o, "--config", c, "--split", "host", "-q"], 0);
    let predictor =
        Predictor::load(&out.join("models/host/gbt-realistic"), Default::default(), Default::default()).unwrap();

    let accepted = validation_rows(&out.join("validation.parquet")).into_iter().find(|r| r.outcome == "accepted");
    let row = accepted.unwrap();
    let path = store.join("episodes").join(&row.host_id).join(format!("{}.tar.zst", row.episode_id));
    let key = EpisodeKey { host_id: row.host_id.clone(), episode_id: row.episode_id.clone() };
    let (aligned, validation) = predictor.align(&std::fs::read(&path).unwrap(), key, "episode").unwrap();
    let replay = Replay::plan(4, &predictor, &aligned, &validation, 10.0).unwrap();

    let Event::ReplayStarted(started) = &replay.started else { panic!("{:?}", replay.started) };
    assert_eq!((started.replay, started.model.as_str(), started.channels.len()), (4, "gbt-realistic", 29));
    assert_eq!((started.episode_id.as_str(), started.outcome.as_str()), (row.episode_id.as_str(), "accepted"));

    let hz = predictor.tensor().config.tensor.hz;
    let telemetry: Vec<_> = replay.steps.iter().filter(|s| matches!(s.event, Event::Telemetry(_))).collect();
    assert_eq!(telemetry.len(), (aligned.t_end.unwrap() * hz).floor() as usize, "one event per bin");
    assert!(replay.steps.windows(2).all(|w| w[0].at_s <= w[1].at_s), "due in order");

    let inferred = predictor.infer_path(&path);
    let predictions: Vec<_> = replay
        .steps
        .iter()
        .filter_map(|s| match &s.event {
            Event::Prediction(p) => Some((s.at_s, p)),
            _ => None,
        })
        .collect();
    assert_eq!(predictions.len(), inferred.windows.len());
    assert!(!predictions.is_empty());
    for ((at_s, p), w) in predictions.iter().zip(&inferred.windows) {
        assert_eq!(p.window_start_s, w.window_start_s);
        assert_eq!(*at_s, w.window_start_s + predictor.window_s(), "due as the clock passes the window's end");
        assert_eq!(p.predicted, w.predicted.name());
        for (phase, q) in epiflow_operators::channels::Phase::ALL.iter().zip(w.probabilities) {
            assert!((p.probabilities[phase.name()] - q).abs() <= 1e-6, "{p:?} vs {w:?}");
        }
    }

    // The clock: at speed 10, one wall second passes ten episode seconds.
    assert_eq!(replay.due(Duration::ZERO), 0);
    let due = replay.due(Duration::from_secs(1));
    assert!(replay.steps[..due].iter().all(|s| s.at_s <= 10.0) && replay.steps[due].at_s > 10.0);
    assert_eq!(replay.due(Duration::from_secs(3600)), replay.steps.len());
    assert_eq!(replay.due_at(due), Some(Duration::from_secs_f64(replay.steps[due].at_s / 10.0)));
    assert_eq!(replay.due_at(replay.steps.len()), None);
    assert!(Replay::plan(5, &predictor, &aligned, &validation, 0.0).is_err(), "a speed of 0 never advances");
}

#[test]
fn an_episode_s_windows_on_demand_are_the_shards_values() {
    use epiflow::dashboard::api;
    use epiflow_operators::channels::ChannelSet;
    use epiflow_operators::split::Side;
    use epiflow_pipelines::feature_reader::read_windows;
    use epiflow_pipelines::sinks::features::FeatureKind;
    use epiflow_pipelines::sinks::manifest::Manifest;

    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 6, 23, 40);
    let out = dir.path().join("out");
    epiflow_ok(&["run", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"], 0);
    let row = validation_rows(&out.join("validation.parquet")).into_iter().find(|r| r.outcome == "accepted").unwrap();
    let path = epiflow_operators::archive::archive_path(&store.join("episodes"), &row.host_id, &row.episode_id);
    let key = EpisodeKey { host_id: row.host_id.clone(), episode_id: row.episode_id.clone() };
    let bytes = std::fs::read(path).unwrap();
    let decode = epiflow_operators::decode::Decode::default();
    let aligned = epiflow_operators::Operator::apply(
        &epiflow_operators::align::Align,
        &decode.decode_bytes(&bytes, key, None, "episode").unwrap(),
    );
    let manifest = Manifest::read(&out.join("features")).unwrap();
    let (window, tensor) = Manifest::operators_of(&manifest.window).unwrap();
    let on_demand = api::windows(&aligned, &window, &tensor);

    let sides = [((row.host_id.clone(), row.episode_id.clone()), Side::Test)].into();
    let read = |kind| read_windows(&out.join("features"), &manifest, kind, ChannelSet::Oracle, &sides).unwrap();
    let (summary, tensors) = (read(FeatureKind::Summary), read(FeatureKind::Tensors));
    let (summary, tensors) = (&summary.sides[&Side::Test], &tensors.sides[&Side::Test]);
    assert_eq!(on_demand.len(), summary.rows());
    for (w, window) in on_demand.iter().enumerate() {
        let values: Vec<f32> = window.summary.values().map(|v| v.unwrap_or(f32::NAN)).collect();
        let shard = summary.row(w);
        let names: Vec<&String> = window.summary.keys().collect();
        // The JSON map is sorted by name; the shard row is in registry order.
        let registry: Vec<String> = epiflow_operators::channels::CHANNELS
            .iter()
            .flat_map(|c| epiflow_operators::window::STATS.map(|s| format!("{}:{s}", c.name)))
            .collect();
        for (i, name) in registry.iter().enumerate() {
            let j = names.iter().position(|n| *n == name).unwrap();
            assert!(values[j].to_bits() == shard[i].to_bits() || (values[j].is_nan() && shard[i].is_nan()), "{name}");
        }
        assert_eq!(window.x, tensors.row(w), "window {w} x");
        let mask = tensors.mask.as_ref().unwrap();
        assert_eq!(window.mask, mask[w * tensors.width..(w + 1) * tensors.width], "window {w} mask");
        assert_eq!(window.label, epiflow_operators::channels::Phase::ALL[summary.labels[w] as usize].name());
    }
}

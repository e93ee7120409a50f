//! `epiflow serve` over HTTP (SPEC section 15), on a synth store whose
//! models `epiflow run` trained: every route, the six event types in a
//! replay, `Last-Event-ID` resume, predictions equal to `infer`'s, an
//! appended episode reaching `perf` and `profiles`, the refusals, the token,
//! and a client that stops reading.

mod common;
#[path = "common/serve.rs"]
mod serve;

use common::*;
use serde_json::{json, Value};
use serve::{copy_fixture, served, Served, Server, Sse};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a test waits for an event before it calls the stream quiet.
const QUIET: Duration = Duration::from_secs(60);

/// Starts a replay of `key` with gbt-realistic at `speed`; the number of
/// events it will publish.
fn start_replay(server: &Server, key: &(String, String), speed: f64) -> usize {
    let answer =
        server.replay(&json!({ "host_id": key.0, "episode_id": key.1, "model": "gbt-realistic", "speed": speed }));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["events"].as_u64().unwrap() as usize
}

/// Reads the stream until replay events numbering `events` have come.
fn replay_events(stream: &mut serve::EventStream, events: usize) -> Vec<Sse> {
    let mut seen = 0;
    let all = stream.until(QUIET, |e| {
        seen += usize::from(matches!(e.event.as_str(), "replay_started" | "telemetry" | "prediction"));
        seen == events
    });
    all.into_iter().filter(|e| matches!(e.event.as_str(), "replay_started" | "telemetry" | "prediction")).collect()
}

#[test]
fn every_route_answers_and_a_replay_streams_predictions_equal_to_infer() {
    let Served { store, out, server, dir: _dir, .. } = served();

    let page = server.request("GET", "/", &[], b"");
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    for scene in ["Replay", "Models", "Pipeline", "Profiles", "new EventSource"] {
        assert!(page.text().contains(scene), "the page lacks {scene}");
    }
    assert!(!page.text().contains("http://") && !page.text().contains("https://"), "nothing loads from elsewhere");

    // A new client first gets the current state: metrics, perf, profiles.
    let mut stream = server.events(None);
    assert_eq!(stream.status, 200);
    let mut first: BTreeMap<String, Value> = BTreeMap::new();
    while first.len() < 3 {
        let e = stream.next(QUIET).expect("the current state");
        first.insert(e.event.clone(), e.data.clone());
    }
    let records = validation_rows(&out.join("validation.parquet"));
    assert_eq!(records.len(), 22);
    assert_eq!(first["perf"]["episodes"], 22);
    assert_eq!(first["metrics"]["recipe"], "host");
    let models: Vec<&String> = first["metrics"]["models"].as_object().unwrap().keys().collect();
    assert_eq!(models, ["gbt-oracle", "gbt-realistic"]);
    let profiled: u64 = first["profiles"]["profiles"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["outcomes"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(profiled, 22, "every episode in some profile's outcomes");

    // The episode list and its filters agree with validation.parquet.
    let list = server.get_json("/api/episodes");
    assert_eq!(list.as_array().unwrap().len(), 22);
    let accepted_n = records.iter().filter(|r| r.outcome == "accepted").count();
    assert_eq!(server.get_json("/api/episodes?outcome=accepted").as_array().unwrap().len(), accepted_n);
    let host = &records[0].host_id;
    let on_host = server.get_json(&format!("/api/episodes?host={host}"));
    assert_eq!(on_host.as_array().unwrap().len(), records.iter().filter(|r| &r.host_id == host).count());
    let models = server.get_json("/api/models");
    assert_eq!(
        models,
        json!([{ "recipe": "host", "model": "gbt-realistic" }, { "recipe": "host", "model": "gbt-oracle" }])
    );

    // An episode's windows on demand: as many as the shards hold for it.
    let key = server.accepted();
    let listed = list.as_array().unwrap().iter().find(|e| e["episode_id"] == key.1.as_str()).unwrap();
    let windows = server.get_json(&format!("/api/episodes/{}/{}/windows", key.0, key.1));
    assert_eq!(windows.as_array().unwrap().len() as u64, listed["windows"].as_u64().unwrap());
    assert_eq!(windows[0]["x"].as_array().unwrap().len(), 46 * 20);

    // A replay: replay_started, a telemetry event per bin, a prediction per
    // window equal to `epiflow infer`'s for the same archive.
    let events = start_replay(&server, &key, 1000.0);
    let replay = replay_events(&mut stream, events);
    let types: Vec<&str> = replay.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(types[0], "replay_started");
    assert_eq!(replay[0].data["model"], "gbt-realistic");
    assert!(replay.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let predictions: Vec<&Value> = replay.iter().filter(|e| e.event == "prediction").map(|e| &e.data).collect();
    let telemetry = replay.iter().filter(|e| e.event == "telemetry").count();
    assert!(
        telemetry > predictions.len() && !predictions.is_empty(),
        "{telemetry} bins, {} windows",
        predictions.len()
    );
    let archive = store.join("episodes").join(&key.0).join(format!("{}.tar.zst", key.1));
    let model = out.join("models/host/gbt-realistic");
    let infer = epiflow_ok(&["infer", "--model", model.to_str().unwrap(), "--json", archive.to_str().unwrap()], 0);
    let inferred: Vec<Value> = infer
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["window_start_s"].is_number())
        .collect();
    assert_eq!(predictions.len(), inferred.len());
    for (p, w) in predictions.iter().zip(&inferred) {
        assert_eq!(
            (&p["window_start_s"], &p["predicted"], &p["truth"]),
            (&w["window_start_s"], &w["predicted"], &w["truth"])
        );
        for (phase, q) in w["probabilities"].as_object().unwrap() {
            let diff = (p["probabilities"][phase].as_f64().unwrap() - q.as_f64().unwrap()).abs();
            assert!(diff <= 1e-5, "{phase}: {p} vs {w}");
        }
    }

    // Prometheus: outcomes, operators, events, clients, inference latency.
    let accepted_gauge = server.metric("epiflow_episodes{outcome=\"accepted\"}");
    assert_eq!(accepted_gauge, Some(accepted_n as f64));
    assert_eq!(server.metric("epiflow_operator_results_total{operator=\"decode\",status=\"cached\"}"), Some(22.0));
    assert!(server.metric("epiflow_events_sent_total").unwrap() >= events as f64);
    assert_eq!(server.metric("epiflow_clients_connected"), Some(1.0));
    let latency = server.metric("epiflow_inference_latency_seconds_count");
    assert_eq!(latency, Some(predictions.len() as f64));
}

#[test]
fn a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed() {
    let Served { server, dir: _dir, .. } = served();
    let mut whole = server.events(None);
    let mut leaving = server.events(None);
    let key = server.accepted();
    let events = start_replay(&server, &key, 1000.0);
    let all = replay_events(&mut whole, events);
    let left_after = replay_events(&mut leaving, 40).last().unwrap().id;
    drop(leaving);

    let mut back = server.events(Some(left_after));
    let missed = back.until(QUIET, |e| e.id == all.last().unwrap().id);
    let expected: Vec<&Sse> = all.iter().filter(|e| e.id > left_after).collect();
    assert_eq!(missed.iter().collect::<Vec<_>>(), expected, "the events after {left_after}, each once, in order");
    assert_eq!(back.next(Duration::from_millis(500)), None, "and nothing else");

    // An id the buffer no longer holds (or never gave) gets the current state.
    let mut stranger = server.events(Some(10_000_000));
    let mut state: Vec<String> = (0..3).map(|_| stranger.next(QUIET).unwrap().event).collect();
    state.sort();
    assert_eq!(state, ["metrics", "perf", "profiles"]);
}

#[test]
fn an_episode_appended_to_the_index_shows_in_perf_and_profiles() {
    let Served { store, held, server, dir: _dir, .. } = served();
    let mut stream = server.events(None);
    let state = stream.until(QUIET, |e| e.event == "profiles");
    let before = state.iter().rfind(|e| e.event == "perf").unwrap().data["generation"].as_u64().unwrap();

    let key = line_key(&held[0]);
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{}\n", held[0]).as_bytes()).unwrap();

    let perf = stream.until(QUIET, |e| e.event == "perf" && e.data["episodes"] == 23);
    let perf = &perf.last().unwrap().data;
    assert_eq!(perf["generation"].as_u64().unwrap(), before + 1, "a new publication");
    assert_eq!(perf["operators"]["decode"]["computed"], 1, "only the new episode decoded");
    let profiles = stream.until(QUIET, |e| e.event == "profiles");
    let profiles = &profiles.last().unwrap().data["profiles"];
    let total: u64 = profiles
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["outcomes"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 23);
    let listed = server.get_json(&format!("/api/episodes?host={}", key.0));
    assert!(listed.as_array().unwrap().iter().any(|e| e["episode_id"] == key.1.as_str()), "and in the list");
}

#[test]
fn a_changed_evaluation_report_goes_out_as_metrics_and_profiles() {
    let Served { out, server, dir: _dir, .. } = served();
    let mut stream = server.events(None);
    stream.until(QUIET, |e| e.event == "profiles");
    // As `epiflow eval` would leave it: the report rewritten whole.
    let path = out.join("eval/host/report.json");
    let mut report: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    report["models"][0]["macro_f1"] = json!(0.125);
    report["models"][0]["per_profile"].as_object_mut().unwrap().values_mut().for_each(|b| b["macro_f1"] = json!(0.25));
    let model = report["models"][0]["model"].as_str().unwrap().to_string();
    let aside = out.join("eval/host/report.json.new");
    std::fs::write(&aside, serde_json::to_vec(&report).unwrap()).unwrap();
    std::fs::rename(&aside, &path).unwrap();

    let metrics = stream.until(QUIET, |e| e.event == "metrics");
    assert_eq!(metrics.last().unwrap().data["models"][&model]["macro_f1"], 0.125);
    let profiles = stream.until(QUIET, |e| e.event == "profiles");
    let f1 = &profiles.last().unwrap().data["profiles"];
    let key = format!("host/{model}");
    let shown: Vec<&Value> = f1.as_object().unwrap().values().filter_map(|p| p["macro_f1"].get(&key)).collect();
    assert!(!shown.is_empty() && shown.iter().all(|v| **v == 0.25), "{f1}");
}

#[test]
fn requests_naming_nothing_malformed_or_too_large_are_refused_with_json() {
    let Served { store, server, dir: _dir, .. } = served();
    let (host, episode) = server.accepted();
    let refused = |method: &str, target: &str, body: &[u8], status: u16| {
        let answer = server.request(method, target, &[("content-type", "application/json")], body);
        assert_eq!(answer.status, status, "{method} {target}: {}", answer.text());
        assert_eq!(answer.header("content-type"), Some("application/json"), "{method} {target}");
        assert!(answer.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {target}");
    };
    for target in [
        format!("/api/episodes/{host}/../{episode}/windows"),
        format!("/api/episodes/{host}/..%2F..%2F..%2Fetc%2Fpasswd/windows"),
        format!("/api/episodes/..%2F{host}/{episode}/windows"),
        "/api/episodes/%2Fetc/passwd/windows".to_string(),
        "/api/episodes/../../../../etc/passwd/windows".to_string(),
        format!("/api/episodes/{host}/no-such-episode/windows"),
        "/no/such/route".to_string(),
    ] {
        refused("GET", &target, b"", 404);
    }
    refused("GET", "/api/episodes?colour=red", b"", 400);
    refused("GET", "/api/replay", b"", 405);
    let replay = |body: Value| body.to_string().into_bytes();
    let unknown_episode = json!({ "host_id": host, "episode_id": "../x", "model": "gbt-realistic" });
    refused("POST", "/api/replay", &replay(unknown_episode), 404);
    for model in ["cnn-realistic", "../gbt-realistic", "gbt", "host/../../gbt-realistic", "lab/gbt-realistic"] {
        refused("POST", "/api/replay", &replay(json!({ "host_id": host, "episode_id": episode, "model": model })), 404);
    }
    refused("POST", "/api/replay", b"{\"host_id\": ", 400);
    refused("POST", "/api/replay", &replay(json!({ "host_id": host })), 400);
    refused(
        "POST",
        "/api/replay",
        &replay(json!({ "host_id": host, "episode_id": episode, "model": "gbt-realistic", "x": 1 })),
        400,
    );
    let zero = json!({ "host_id": host, "episode_id": episode, "model": "gbt-realistic", "speed": 0 });
    refused("POST", "/api/replay", &replay(zero), 400);
    let padding = "x".repeat(70 * 1024);
    let oversized = json!({ "host_id": host, "episode_id": episode, "model": "gbt-realistic", "pad": padding });
    refused("POST", "/api/replay", &replay(oversized), 413);
    // And the store is untouched by all of it.
    assert!(store.join("episodes").join(&host).join(format!("{episode}.tar.zst")).is_file());
}

#[test]
fn off_the_loopback_a_token_is_required_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out, _) = copy_fixture(dir.path());
    let (s, o) = (store.to_str().unwrap(), out.to_str().unwrap());
    let refused = epiflow(&["serve", "--store", s, "--out", o, "--addr", "0.0.0.0:0", "-q"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("token"), "{refused:?}");

    let server = Server::start(&store, &out, &["--addr", "0.0.0.0:0", "--token", "s3cret"]);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    for target in ["/", "/events", "/metrics", "/api/episodes", "/api/models", "/api/episodes/a/b/windows"] {
        let answer = serve::request(local, "GET", target, &[], b"");
        assert_eq!(answer.status, 401, "{target} without a token");
        assert!(answer.json()["error"].is_string());
        let wrong = serve::request(local, "GET", target, &[("authorization", "Bearer s3cre")], b"");
        assert_eq!(wrong.status, 401, "{target} with a wrong token");
    }
    let replay = serve::request(local, "POST", "/api/replay", &[], b"{}");
    assert_eq!(replay.status, 401, "checked before the body is read");
    let bearer = serve::request(local, "GET", "/api/episodes", &[("authorization", "Bearer s3cret")], b"");
    assert_eq!((bearer.status, bearer.json().as_array().unwrap().len()), (200, 22));
    let query = serve::request(local, "GET", "/api/episodes?token=s3cret&outcome=accepted", &[], b"");
    assert_eq!(query.status, 200, "?token= is taken out of the filters: {}", query.text());
    assert_eq!(serve::request(local, "GET", "/?token=s3cret", &[], b"").status, 200);
    let mut stream = serve::EventStream::open(local, "/events?token=s3cret", &[]);
    assert_eq!(stream.status, 200);
    assert!(stream.next(QUIET).is_some());
}

#[test]
fn a_client_that_stops_reading_never_delays_the_others_or_the_pipeline() {
    let Served { store, held, server, dir: _dir, .. } = served();
    let key = server.accepted();
    // Connected, then never read again.
    let mut stalled = server.events(None);
    let mut reader = server.events(None);
    reader.until(QUIET, |e| e.event == "profiles");

    let mut replays = 0;
    let mut last_id = 0;
    while server.metric("epiflow_clients_dropped_total").unwrap_or(0.0) < 1.0 {
        assert!(replays < 100, "the stalled client was never dropped");
        let events = start_replay(&server, &key, 1e6);
        let got = replay_events(&mut reader, events);
        assert_eq!(got.len(), events, "the reading client gets every event of replay {replays}");
        assert!(got.iter().all(|e| e.id > last_id) && got.windows(2).all(|w| w[0].id < w[1].id));
        last_id = got.last().unwrap().id;
        replays += 1;
    }
    assert_eq!(server.metric("epiflow_clients_connected"), Some(1.0), "the stalled one is gone");

    // A publication still reaches the reading client at once.
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{}\n", held[0]).as_bytes()).unwrap();
    reader.until(QUIET, |e| e.event == "perf" && e.data["episodes"] == 23);
    assert!(stalled.closed(QUIET), "the server closed the stalled client's connection");
}

#[test]
fn with_train_splits_the_models_follow_the_store_and_api_models_says_where_each_stands() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out, held) = copy_fixture(dir.path());
    let config = dir.path().join("follow.toml");
    std::fs::write(&config, "[train]\nsplits = [\"host\"]\narchs = [\"gbt\"]\nchannels = [\"realistic\"]\n").unwrap();
    let server = Server::start(&store, &out, &["--config", config.to_str().unwrap()]);
    let state_of = |wanted: &str| -> BTreeMap<String, Value> {
        let deadline = std::time::Instant::now() + QUIET;
        loop {
            let listed = server.get_json("/api/models");
            let states: BTreeMap<String, Value> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (format!("{}/{}", m["recipe"].as_str().unwrap(), m["model"].as_str().unwrap()), m["state"].clone())
                })
                .collect();
            if states["host/gbt-realistic"] == wanted {
                return states;
            }
            assert!(std::time::Instant::now() < deadline, "host/gbt-realistic never {wanted}: {states:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The fixture's model was trained on these inputs: found current.
    let states = state_of("current");
    assert_eq!(states["host/gbt-oracle"], Value::Null, "a model the configuration does not name has no state");
    let card = || std::fs::read(out.join("models/host/gbt-realistic/model.json")).unwrap();
    let trained = card();

    // The held-back episodes arrive: once the split places them, a model
    // that learns from one of them is retrained in the background and is
    // current again.
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{}\n", held.join("\n")).as_bytes()).unwrap();
    let keys: Vec<(String, String)> = held.iter().map(|l| line_key(l)).collect();
    let deadline = std::time::Instant::now() + QUIET;
    let fitted = loop {
        // The dashboard hears of a publication once its split is written.
        if server.get_json("/api/episodes").as_array().unwrap().len() >= 24 {
            let split = read_parquet(&out.join("splits/host.parquet"));
            let placed = strings(&split, "host_id").into_iter().zip(strings(&split, "episode_id"));
            break placed.zip(strings(&split, "side")).any(|(key, side)| keys.contains(&key) && side != "test");
        }
        assert!(std::time::Instant::now() < deadline, "the arrivals were never published");
        std::thread::sleep(Duration::from_millis(100));
    };
    if fitted {
        while card() == trained {
            assert!(std::time::Instant::now() < deadline, "the model was never retrained");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    state_of("current");
}

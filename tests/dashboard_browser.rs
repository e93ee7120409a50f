//! The dashboard page in a real browser (headless Chromium over the
//! DevTools protocol) against a running `epiflow serve`: after a replay
//! starts, each of the four scenes shows this store's numbers; a screenshot
//! of each is kept under `target/tmp/dashboard/`; and the page says when the
//! stream drops and resumes by itself when the server is back.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/serve.rs"]
mod serve;

use arrow_array::{Array, StringArray};
use browser::Browser;
use common::*;
use serve::{served, Served, Server};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long the page may take to show what it is waited for.
const WAIT: Duration = Duration::from_secs(60);

/// Episodes per profile and outcome, as validation.parquet holds them.
fn outcomes_by_profile(path: &std::path::Path) -> BTreeMap<(String, String), usize> {
    let batch = read_parquet(path);
    let column = |name| batch.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    let (profiles, outcomes) = (column("profile"), column("outcome"));
    let mut counts = BTreeMap::new();
    for i in 0..batch.num_rows() {
        let profile = if profiles.is_null(i) { "(none)".to_string() } else { profiles.value(i).to_string() };
        *counts.entry((profile, outcomes.value(i).to_string())).or_default() += 1;
    }
    counts
}

#[test]
fn the_page_shows_every_scene_with_this_store_s_numbers_and_recovers_from_a_drop() {
    let Served { store, out, server, dir: _dir, .. } = served();
    let (host, episode) = server.accepted();
    let base = format!("http://{}/", server.addr);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let Some(mut page) = Browser::launch(1600, 1000) else { return };

    // The whole dashboard, with a replay started from the page's own query.
    page.goto(&format!("{base}?episode={host}/{episode}&model=host/gbt-realistic&speed=40"));
    page.wait_for(
        "document.querySelectorAll('#replay-predictions tr').length >= 3",
        WAIT,
        "document.getElementById('replay').innerText",
    );
    assert_eq!(page.eval("document.getElementById('status').textContent"), "live");
    let title = page.eval("document.getElementById('replay-title').textContent");
    assert!(title.as_str().unwrap().contains(&episode) && title.as_str().unwrap().contains("gbt-realistic"), "{title}");
    let selected =
        page.eval("['replay-episode', 'replay-model', 'replay-speed'].map(id => document.getElementById(id).value)");
    assert_eq!(
        selected,
        serde_json::json!([format!("{host}/{episode}"), "host/gbt-realistic", "40"]),
        "the selectors show it"
    );
    let predicted = page.eval("document.querySelector('#replay-predictions tr td:nth-child(2)').textContent");
    let phases = ["clean", "exploiting", "infected_idle", "infected_running", "dormant"];
    assert!(phases.contains(&predicted.as_str().unwrap()), "{predicted}");
    let lines = page.eval("document.querySelectorAll('#replay-chart path').length");
    assert!(lines.as_u64().unwrap() >= 1, "telemetry drawn as lines");

    // Models: every trained model, with the report's figure.
    let models = page.eval("[...document.querySelectorAll('#models-body tr[data-model]')].map(r => r.dataset.model)");
    assert_eq!(models, serde_json::json!(["gbt-oracle", "gbt-realistic"]));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval/host/report.json")).unwrap()).unwrap();
    for model in report["models"].as_array().unwrap() {
        let shown = page.eval(&format!(
            "document.querySelector('#models-body tr[data-model=\"{}\"] td:nth-child(2)').textContent",
            model["model"].as_str().unwrap()
        ));
        assert_eq!(shown, format!("{:.3}", model["macro_f1"].as_f64().unwrap()).as_str());
    }

    // Pipeline: the corpus and every operator of run.json.
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        page.eval("document.getElementById('pipeline-episodes').textContent"),
        run["episodes"].to_string().as_str()
    );
    assert_eq!(
        page.eval("document.getElementById('pipeline-windows').textContent"),
        run["windows"].to_string().as_str()
    );
    let operators = page.eval("[...document.querySelectorAll('#pipeline-operators tr')].map(r => r.dataset.operator)");
    let expected: Vec<&String> = run["operators"].as_object().unwrap().keys().collect();
    assert_eq!(operators, serde_json::json!(expected));

    // Profiles: each profile's outcomes as validation.parquet counts them.
    for ((profile, outcome), n) in outcomes_by_profile(&out.join("validation.parquet")) {
        let column = ["accepted", "degraded", "rejected", "errored"].iter().position(|o| *o == outcome).unwrap() + 3;
        let shown = page.eval(&format!(
            "document.querySelector('#profiles-body tr[data-profile=\"{profile}\"] td:nth-child({column})').textContent"
        ));
        assert_eq!(shown, n.to_string().as_str(), "{profile} {outcome}");
    }
    page.screenshot(&shots.join("all.png"));

    // One scene at a time, as a wall screen shows it.
    for scene in ["replay", "models", "pipeline", "profiles"] {
        let replay = if scene == "replay" {
            format!("&episode={host}/{episode}&model=host/gbt-realistic&speed=40")
        } else {
            String::new()
        };
        page.goto(&format!("{base}?scene={scene}{replay}"));
        let ready = match scene {
            "replay" => "document.querySelectorAll('#replay-predictions tr').length >= 4",
            "models" => "document.querySelectorAll('#models-body tr[data-model]').length == 2",
            "pipeline" => "document.querySelectorAll('#pipeline-operators tr').length > 0",
            _ => "document.querySelectorAll('#profiles-body tr').length > 0",
        };
        page.wait_for(ready, WAIT, &format!("document.getElementById('{scene}').innerText"));
        let hidden = page.eval(&format!(
            "[...document.querySelectorAll('main > section')].filter(s => s.id != '{scene}' && s.offsetParent !== null).length"
        ));
        assert_eq!(hidden, 0, "only {scene} shows");
        page.screenshot(&shots.join(format!("{scene}.png")));
    }

    // The stream drops: the page says so, and resumes when the server is back.
    let port = server.addr.port().to_string();
    drop(server);
    page.wait_for(
        "document.getElementById('status').className == 'down'",
        WAIT,
        "document.getElementById('status').textContent",
    );
    let text = page.eval("document.getElementById('status').textContent");
    assert!(text.as_str().unwrap().contains("lost"), "{text}");
    let _back = Server::start(&store, &out, &["--addr", &format!("127.0.0.1:{port}")]);
    page.wait_for(
        "document.getElementById('status').className == 'live'",
        WAIT,
        "document.getElementById('status').textContent",
    );
    page.wait_for(
        "document.getElementById('pipeline-episodes').textContent == '22'",
        WAIT,
        "document.getElementById('pipeline').innerText",
    );
}

#[test]
fn the_models_scene_marks_a_model_that_is_training() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out, _) = serve::copy_fixture(dir.path());
    // Other settings for the fixture's gbt-realistic: it trains again, for
    // hours (every round runs).
    let config = dir.path().join("follow.toml");
    let train = "[train]\nsplits = [\"host\"]\narchs = [\"gbt\"]\nchannels = [\"realistic\"]\n";
    std::fs::write(&config, format!("{train}[train.gbt]\nrounds = 1000000\npatience = 1000000\n")).unwrap();
    let server = Server::start(&store, &out, &["--config", config.to_str().unwrap()]);
    let Some(mut page) = Browser::launch(1600, 1000) else { return };
    page.goto(&format!("http://{}/?scene=models", server.addr));
    let cell = |model: &str| format!("document.querySelector('#models-body tr[data-model=\"{model}\"] .model-state')");
    page.wait_for(
        &format!("{} && {}.textContent == 'training'", cell("gbt-realistic"), cell("gbt-realistic")),
        WAIT,
        "document.getElementById('models').innerText",
    );
    let states = page.eval("document.getElementById('models-states').textContent");
    assert_eq!(states, "host/gbt-realistic training");
    assert_eq!(page.eval(&format!("{}.textContent", cell("gbt-oracle"))), "", "a model not followed has no mark");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    page.screenshot(&shots.join("models-training.png"));
}

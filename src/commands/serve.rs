//! `epiflow serve`: `watch`'s loop with the live dashboard beside it (SPEC
//! section 15). The timely workers keep their own threads and follow the
//! index as `watch` does; a tokio runtime serves the routes, ticks once a
//! second (the `perf` of an update under way, evaluation reports that
//! changed) and paces the replays. The pipeline never waits for the server:
//! its hooks only publish to the hub.

use super::arenas_for;
use super::watch::{announce, following, stop_on_signals};
use crate::cli::{FollowArgs, Global, ServeArgs};
use crate::dashboard::live::{Dashboard, Settings};
use crate::dashboard::server::{router, serve as serve_http, Shared};
use crate::tables::epoch_line;
use epiflow_engine::observer::Observer;
use epiflow_engine::{Error, Job, Logs, Result, RunStats};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::Validate;
use epiflow_operators::window::Window;
use epiflow_pipelines::corpus::CorpusState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Buckets of the inference latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1];

pub fn run(g: &Global, follow: FollowArgs, serve: ServeArgs) -> Result<ExitCode> {
    let job = following(g, follow)?;
    arenas_for(&job.config);
    let token = serve.token.filter(|t| !t.is_empty());
    if !serve.addr.ip().is_loopback() && token.is_none() {
        return Err(Error::Usage(format!(
            "{} is not a loopback address: a token is required (--token or EPIFLOW_TOKEN)",
            serve.addr
        )));
    }
    let dashboard = Arc::new(Dashboard::new(settings(&job, serve.recipe)?));
    let prometheus = prometheus()?;
    // Planning a replay and cutting windows are CPU work on the blocking
    // pool: more threads than cores would not make them faster, and each
    // thread's allocator arena would keep its memory.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(cores)
        .thread_name("serve")
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the server's runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(serve.addr))
        .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", serve.addr)))?;
    let addr = listener.local_addr().map_err(|e| Error::Io(format!("cannot listen on {}: {e}", serve.addr)))?;
    println!("dashboard on http://{addr}/");
    let app = router(Shared::new(Arc::clone(&dashboard), prometheus.clone(), token));
    runtime.spawn(serve_http(listener, app));
    runtime.spawn(tick(Arc::clone(&dashboard), prometheus));
    announce(g, &job);
    let observer = (Logs, (Arc::clone(&dashboard), Printed { quiet: g.quiet }));
    job.follow(stop_on_signals()?, Arc::new(observer))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(ExitCode::SUCCESS)
}

/// The dashboard's settings from the served job: its decoder and the
/// validate, window and tensor stages as configured.
fn settings(job: &Job, recipe: epiflow_operators::split::Recipe) -> Result<Settings> {
    let stages = job.stages()?;
    let (Some(validate), Some(window), Some(tensor)) =
        (stages.stage::<Validate>(), stages.stage::<Window>(), stages.stage::<Tensor>())
    else {
        return Err(Error::Usage("serve needs the validate, window and tensor stages".into()));
    };
    Ok(Settings {
        out: job.out.clone(),
        episodes_root: job.episodes_root(),
        decode: job.config.decode(),
        validate: validate.clone(),
        window: window.clone(),
        tensor: tensor.clone(),
        recipe,
    })
}

/// The Prometheus recorder, rendered by `GET /metrics`.
fn prometheus() -> Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("epiflow_inference_latency_seconds".into()), &LATENCY_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Error::Io(format!("cannot set up the metrics: {e}")))
}

/// Each publication as one line on stderr (stdout has the address), unless
/// `--quiet`.
struct Printed {
    quiet: bool,
}

impl Observer for Printed {
    fn published(&self, corpus: &CorpusState, stats: &RunStats, _generation: u64) -> std::result::Result<(), String> {
        if !self.quiet {
            eprintln!("{}", epoch_line(corpus, stats));
        }
        Ok(())
    }
}

/// Once a second: the `perf` of an update under way, the evaluation reports
/// that changed, and the metrics recorder's upkeep.
async fn tick(dashboard: Arc<Dashboard>, prometheus: PrometheusHandle) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        dashboard.tick_perf();
        let reports = Arc::clone(&dashboard);
        let _ = tokio::task::spawn_blocking(move || reports.poll_reports()).await;
        prometheus.run_upkeep();
    }
}

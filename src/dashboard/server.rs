//! The dashboard's HTTP server (SPEC section 15): the page, the event
//! stream, Prometheus metrics and the JSON routes, on axum.
//!
//! Safety lives in layers rather than in handlers: a token check on every
//! route when one is set (`Authorization: Bearer`, or `?token=` for the page
//! and `EventSource`, taken out of the query before any handler sees it),
//! tower-http's body limit (64 KiB → 413) and timeout, and one layer that
//! gives every error — the handlers', axum's rejections, the limit's and the
//! timeout's — a JSON body `{"error": ...}`.
//!
//! Each event-stream client has its own queue of [`LAG`] events, filled by
//! a task from the hub's broadcast without ever waiting: a client whose
//! queue is full (it stopped reading, or reads too slowly) is dropped — its
//! connection closed through the [`DropSwitch`] that [`serve`] gives every
//! connection — and resumes with `Last-Event-ID` when it comes back.

use super::api::{self, EpisodeFilter};
use super::events::Stamped;
use super::hub::{Subscription, LAG};
use super::live::{Dashboard, Refused};
use super::replay::Replay;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{mpsc, Notify};
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Largest request body accepted (SPEC section 15).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Longest a request may take to answer (the event stream's body is not
/// bounded: only the time to its first byte).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Replays running at once; more are refused until one ends.
pub const MAX_REPLAYS: usize = 16;

/// How long a client waits before reconnecting to the event stream.
const RETRY: Duration = Duration::from_secs(1);

/// The page: HTML, CSS and JavaScript in one file, nothing fetched from
/// elsewhere.
const PAGE: &str = include_str!("page.html");

/// What every route shares.
#[derive(Clone)]
pub struct Shared {
    /// The dashboard's state.
    pub dashboard: Arc<Dashboard>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Required on every route when set.
    pub token: Option<Arc<str>>,
    replays: Arc<AtomicUsize>,
}

impl Shared {
    /// The routes' state.
    pub fn new(dashboard: Arc<Dashboard>, prometheus: PrometheusHandle, token: Option<String>) -> Shared {
        Shared { dashboard, prometheus, token: token.map(Arc::from), replays: Arc::default() }
    }
}

/// Every route, with its layers.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/metrics", get(prometheus))
        .route("/api/episodes", get(episodes))
        .route("/api/episodes/{host}/{episode}/windows", get(windows))
        .route("/api/models", get(models))
        .route("/api/replay", post(replay))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, TIMEOUT))
        .layer(middleware::map_response(json_errors))
        .with_state(shared)
}

/// An error answer: `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            Refused::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
            Refused::Unusable(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
}

/// Gives an error that is not JSON yet (axum's rejections, the body limit,
/// the timeout) a JSON body holding its text.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == b"application/json");
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), BODY_LIMIT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() { status.canonical_reason().unwrap_or("error") } else { text.trim() };
    error(status, message)
}

/// Checks the token, when one is set, and takes `token=` out of the query.
async fn authorize(State(shared): State<Shared>, mut request: Request, next: Next) -> Response {
    let (query_token, rest) = split_token(request.uri());
    if let Some(token) = &shared.token {
        let bearer = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let given = bearer.and_then(|b| b.strip_prefix("Bearer ")).map(str::to_string).or(query_token);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return error(StatusCode::UNAUTHORIZED, "a token is required (Authorization: Bearer, or ?token=)");
        }
    }
    if let Some(uri) = rest {
        *request.uri_mut() = uri;
    }
    next.run(request).await
}

/// The `token` query parameter (percent-decoded) and the URI without it,
/// when it had one.
fn split_token(uri: &Uri) -> (Option<String>, Option<Uri>) {
    let Some(query) = uri.query() else { return (None, None) };
    let (tokens, others): (Vec<&str>, Vec<&str>) = query.split('&').partition(|p| p.starts_with("token="));
    let Some(token) = tokens.first() else { return (None, None) };
    let token: Option<String> = query_value(token.trim_start_matches("token=")).filter(|_| tokens.len() == 1);
    let path_and_query = match others.is_empty() {
        true => uri.path().to_string(),
        false => format!("{}?{}", uri.path(), others.join("&")),
    };
    (token, path_and_query.parse().ok())
}

/// A query value percent-decoded (`+` as space), as forms encode it.
fn query_value(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct One {
        v: String,
    }
    let decoded: Query<One> = Query::try_from_uri(&format!("/?v={raw}").parse().ok()?).ok()?;
    Some(decoded.0.v)
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Serves `app` on `listener` as `axum::serve` does, giving each
/// connection a [`DropSwitch`] that closes it.
pub async fn serve(listener: TcpListener, app: Router) {
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let switch = DropSwitch::default();
        let (app, given) = (app.clone(), switch.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(given.clone());
            app.clone().oneshot(request.map(Body::new))
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(socket);
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::select! {
                _ = connection => {}
                _ = switch.0.notified() => ::metrics::counter!("epiflow_clients_dropped_total").increment(1),
            }
        });
    }
}

/// Closes the connection it was given to.
#[derive(Clone, Default)]
pub struct DropSwitch(Arc<Notify>);

impl DropSwitch {
    fn fire(&self) {
        self.0.notify_one();
    }
}

/// The event stream: what the client missed (or the current state), then
/// every event live, as long as it keeps up.
async fn events(
    State(shared): State<Shared>,
    switch: Option<Extension<DropSwitch>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let Subscription { backlog, live } = shared.dashboard.hub.subscribe(last);
    let (queue, queued) = mpsc::channel(LAG);
    tokio::spawn(forward(live, queue, switch.map(|Extension(s)| s)));
    let live = stream::unfold(queued, |mut queued| async move { Some((queued.recv().await?, queued)) });
    let retry = stream::once(async { Ok(SseEvent::default().retry(RETRY)) });
    let events = stream::iter(backlog).chain(live).map(|event| {
        ::metrics::counter!("epiflow_events_sent_total").increment(1);
        Ok(sse_event(&event))
    });
    Sse::new(retry.chain(events)).keep_alive(KeepAlive::default())
}

/// Moves the hub's events into one client's queue until the client goes,
/// or drops it when its queue is full.
async fn forward(
    mut live: broadcast::Receiver<Arc<Stamped>>,
    queue: mpsc::Sender<Arc<Stamped>>,
    switch: Option<DropSwitch>,
) {
    loop {
        let event = tokio::select! {
            event = live.recv() => event,
            _ = queue.closed() => return,
        };
        match event {
            Ok(event) => match queue.try_send(event) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {}
            },
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        tracing::info!("an event-stream client fell {LAG} events behind: dropped (it resumes from its last id)");
        if let Some(switch) = switch {
            switch.fire();
        }
        return;
    }
}

/// One event in the stream's framing.
pub fn sse_event(event: &Stamped) -> SseEvent {
    SseEvent::default().id(event.id.to_string()).event(event.event.name()).data(event.data().to_string())
}

async fn prometheus(State(shared): State<Shared>) -> impl IntoResponse {
    ::metrics::gauge!("epiflow_clients_connected").set(shared.dashboard.hub.clients() as f64);
    let text = shared.prometheus.render();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
}

async fn episodes(State(shared): State<Shared>, filter: Result<Query<EpisodeFilter>, QueryRejection>) -> Response {
    let filter = match filter {
        Ok(Query(filter)) => filter,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let corpus = shared.dashboard.corpus();
    Json(api::episodes(&corpus.records, &corpus.quality, &corpus.windows, &filter)).into_response()
}

async fn windows(State(shared): State<Shared>, key: Result<Path<(String, String)>, PathRejection>) -> Response {
    let Path((host, episode)) = match key {
        Ok(key) => key,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let dashboard = Arc::clone(&shared.dashboard);
    match tokio::task::spawn_blocking(move || dashboard.episode_windows(&host, &episode)).await {
        Ok(Ok(windows)) => Json(windows).into_response(),
        Ok(Err(refused)) => refused.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn models(State(shared): State<Shared>) -> Response {
    Json(shared.dashboard.models()).into_response()
}

/// `POST /api/replay`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    host_id: String,
    episode_id: String,
    model: String,
    #[serde(default = "default_speed")]
    speed: f64,
}

/// Seconds of episode per second when the request says nothing.
fn default_speed() -> f64 {
    10.0
}

async fn replay(State(shared): State<Shared>, body: Result<Json<ReplayRequest>, JsonRejection>) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        // Too large stays 413; anything else wrong with the body is a 400
        // (axum would say 415 or 422 for some).
        Err(rejection) => {
            let status = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return error(status, rejection.body_text());
        }
    };
    let Some(slot) = ReplaySlot::take(&shared.replays) else {
        return error(StatusCode::TOO_MANY_REQUESTS, format!("{MAX_REPLAYS} replays are running; try when one ends"));
    };
    let dashboard = Arc::clone(&shared.dashboard);
    let planned = tokio::task::spawn_blocking(move || {
        dashboard.plan_replay(&request.host_id, &request.episode_id, &request.model, request.speed)
    })
    .await;
    let replay = match planned {
        Ok(Ok(replay)) => replay,
        Ok(Err(refused)) => return refused.into_response(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let answer = json!({ "replay": replay.id, "events": replay.steps.len() + 1 });
    tokio::spawn(run_replay(Arc::clone(&shared.dashboard), replay, slot));
    Json(answer).into_response()
}

/// A running replay's place among the [`MAX_REPLAYS`]; given back when the
/// replay ends.
struct ReplaySlot(Arc<AtomicUsize>);

impl ReplaySlot {
    fn take(running: &Arc<AtomicUsize>) -> Option<ReplaySlot> {
        running.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_REPLAYS).then_some(n + 1)).ok()?;
        Some(ReplaySlot(Arc::clone(running)))
    }
}

impl Drop for ReplaySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Publishes the replay's events as its clock passes them.
async fn run_replay(dashboard: Arc<Dashboard>, replay: Replay, _slot: ReplaySlot) {
    let start = tokio::time::Instant::now();
    dashboard.publish(replay.started.clone());
    let mut next = 0;
    while let Some(at) = replay.due_at(next) {
        tokio::time::sleep_until(start + at).await;
        let due = replay.due(start.elapsed()).max(next + 1);
        for step in &replay.steps[next..due] {
            dashboard.publish(step.event.clone());
        }
        next = due;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_the_query_and_decoded() {
        let uri: Uri = "/api/episodes?host=h1&token=a%2Bb%20c&outcome=accepted".parse().unwrap();
        let (token, rest) = split_token(&uri);
        assert_eq!(token.as_deref(), Some("a+b c"));
        assert_eq!(rest.unwrap().to_string(), "/api/episodes?host=h1&outcome=accepted");
        let (token, rest) = split_token(&"/events?token=t".parse().unwrap());
        assert_eq!((token.as_deref(), rest.unwrap().to_string().as_str()), (Some("t"), "/events"));
        assert_eq!(split_token(&"/api/episodes?host=h1".parse().unwrap()), (None, None));
        let (twice, _) = split_token(&"/?token=a&token=b".parse().unwrap());
        assert_eq!(twice, None, "two tokens are no token");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT") && !same(b"secret", b"secret2") && !same(b"", b"x"));
    }
}

//! The HTTP side: the JSON API the page uses, its live updates as server-sent events, and the
//! page itself.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /api/state` | devices, services (alive, `GetStatus`), declared metrics, ingest counters |
//! | `GET /api/series?device=&metric=&from=&to=&width=&rate=` | a range, reduced to about two points per pixel column |
//! | `GET /api/commands?service=` | the service's `GetCommands` |
//! | `POST /api/command` | `{service, command, args}`: one command; needs `--enable-commands` and the token |
//! | `GET /api/live` | server-sent events: `points` as they arrive, `state` when it changes |
//! | `GET /`, `GET /assets/...` | the page |
//!
//! Every request passes [`Guard`] first. Errors are `{"error": {"code", "message"}}`, with the
//! codes of PROTOCOL.md section 4 where they apply.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tolomeo_proto::ServiceName;
use tolomeo_proto::command::MAX_REQUEST_BYTES;
use tolomeo_proto::senml;

use crate::Error;
use crate::guard::{Guard, token_matches};
use crate::live::Shared;
use crate::store::{SeriesKey, Transform};

/// How long a command may take: the services' own timeout (10 s) and a margin.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(12);
/// The widest chart a series is reduced for, in pixel columns.
const MAX_WIDTH: usize = 8192;
/// A `state` event is sent at least this often (services expire with time, not only on news).
const STATE_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    stopping: watch::Receiver<bool>,
}

/// Serves until `shutdown` resolves; the live streams end then too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    guard: Guard,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (stop_tx, stopping) = watch::channel(false);
    let app = App {
        shared,
        guard: Arc::new(guard),
        stopping,
    };
    let router = router(app);
    let mut stop_rx = stop_tx.subscribe();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|e| Error::Io(format!("the web server stopped: {e}")))
}

fn router(app: App) -> Router {
    Router::new()
        .route("/api/state", get(state))
        .route("/api/series", get(series))
        .route("/api/commands", get(commands))
        .route("/api/command", post(command))
        .route("/api/live", get(live))
        .fallback(asset)
        .layer(middleware::from_fn_with_state(app.clone(), check))
        .with_state(app)
}

/// `{"error": {"code", "message"}}` with a status.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn check(State(app): State<App>, request: Request, next: Next) -> Response {
    let verdict = {
        let headers = request.headers();
        let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        app.guard.check(value(header::HOST), value(header::ORIGIN))
    };
    if let Err(why) = verdict {
        return error(StatusCode::FORBIDDEN, "forbidden", why);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn asset(request: Request) -> Response {
    if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "only GET is served here",
        );
    }
    match crate::assets::asset(request.uri().path()) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{}: no such page; the dashboard is at /", request.uri().path()),
        ),
    }
}

async fn state(State(app): State<App>) -> Json<Value> {
    Json(app.shared.state_json())
}

/// `GET /api/series` parameters.
#[derive(Debug, Deserialize)]
struct SeriesQuery {
    device: String,
    metric: String,
    from: f64,
    to: f64,
    width: Option<usize>,
    rate: Option<bool>,
}

async fn series(
    State(app): State<App>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{e}: expected device, metric, from and to (Unix seconds), and optionally width and rate"),
            );
        }
    };
    if !(q.from.is_finite() && q.to.is_finite() && q.from <= q.to) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "from {} to {}: expected finite Unix times with from <= to",
                q.from, q.to
            ),
        );
    }
    let width = q.width.unwrap_or(1000).clamp(1, MAX_WIDTH);
    let transform = if q.rate.unwrap_or(false) {
        Transform::RatePerSecond
    } else {
        Transform::Raw
    };
    let key = SeriesKey {
        device: q.device,
        metric: q.metric,
    };
    match app.shared.history.query(key, q.from, q.to, width, transform).await {
        Ok(series) => Json(series).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e),
    }
}

/// `GET /api/commands` parameters.
#[derive(Debug, Deserialize)]
struct CommandsQuery {
    service: String,
}

async fn commands(
    State(app): State<App>,
    query: Result<Query<CommandsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "expected ?service=<name>");
    };
    match call(&app.shared, &q.service, "GetCommands", &json!({})).await {
        Ok(Reply::Result(result)) => Json(result).into_response(),
        Ok(Reply::Error(e)) => (StatusCode::BAD_GATEWAY, Json(json!({"error": e}))).into_response(),
        Err(response) => response,
    }
}

/// `POST /api/command` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    service: String,
    command: String,
    #[serde(default)]
    args: Option<Value>,
}

async fn command(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &app.shared.token else {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "commands are disabled: start the dashboard with --enable-commands",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if token_matches(p.trim(), token) => {}
        Some(_) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong token: expected the one tlm-dashboard printed at start",
            );
        }
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no token: send Authorization: Bearer <token>, the token tlm-dashboard printed at start",
            );
        }
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_body {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "expected Content-Type: application/json",
        );
    }
    if body.len() > MAX_REQUEST_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!(
                "{} bytes: a command request is at most {MAX_REQUEST_BYTES} bytes",
                body.len()
            ),
        );
    }
    let request: CommandRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{e}: expected {{\"service\": name, \"command\": name, \"args\": {{...}}}}"),
            );
        }
    };
    let args = request.args.unwrap_or_else(|| json!({}));
    if !args.is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            format!("args {args}: expected a JSON object"),
        );
    }
    if request.command.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "no command name");
    }
    let started = Instant::now();
    match call(&app.shared, &request.service, &request.command, &args).await {
        Ok(Reply::Result(result)) => Json(json!({
            "ok": true,
            "result": result,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }))
        .into_response(),
        Ok(Reply::Error(e)) => Json(json!({
            "ok": false,
            "error": e,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }))
        .into_response(),
        Err(response) => response,
    }
}

/// A service's answer to one command.
enum Reply {
    /// The command's result object.
    Result(Value),
    /// Its `error` object: `code` and `message`.
    Error(Value),
}

/// Sends one command and reads its one response record.
async fn call(shared: &Shared, service: &str, command: &str, args: &Value) -> Result<Reply, Response> {
    let name = ServiceName::new(service).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("service {service:?}: {e}"),
        )
    })?;
    let pack = json!([{"n": command, "vs": args.to_string()}]).to_string();
    let subject = name.request_subject();
    let reply = tokio::time::timeout(COMMAND_TIMEOUT, shared.client.request(subject.clone(), pack.into())).await;
    let msg = match reply {
        Err(_) => {
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "{service} did not answer {command} within {} s",
                    COMMAND_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                "no_responders",
                format!("no service listens on {subject}: is {service} running?"),
            ));
        }
        Ok(Err(e)) => {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                "failed",
                format!("{command} to {service}: {e}"),
            ));
        }
        Ok(Ok(msg)) => msg,
    };
    let bad = |why: String| {
        error(
            StatusCode::BAD_GATEWAY,
            "invalid_response",
            format!("{service}'s answer to {command}: {why}: expected a SenML pack with the result in vs"),
        )
    };
    let pack = senml::decode_pack(&msg.payload).map_err(|e| bad(e.to_string()))?;
    let vs = pack
        .first()
        .and_then(|r| r.vs.as_deref())
        .ok_or_else(|| bad("no record with vs".into()))?;
    let value: Value = serde_json::from_str(vs).map_err(|e| bad(e.to_string()))?;
    Ok(match value.get("error") {
        Some(e) => Reply::Error(e.clone()),
        None => Reply::Result(value),
    })
}

async fn live(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let mut points = app.shared.live.subscribe();
    let mut stopping = app.stopping.clone();
    let shared = app.shared.clone();
    tokio::spawn(async move {
        let state_event = |shared: &Shared| Event::default().event("state").data(shared.state_json().to_string());
        let mut version = shared.registry().version;
        if tx.send(state_event(&shared)).await.is_err() {
            return;
        }
        let mut last_state = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let event = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break,
                received = points.recv() => match received {
                    Ok(json) => Event::default().event("points").data(&*json),
                    // A slow page misses points; it reloads the range when told.
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    let now_version = shared.registry().version;
                    if now_version == version && last_state.elapsed() < STATE_EVERY {
                        continue;
                    }
                    version = now_version;
                    last_state = Instant::now();
                    state_event(&shared)
                }
            };
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

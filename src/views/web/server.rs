//! The dashboard's HTTP side (axum): the embedded page, the stack's description, the live
//! stream (SSE) and the actions (POST, through the `StackHandle`). Every request passes the
//! guard first: loopback `Host`, the per-run token. Nothing here decides anything about
//! services.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::auth::{self, Credential, Verdict};
use super::hub::HubCommand;
use crate::engine::StackHandle;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Nothing from elsewhere, no framing, and no token leaking through a `Referer` when a port
/// link is followed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(Clone)]
pub(super) struct AppState {
    pub token: Arc<str>,
    pub port: u16,
    pub handle: StackHandle,
    pub hub: mpsc::Sender<HubCommand>,
    /// The stack's description as JSON (it does not change during a run).
    pub info: Arc<str>,
    pub services: Arc<[String]>,
}

pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
        .route("/api/stack", get(stack))
        .route("/api/events", get(events))
        .route("/api/services/{service}/{action}", post(action))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn forbidden(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, format!("forbidden: {why}\n")).into_response()
}

async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let text = |name: header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let verdict = auth::check(
        &auth::Request {
            host: text(header::HOST),
            origin: text(header::ORIGIN),
            query: req.uri().query(),
            cookie: text(header::COOKIE),
            header: h.get(auth::TOKEN_HEADER).and_then(|v| v.to_str().ok()),
            mutating: !matches!(*req.method(), Method::GET | Method::HEAD),
        },
        &st.token,
        st.port,
    );
    let how =
        match verdict {
            Verdict::Allow(how) => how,
            Verdict::ForeignHost => {
                return forbidden("this dashboard answers only to 127.0.0.1 and localhost")
            }
            Verdict::NoToken => return forbidden(
                "open the dashboard with the URL devstack printed at start-up (it holds the token)",
            ),
        };
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if how == Credential::Query {
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            auth::cookie_name(st.port),
            st.token
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8").await
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn stack(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        st.info.to_string(),
    )
        .into_response()
}

async fn events(
    State(st): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StatusCode> {
    let (reply, answer) = oneshot::channel();
    st.hub
        .send(HubCommand::Join(reply))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let joined = answer.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let first = stream::once(async move { Ok(Event::default().event("init").data(joined.init)) });
    let rest = stream::unfold(joined.batches, |mut rx| async move {
        let msg = rx.recv().await?;
        Some((Ok(Event::default().event("batch").data(&*msg)), rx))
    });
    Ok(Sse::new(first.chain(rest)).keep_alive(KeepAlive::default()))
}

async fn action(
    State(st): State<AppState>,
    Path((service, action)): Path<(String, String)>,
    _headers: HeaderMap,
) -> Response {
    if !st.services.contains(&service) {
        return (
            StatusCode::NOT_FOUND,
            format!("no service `{service}` in this run\n"),
        )
            .into_response();
    }
    let sent = match action.as_str() {
        "restart" => st.handle.restart(&service),
        "stop" => st.handle.stop(&service),
        "start" => st.handle.start(&service),
        _ => return (StatusCode::NOT_FOUND, format!("no action `{action}`\n")).into_response(),
    };
    if sent {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "service": service, "action": action })),
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the stack has stopped\n").into_response()
    }
}

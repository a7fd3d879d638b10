//! The web dashboard, served by the running devstack on 127.0.0.1: a live table of the
//! services with restart/stop/start, the merged log (filter, search, pause), and the dependency
//! graph with each node's state. Every asset is embedded; nothing is fetched from elsewhere.
//! A subscriber of the stack's events and a caller of its handle, nothing more: it must not
//! hold state about services of its own, nor ever show a secret value, nor connect to a
//! container engine (CPU and memory come from the [`UsageSource`] it is given).

mod auth;
mod hub;
pub(crate) mod model;
mod server;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

pub(crate) use auth::new_token;
pub(crate) use model::{StackInfo, Usage};

use crate::engine::StackHandle;

/// Log items the devstack side keeps for a page that opens late (the page keeps 5,000).
const KEEP_LINES: usize = 2000;

/// A running dashboard; it stops when dropped.
pub(crate) struct Dashboard {
    pub url: String,
    server: JoinHandle<()>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where the dashboard reads the CPU and memory of the running services in a snapshot, for the
/// table's CPU and RSS columns. Handed in by whoever starts the dashboard (the session samples
/// through the engine it already has): the dashboard never connects to an engine itself.
pub(crate) type UsageSource = Arc<
    dyn Fn(Vec<crate::engine::ServiceStatus>) -> BoxFuture<'static, HashMap<String, Usage>>
        + Send
        + Sync,
>;

/// The dashboard's figures from one sampling of the live `ps` (`control::server::usage_of`):
/// a service without a memory reading is left out, a missing CPU figure shows as 0.
pub(crate) fn usage(
    sampled: HashMap<String, (Option<f64>, Option<u64>)>,
) -> HashMap<String, Usage> {
    sampled
        .into_iter()
        .filter_map(|(service, (cpu, rss))| {
            Some((
                service,
                Usage {
                    cpu_percent: cpu.unwrap_or(0.0) as f32,
                    rss_bytes: rss?,
                },
            ))
        })
        .collect()
}

/// What the dashboard masks in services' own lines: the stack's interpolated secret values and
/// the values of secret-looking environment keys (`config`'s rule), so a service that prints its
/// password does not show it on a page.
pub(crate) fn secrets(stack: &crate::config::Stack) -> crate::redact::Redactor {
    let literal = stack.services.values().flat_map(|s| {
        s.environment
            .iter()
            .filter(|(k, _)| crate::config::show::is_secret_key(k))
            .map(|(_, v)| v.clone())
    });
    crate::redact::Redactor::new(stack.secret_values.iter().cloned().chain(literal))
}

/// Binds 127.0.0.1:`port` (a free one when `None`) and serves the dashboard of `handle`'s
/// stack until dropped, its CPU and memory figures read from `usage`. Must run inside the tokio
/// runtime that runs the engine.
pub(crate) async fn start(
    handle: StackHandle,
    info: StackInfo,
    port: Option<u16>,
    redact: crate::redact::Redactor,
    usage: UsageSource,
) -> std::io::Result<Dashboard> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port.unwrap_or(0))).await?;
    let port = listener.local_addr()?.port();
    let token = new_token()?;
    let state = server::AppState {
        token: token.clone().into(),
        port,
        hub: hub::spawn(handle.clone(), KEEP_LINES, redact, usage),
        handle,
        info: serde_json::to_string(&info)
            .map_err(std::io::Error::other)?
            .into(),
        services: info
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
            .into(),
    };
    let app = server::router(state);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the dashboard stopped serving: {e}");
        }
    });
    Ok(Dashboard {
        url: format!("http://127.0.0.1:{port}/?token={token}"),
        server,
    })
}

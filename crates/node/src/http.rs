//! The HTTP endpoints: `/healthz` (the process is up), `/readyz` (the node has joined the
//! metadata group and opened its replicas), `/metrics` (Prometheus text format).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// What the HTTP endpoints need from the node.
pub trait HttpState: Send + Sync + 'static {
    /// `None` when ready, otherwise why not.
    fn not_ready_reason(&self) -> Option<String>;
    /// The `/metrics` body.
    fn metrics_text(&self) -> String;
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz<S: HttpState>(State(s): State<Arc<S>>) -> impl IntoResponse {
    match s.not_ready_reason() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics<S: HttpState>(State(s): State<Arc<S>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics_text(),
    )
}

/// Serves the endpoints on `listener` until `shutdown` completes.
pub async fn serve<S: HttpState>(
    listener: TcpListener,
    state: Arc<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

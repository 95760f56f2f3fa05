//! The z-image-local gateway: the only thing the LAN talks to.
//!
//! # Layout
//! - [`config`]: the command line and environment (the only reader of the environment).
//! - [`validation`]: a job request becomes [`validation::GenerationParams`] or a field error.
//! - [`comfy`]: everything that knows ComfyUI: HTTP client, WebSocket, messages, workflow.
//! - [`jobs`]: a job's life from submission to stored image; [`relay`]: its events for watchers.
//! - [`images`] and [`history`]: what is kept on disk under the data folder.
//! - [`readiness`]: the background probe behind `/readyz`.
//! - [`routes`]: HTTP only: extract, call one of the above, answer.
//!
//! [`serve`] wires them together on an already bound listener, so tests run it on port 0.

pub mod atomic_file;
pub mod bench;
pub mod comfy;
pub mod config;
pub mod history;
pub mod images;
pub mod job_id;
pub mod models;
pub mod relay;
pub mod shutdown;
pub mod telemetry;
pub mod validation;

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::ServeConfig;

/// Serves the studio on `listener` until `shutdown` resolves.
pub async fn serve(
    _config: ServeConfig,
    _listener: TcpListener,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::bail!("the gateway is being assembled")
}

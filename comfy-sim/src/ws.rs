//! `GET /ws?clientId=`: registers the socket, greets it with `status` (and `executing` when it owns
//! the running prompt), answers the `feature_flags` handshake, and forwards the hub's messages.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::hub::{Outgoing, Target};
use crate::shared::{Shared, ws_text};

/// The server's half of the `feature_flags` handshake (comfy_api/feature_flags.py, as recorded).
pub(crate) fn server_features() -> Value {
    json!({
        "supports_preview_metadata": true,
        "max_upload_size": 104_857_600,
        "extension": {"manager": {"supports_v4": true}},
    })
}

/// Serves one socket until it closes, is dropped by a fault, or is cut by a restart.
pub(crate) async fn serve_socket(socket: WebSocket, shared: Arc<Shared>, client_id: Option<String>) {
    // An empty or missing clientId gets a fresh one, like `uuid.uuid4().hex`.
    let sid = client_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let (registration, mut outgoing) = {
        let state = shared.state();
        let greeting = Shared::status_message(state.queue_remaining(), Some(&sid));
        let registered = shared.hub.register(&sid, greeting);
        // A client that reconnects while its prompt runs learns which node is executing.
        let owns_running = state
            .running
            .as_ref()
            .is_some_and(|item| item.client_id().as_deref() == Some(&sid));
        if owns_running && let Some(node) = &state.last_node_id {
            shared.hub.send_text(
                &Target::Client(sid.clone()),
                ws_text("executing", json!({"node": node})),
            );
        }
        registered
    };
    tracing::debug!(%sid, "websocket connected");

    let (mut sink, mut stream) = socket.split();
    let mut first_message = true;
    let mut stalled = false;
    loop {
        tokio::select! {
            next = outgoing.recv() => {
                let message = match next {
                    Some(Outgoing::Text(text)) => Message::Text(text.into()),
                    Some(Outgoing::Binary(bytes)) => Message::Binary(bytes),
                    Some(Outgoing::Stall) => {
                        stalled = true;
                        break;
                    }
                    Some(Outgoing::Drop) | None => break,
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            incoming = stream.next() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        handle_text(&shared, &sid, text.as_str(), first_message);
                        first_message = false;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    if stalled {
        // Neither read (pings go unanswered) nor write, but keep the connection open until the
        // simulator cuts it (restart, refuse, shutdown). The registration stays, as it would for a
        // socket whose peer went quiet.
        tracing::info!(%sid, "websocket stalled");
        shared.gate.cut_signal().await;
        drop((sink, stream));
    }
    shared.hub.unregister(&registration);
    tracing::debug!(%sid, "websocket closed");
}

/// Only the first text message can be the handshake; anything else is ignored.
fn handle_text(shared: &Shared, sid: &str, text: &str, first_message: bool) {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(%sid, "invalid JSON received from client");
        return;
    };
    if first_message && message.get("type").and_then(Value::as_str) == Some("feature_flags") {
        let supported = message
            .pointer("/data/supports_preview_metadata")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        shared.hub.set_preview_metadata(sid, supported);
        shared.hub.send_text(
            &Target::Client(sid.to_owned()),
            ws_text("feature_flags", server_features()),
        );
        tracing::debug!(%sid, supported, "feature flags negotiated");
    }
}

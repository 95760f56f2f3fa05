//! The connected WebSocket clients by `clientId` (ComfyUI's `PromptServer.sockets`) and how
//! messages reach them: to one client id, or broadcast to everyone when there is none.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

/// What a socket task is asked to do next, in order.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Text(String),
    Binary(Bytes),
    /// Close the connection abruptly (the "drop" fault).
    Drop,
    /// Stop sending and reading without closing (the "stall" fault).
    Stall,
}

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The socket registered under this client id, if any (otherwise the message is lost).
    Client(String),
    /// Every connected socket.
    Broadcast,
}

impl Target {
    /// `server.client_id` semantics: a prompt without a client id broadcasts.
    pub(crate) fn from_client_id(client_id: Option<&str>) -> Self {
        client_id.map_or(Target::Broadcast, |id| Target::Client(id.to_owned()))
    }
}

struct Connection {
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Set by the `feature_flags` handshake: previews as type-4 frames.
    supports_preview_metadata: bool,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<String, Connection>,
    /// Bumped by a simulated restart: sockets of an older generation no longer touch the map.
    generation: u64,
}

/// A registered socket: what its task needs to unregister itself later.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) sid: String,
    pub(crate) generation: u64,
}

/// The socket registry.
#[derive(Default)]
pub(crate) struct Hub {
    registry: Mutex<Registry>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the map half-updated, so keep going.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a socket under `sid`, replacing (not closing) any socket that had it, and queues
    /// `first` (the `status` greeting) before anything else can reach the new socket.
    pub(crate) fn register(
        &self,
        sid: &str,
        first: String,
    ) -> (Registration, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Outgoing::Text(first));
        let mut registry = self.lock();
        let generation = registry.generation;
        registry.sockets.insert(
            sid.to_owned(),
            Connection {
                tx,
                supports_preview_metadata: false,
            },
        );
        (
            Registration {
                sid: sid.to_owned(),
                generation,
            },
            rx,
        )
    }

    /// Removes the socket's entry when its connection ends.
    ///
    /// ComfyUI 0.8.0 pops the client id unconditionally (issue Comfy-Org/ComfyUI#16010): if an old
    /// socket closes after a new one took its id, the new one is unregistered and stops getting
    /// events. The simulator keeps that bug so a gateway that trips over it fails here too.
    pub(crate) fn unregister(&self, registration: &Registration) {
        let mut registry = self.lock();
        if registry.generation == registration.generation {
            registry.sockets.remove(&registration.sid);
        }
    }

    /// Records the client's `feature_flags` (looked up by client id, as ComfyUI does).
    pub(crate) fn set_preview_metadata(&self, sid: &str, supported: bool) {
        if let Some(connection) = self.lock().sockets.get_mut(sid) {
            connection.supports_preview_metadata = supported;
        }
    }

    /// Whether the client negotiated type-4 preview frames; a broadcast never has.
    pub(crate) fn supports_preview_metadata(&self, target: &Target) -> bool {
        match target {
            Target::Client(sid) => self
                .lock()
                .sockets
                .get(sid)
                .is_some_and(|c| c.supports_preview_metadata),
            Target::Broadcast => false,
        }
    }

    pub(crate) fn send_text(&self, target: &Target, text: String) {
        self.send(target, |_| Outgoing::Text(text.clone()));
    }

    pub(crate) fn send_binary(&self, target: &Target, bytes: Bytes) {
        self.send(target, |_| Outgoing::Binary(bytes.clone()));
    }

    fn send(&self, target: &Target, make: impl Fn(&Connection) -> Outgoing) {
        let registry = self.lock();
        match target {
            Target::Client(sid) => {
                if let Some(connection) = registry.sockets.get(sid) {
                    let _ = connection.tx.send(make(connection));
                }
            }
            Target::Broadcast => {
                for connection in registry.sockets.values() {
                    let _ = connection.tx.send(make(connection));
                }
            }
        }
    }

    /// Closes every registered socket. Their entries go at once, so a client that reconnects
    /// right away is not unregistered by the old socket's clean-up.
    pub(crate) fn drop_all(&self) {
        let mut registry = self.lock();
        for (_, connection) in registry.sockets.drain() {
            let _ = connection.tx.send(Outgoing::Drop);
        }
    }

    /// Makes every registered socket go silent without closing.
    pub(crate) fn stall_all(&self) {
        for connection in self.lock().sockets.values() {
            let _ = connection.tx.send(Outgoing::Stall);
        }
    }

    /// Forgets every socket, as a restarted process would (their connections are cut elsewhere).
    pub(crate) fn reset(&self) {
        let mut registry = self.lock();
        registry.sockets.clear();
        registry.generation += 1;
    }

    #[cfg(test)]
    fn is_registered(&self, sid: &str) -> bool {
        self.lock().sockets.contains_key(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Option<String> {
        match rx.try_recv() {
            Ok(Outgoing::Text(t)) => Some(t),
            _ => None,
        }
    }

    #[test]
    fn the_greeting_comes_first_and_targeted_messages_reach_only_their_client() {
        let hub = Hub::default();
        let (_a, mut rx_a) = hub.register("a", "hello a".to_owned());
        let (_b, mut rx_b) = hub.register("b", "hello b".to_owned());
        hub.send_text(&Target::Client("a".to_owned()), "for a".to_owned());
        hub.send_text(&Target::Broadcast, "for all".to_owned());
        assert_eq!(text(&mut rx_a).as_deref(), Some("hello a"));
        assert_eq!(text(&mut rx_a).as_deref(), Some("for a"));
        assert_eq!(text(&mut rx_a).as_deref(), Some("for all"));
        assert_eq!(text(&mut rx_b).as_deref(), Some("hello b"));
        assert_eq!(text(&mut rx_b).as_deref(), Some("for all"));
        assert_eq!(text(&mut rx_b), None);
    }

    #[test]
    fn an_old_socket_closing_late_unregisters_the_new_one_like_comfyui() {
        let hub = Hub::default();
        let (old, _rx_old) = hub.register("same", String::new());
        let (_new, _rx_new) = hub.register("same", String::new());
        hub.unregister(&old);
        assert!(!hub.is_registered("same"));
    }

    #[test]
    fn sockets_from_before_a_restart_leave_the_new_registry_alone() {
        let hub = Hub::default();
        let (old, _rx_old) = hub.register("same", String::new());
        hub.reset();
        let (_new, _rx_new) = hub.register("same", String::new());
        hub.unregister(&old);
        assert!(hub.is_registered("same"));
    }

    #[test]
    fn preview_metadata_is_per_client_and_never_for_a_broadcast() {
        let hub = Hub::default();
        let (_a, _rx) = hub.register("a", String::new());
        hub.set_preview_metadata("a", true);
        assert!(hub.supports_preview_metadata(&Target::Client("a".to_owned())));
        assert!(!hub.supports_preview_metadata(&Target::Client("b".to_owned())));
        assert!(!hub.supports_preview_metadata(&Target::Broadcast));
    }
}

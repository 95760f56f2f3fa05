//! The studio's user interface, compiled twice: with `ssr` inside the gateway, with `hydrate` for the browser.
//!
//! [`api`] is the wire contract between this UI and the gateway; both sides use the same types.

pub mod api;

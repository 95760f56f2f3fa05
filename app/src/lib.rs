//! The studio's user interface, compiled twice: with `ssr` inside the gateway, with `hydrate` for the
//! browser (the `hydrate` crate, which Trunk builds, is the bundle's entry point).
//!
//! [`api`] is the wire contract between this UI and the gateway; both sides use the same types.
//! The UI's decisions live in plain, unit-tested types ([`form`], [`job`], [`history`], [`backend`]);
//! [`studio`] wires them to signals and the gateway, and the components only render.

pub mod api;
pub mod app;
pub mod backend;
pub mod browser;
pub mod client;
pub mod components;
pub mod form;
pub mod history;
pub mod job;
pub mod pages;
pub mod shell;
pub mod strings;
pub mod studio;

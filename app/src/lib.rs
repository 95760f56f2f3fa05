//! The studio's user interface, compiled twice: with `ssr` inside the gateway, with `hydrate` for the
//! browser (the `hydrate` crate, which Trunk builds, is the bundle's entry point).
//!
//! [`api`] is the wire contract (the `zimage-contract` crate) shared with the gateway.
//! The UI's decisions live in plain, unit-tested types ([`form`], [`job`], [`history`], [`backend`],
//! [`paint`]); [`studio`] wires them to signals and the gateway, and the components only render.

pub use zimage_contract as api;
pub mod app;
pub mod backend;
pub mod browser;
pub mod client;
pub mod components;
pub mod form;
pub mod history;
pub mod i18n;
pub mod job;
pub mod pages;
pub mod paint;
pub mod plain;
pub mod shell;
pub mod studio;

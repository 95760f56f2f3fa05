//! The simulator's integration tests: one binary, a module per area.

mod protocol;
mod support;

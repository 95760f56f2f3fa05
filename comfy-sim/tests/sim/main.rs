//! The simulator's integration tests: one binary, a module per area.

mod faults;
mod loras;
mod protocol;
mod support;
mod traces;
mod uploads;
mod validation;

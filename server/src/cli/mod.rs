//! Commands that are clients of a running studio rather than the studio itself.

pub mod generate;

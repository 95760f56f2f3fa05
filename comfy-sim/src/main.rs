//! `comfy-sim`: the simulator as a standalone server.
fn main() {}

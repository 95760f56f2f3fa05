//! `zimage`: the gateway binary.
fn main() {}

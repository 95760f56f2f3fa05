//! The pages of the studio, one per route.

pub mod not_found;
pub mod studio;

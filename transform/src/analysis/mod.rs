//! Analysis phase: what calls what, what can unwind, what is live where.

pub mod liveness;
pub mod scan;
pub mod unwind;

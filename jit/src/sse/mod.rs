//! SSE/SSE2 support: the software IEEE-754 core with MXCSR semantics
//! ([`float`]) and lane helpers for 128-bit vectors ([`vec`]).

pub mod float;
pub mod vec;

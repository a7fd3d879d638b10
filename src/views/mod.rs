//! The views of a running stack: subscribers of its events and callers of its handle. They
//! hold no logic about services of their own; what they show comes from `StackHandle`.

pub mod terminal;
pub mod web;

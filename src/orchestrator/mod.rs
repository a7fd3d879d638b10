//! Bringing a stack up and down: the pure start-up state machine and the async loop around it.

pub mod run;
pub mod state;
pub mod supervisor;

pub use run::{down, up, DownRequest, UpError, UpOutcome, UpRequest};

//! devstack: one `stack.yaml` (or Compose file) runs a whole development stack — infrastructure
//! in containers, the application's services as native processes. The shape, inside out:
//! - `kernel`: PURE; every lifecycle decision, `handle(now, Input) -> Vec<Effect>`.
//! - `engine`: a dispatcher (`engine/dispatch.rs`): turns each source (units, probes, timers,
//!   task checks, builds, commands, file changes, signals) into one event, asks the kernel and
//!   applies its effects; `engine::StackHandle` is the one way in.
//! - `unit`: one actor per container or process group, mechanism only, over `runtime` (the
//!   trait; `docker`, its bollard adapter) and `process`.
//! - `event`: `StackEvent`, the typed vocabulary every client reads, merged with output in `logs`.
//! - `views` (terminal, web dashboard) and `control` (socket, CLI verbs, MCP): events and handle.
//! - `config`: the stack file in, a validated `Stack` out (`graph`, `plan` derive order, specs).
//! - `project`: a project's state folder, lock and socket; `session`: the composition root of a
//!   running stack (runtime, signals, log mux, handle; views subscribe); `commands`: one file
//!   per subcommand.

pub mod build;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod docker;
pub mod engine;
pub mod error;
pub mod event;
pub use config::graph;
pub mod kernel;
pub mod logs;
pub mod plan;
pub mod ports;
pub mod probe;
pub mod process;
pub mod program;
pub mod project;
pub mod redact;
pub mod render;
pub mod runtime;
pub mod session;
pub mod unit;
pub mod views;
pub mod watch;

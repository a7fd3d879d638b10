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

#![warn(unreachable_pub)]

pub(crate) mod build;
pub mod cli;
pub(crate) mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub(crate) mod docker;
pub(crate) mod engine;
pub mod error;
pub(crate) mod event;
pub(crate) use config::graph;
pub(crate) mod kernel;
pub(crate) mod logs;
pub(crate) mod plan;
pub(crate) mod ports;
pub mod probe;
pub mod process;
pub(crate) mod program;
pub mod project;
pub(crate) mod redact;
pub(crate) mod render;
pub(crate) mod runtime;
pub(crate) mod session;
pub(crate) mod snapshot;
pub(crate) mod unit;
pub(crate) mod views;
pub mod watch;

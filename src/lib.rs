//! devstack: one `stack.yaml` (or Compose file) runs a whole development stack — infrastructure
//! in containers, the application's services as native processes. The shape, inside out:
//! - `kernel`: PURE; every lifecycle decision, `handle(now, Input) -> Vec<Effect>`.
//! - `engine`: the async loop that feeds the kernel (units, probes, timers, commands, file
//!   changes, signals) and carries out its effects; `engine::StackHandle` is the one way in.
//! - `unit`: one actor per container or process group, mechanism only, over `runtime` (the
//!   trait; `docker`, its bollard adapter) and `process`.
//! - `event`: `StackEvent`, the typed vocabulary every client reads, merged with output in `logs`.
//! - `views` (terminal, web dashboard) and `control` (socket, CLI verbs, MCP): events and handle.
//! - `config`: the stack file in, a validated `Stack` out (`graph`, `plan` derive order, specs).
//! - `project`: a project's state folder, lock and socket; `commands`: one per subcommand, and
//!   for now the composition root (runtime, signals, log mux, handle, views) a `session` will be.

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
pub mod graph;
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
pub mod unit;
pub mod views;
pub mod watch;

//! devstack: one `stack.yaml` runs a whole development stack — infrastructure in containers,
//! the application's services as native processes.

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

//! devstack: one `stack.yaml` runs a whole development stack — infrastructure in containers,
//! the application's services as native processes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod graph;

//! Control of a running stack from other processes: a Unix socket in the project's state
//! folder that serves the engine's `StackHandle` (commands in, `StackEvent`s out), its client,
//! and the MCP server for coding agents, which is a client too.

pub mod client;
pub mod instances;
pub mod mcp;
pub mod protocol;
pub mod server;

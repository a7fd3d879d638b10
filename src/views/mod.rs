//! The views of a running stack, the terminal view and the web dashboard: subscribers of its
//! events and callers of its handle. They hold no state or logic about services of their own:
//! states and actions go through `StackHandle`. Beside it they read only the loaded `Stack`
//! (the dashboard's static description and the secrets it masks) and, for the dashboard's CPU
//! and memory columns, the same usage sampling as the live `ps` (with a Docker connection of
//! its own).

pub(crate) mod terminal;
pub(crate) mod web;

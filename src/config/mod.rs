//! The stack file: schema, loading, interpolation, validation and display.

pub mod diagnostic;
pub mod interpolate;
pub mod keypath;
mod load;
pub mod locate;
pub mod model;
pub mod raw;
pub mod show;
pub mod validate;

pub use diagnostic::Diagnostic;
pub use keypath::KeyPath;
pub use load::{find_stack_file, load, ConfigError, LoadOptions, Loaded, DEFAULT_FILE};
pub use model::*;

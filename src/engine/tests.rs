//! Engine tests with a recording fake runtime and paused time.

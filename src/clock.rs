//! The wall clock as devstack records it: milliseconds since the Unix epoch, for start times,
//! `since` filters and names that must differ between runs. Not for measuring durations (that
//! is tokio's `Instant`, which paused-time tests control), and not for the kernel, which gets
//! `now` as an argument.

/// Now, in milliseconds since the Unix epoch; 0 if the system clock is before it.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

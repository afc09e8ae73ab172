//! Statistics: what the shards count and time, and how it reaches the control thread.

pub mod log;
pub mod ring;

//! cjemu-replay: virtual clock, timers, record/replay log, snapshots, and the
//! state hash that replay checkpoints and `--stats` use.

pub mod state_hash;

pub use state_hash::{StateHash, StateHasher};

//! cjemu-replay: virtual clock, timers, record/replay log, snapshots, and the
//! state hash that replay checkpoints and `--stats` use.
//!
//! - [`clock`]: `ns = bias + (icount << shift)`, the only time devices see.
//! - [`timers`]: deadlines on that clock, and the budget of the next run.
//! - [`state_hash`]: the hash of architectural state.
//! - [`replay_log`]: the record/replay log format (header, checksummed
//!   frames of inputs stamped with their instruction count).

#![warn(missing_docs)]

pub mod clock;
pub mod replay_log;
pub mod state_hash;
pub mod timers;

pub use clock::{VirtualClock, VirtualNs};
pub use state_hash::{StateHash, StateHasher};
pub use timers::{TimerId, Timers};

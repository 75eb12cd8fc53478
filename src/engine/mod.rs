//! The swarm engine: tracker, dialer, listener, per-peer tasks, piecekeeper
//! and the main event loop, as in the design notes.

pub mod choker;
pub mod picker;
pub mod ratelimit;
pub mod tracker;

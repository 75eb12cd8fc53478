//! The swarm engine: tracker, dialer, listener, per-peer tasks, piecekeeper
//! and the main event loop, as in the design notes.
//!
//! Not built yet: it arrives with the engine issue. The storage and metainfo
//! layers it stands on are complete.

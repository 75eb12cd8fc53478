//! The fuser adapter that maps the control tree (`ctl`, `event`, `stats`,
//! `pieces`, `peers/`, `files/`) onto inodes.
//!
//! Not built yet: it arrives with the filesystem issue, after the engine.

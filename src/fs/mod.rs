//! The FUSE filesystem: the control tree over the engine.
//!
//! - [`tree`]: inode numbers and the `files/` tree.
//! - [`ctl`]: the `ctl` command language.
//! - [`render`]: the text of generated files and `event` lines.
//! - [`adapter`]: the fuser `Filesystem` that serves them.
//! - [`mount`]: mounting, unmounting and the supervisor thread.

pub mod adapter;
pub mod ctl;
pub mod mount;
pub mod render;
pub mod tree;

//! Inode numbers for the control tree, and the `files/` tree built from the
//! torrent's file list.
//!
//! Fixed nodes have fixed numbers; `files/` nodes are [`FILE_BASE`] plus
//! their index here; `peers/ID/...` nodes are computed from the peer id, so
//! an id (never reused during a mount) always maps to the same inodes.

use std::collections::BTreeMap;

use crate::engine::PeerId;
use crate::metainfo::Metainfo;

pub const ROOT: u64 = 1;
pub const CTL: u64 = 2;
pub const EVENT: u64 = 3;
pub const STATS: u64 = 4;
pub const PIECES: u64 = 5;
pub const PEERS: u64 = 6;
pub const PEERS_LIST: u64 = 7;
pub const PEERS_BAD: u64 = 8;
pub const FILES: u64 = 9;
pub const FILE_BASE: u64 = 1 << 20;
pub const PEER_BASE: u64 = 1 << 40;

/// What a `peers/ID/...` inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerNode {
    Dir,
    Ctl,
    State,
}

pub fn peer_ino(id: PeerId, node: PeerNode) -> u64 {
    PEER_BASE + id * 4 + node as u64
}

pub fn peer_of(ino: u64) -> Option<(PeerId, PeerNode)> {
    if ino < PEER_BASE {
        return None;
    }
    let rest = ino - PEER_BASE;
    let node = match rest % 4 {
        0 => PeerNode::Dir,
        1 => PeerNode::Ctl,
        2 => PeerNode::State,
        _ => return None,
    };
    Some((rest / 4, node))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir(BTreeMap<String, usize>),
    /// A torrent file: its index in the torrent, length, and where it starts
    /// in the torrent's byte stream.
    File {
        index: usize,
        length: u64,
        offset: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub parent: usize,
    pub kind: NodeKind,
}

/// The `files/` directory: node 0 is `files/` itself.
#[derive(Debug, Clone)]
pub struct FileTree {
    nodes: Vec<Node>,
}

impl FileTree {
    pub fn new(meta: &Metainfo) -> FileTree {
        let mut nodes = vec![Node {
            name: "files".into(),
            parent: 0,
            kind: NodeKind::Dir(BTreeMap::new()),
        }];
        for (index, file) in meta.files.iter().enumerate() {
            let mut at = 0;
            let last = file.path.len() - 1;
            for (depth, component) in file.path.iter().enumerate() {
                let existing = match &nodes[at].kind {
                    NodeKind::Dir(children) => children.get(component).copied(),
                    NodeKind::File { .. } => None,
                };
                at = match existing {
                    Some(child) => child,
                    None => {
                        let kind = if depth == last {
                            NodeKind::File {
                                index,
                                length: file.length,
                                offset: file.offset,
                            }
                        } else {
                            NodeKind::Dir(BTreeMap::new())
                        };
                        nodes.push(Node {
                            name: component.clone(),
                            parent: at,
                            kind,
                        });
                        let child = nodes.len() - 1;
                        if let NodeKind::Dir(children) = &mut nodes[at].kind {
                            children.insert(component.clone(), child);
                        }
                        child
                    }
                };
            }
        }
        FileTree { nodes }
    }

    pub fn ino(index: usize) -> u64 {
        if index == 0 {
            FILES
        } else {
            FILE_BASE + index as u64
        }
    }

    /// The node index of an inode in this tree.
    pub fn index(&self, ino: u64) -> Option<usize> {
        let index = match ino {
            FILES => 0,
            i if (FILE_BASE..PEER_BASE).contains(&i) => (i - FILE_BASE) as usize,
            _ => return None,
        };
        (index < self.nodes.len()).then_some(index)
    }

    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    pub fn child(&self, index: usize, name: &str) -> Option<usize> {
        match &self.nodes[index].kind {
            NodeKind::Dir(children) => children.get(name).copied(),
            NodeKind::File { .. } => None,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileEntry, InfoHash};

    fn meta(paths: &[(&str, u64)]) -> Metainfo {
        let mut offset = 0;
        let files = paths
            .iter()
            .map(|(p, len)| {
                let f = FileEntry {
                    path: p.split('/').map(String::from).collect(),
                    length: *len,
                    offset,
                };
                offset += len;
                f
            })
            .collect();
        Metainfo {
            info_hash: InfoHash([0; 20]),
            name: "t".into(),
            piece_length: 16,
            piece_hashes: vec![[0; 20]; offset.div_ceil(16) as usize],
            files,
            multi_file: true,
            total_length: offset,
            trackers: vec![],
            private: false,
            comment: None,
            created_by: None,
            creation_date: None,
        }
    }

    #[test]
    fn builds_directories_from_paths() {
        let tree = FileTree::new(&meta(&[
            ("t/a", 5),
            ("t/d/b", 7),
            ("t/d/e/c", 0),
            ("t/z", 1),
        ]));
        let t = tree.child(0, "t").unwrap();
        let d = tree.child(t, "d").unwrap();
        let b = tree.child(d, "b").unwrap();
        assert_eq!(
            tree.node(b).kind,
            NodeKind::File {
                index: 1,
                length: 7,
                offset: 5
            }
        );
        assert_eq!(tree.node(b).parent, d);
        assert!(tree.child(d, "missing").is_none());
        assert_eq!(tree.index(FileTree::ino(b)), Some(b));
        assert_eq!(tree.index(FILES), Some(0));
        assert_eq!(tree.index(FILE_BASE + 999), None);
        assert_eq!(tree.len(), 8);
    }

    #[test]
    fn peer_inodes_round_trip() {
        for id in [1, 7, 123_456] {
            for node in [PeerNode::Dir, PeerNode::Ctl, PeerNode::State] {
                assert_eq!(peer_of(peer_ino(id, node)), Some((id, node)));
            }
        }
        assert_eq!(peer_of(FILES), None);
        assert_eq!(peer_of(PEER_BASE + 3), None);
    }
}

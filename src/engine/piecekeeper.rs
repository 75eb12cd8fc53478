//! The piecekeeper answers each peer's disk writer: "was this block requested
//! from this peer, and do we still need it?" The main loop keeps it current
//! (a request is registered *before* it is sent, so a block can never arrive
//! ahead of its registration).
//!
//! The first copy of a block to be checked wins: the answer `true` removes
//! every registration of that block, so during endgame a second copy (perhaps
//! from a bad peer) can never overwrite the first on disk.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::picker::PeerId;
use crate::wire::BlockRef;

/// Queue length of the piecekeeper's inbox.
const INBOX: usize = 1024;

enum Request {
    Expect(PeerId, BlockRef),
    Forget(PeerId, BlockRef),
    ForgetPeer(PeerId),
    Check(PeerId, BlockRef, oneshot::Sender<bool>),
}

/// A cloneable handle to the piecekeeper task.
#[derive(Clone)]
pub struct Piecekeeper {
    tx: mpsc::Sender<Request>,
}

impl Piecekeeper {
    /// Starts the task on the current runtime; it ends when every handle is gone.
    pub fn spawn() -> Piecekeeper {
        let (tx, rx) = mpsc::channel(INBOX);
        tokio::spawn(run(rx));
        Piecekeeper { tx }
    }

    pub async fn expect(&self, peer: PeerId, block: BlockRef) {
        let _ = self.tx.send(Request::Expect(peer, block)).await;
    }

    pub async fn forget(&self, peer: PeerId, block: BlockRef) {
        let _ = self.tx.send(Request::Forget(peer, block)).await;
    }

    pub async fn forget_peer(&self, peer: PeerId) {
        let _ = self.tx.send(Request::ForgetPeer(peer)).await;
    }

    /// Should this block from `peer` be written? At most one `true` per registration.
    pub async fn check(&self, peer: PeerId, block: BlockRef) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .tx
            .send(Request::Check(peer, block, reply))
            .await
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn run(mut rx: mpsc::Receiver<Request>) {
    let mut expected: HashMap<BlockRef, Vec<PeerId>> = HashMap::new();
    while let Some(request) = rx.recv().await {
        match request {
            Request::Expect(peer, block) => {
                let peers = expected.entry(block).or_default();
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
            }
            Request::Forget(peer, block) => {
                if let Some(peers) = expected.get_mut(&block) {
                    peers.retain(|&p| p != peer);
                    if peers.is_empty() {
                        expected.remove(&block);
                    }
                }
            }
            Request::ForgetPeer(peer) => {
                expected.retain(|_, peers| {
                    peers.retain(|&p| p != peer);
                    !peers.is_empty()
                });
            }
            Request::Check(peer, block, reply) => {
                let wanted = expected.get(&block).is_some_and(|p| p.contains(&peer));
                if wanted {
                    expected.remove(&block);
                }
                let _ = reply.send(wanted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(piece: u32) -> BlockRef {
        BlockRef {
            piece,
            offset: 0,
            len: 16384,
        }
    }

    #[tokio::test]
    async fn only_requested_blocks_pass_and_only_once() {
        let k = Piecekeeper::spawn();
        assert!(!k.check(1, b(0)).await, "never requested");
        k.expect(1, b(0)).await;
        k.expect(2, b(0)).await; // endgame duplicate
        assert!(!k.check(3, b(0)).await, "requested from someone else");
        assert!(k.check(2, b(0)).await);
        assert!(!k.check(1, b(0)).await, "the first copy won");
        k.expect(1, b(1)).await;
        k.forget(1, b(1)).await;
        assert!(!k.check(1, b(1)).await, "cancelled");
        k.expect(1, b(2)).await;
        k.expect(1, b(3)).await;
        k.forget_peer(1).await;
        assert!(!k.check(1, b(2)).await);
        assert!(!k.check(1, b(3)).await);
    }
}

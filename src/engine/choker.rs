//! Who we upload to (BEP 3's tit-for-tat).
//!
//! Every [`ROUND`] the [`SLOTS`] interested peers with the best rate are
//! unchoked: while downloading, the rate they give us; while seeding, the rate
//! we upload to them (those who take fastest spread the data best). Every
//! [`OPTIMISTIC_ROUND`] one more interested peer, chosen at random among the
//! rest, is unchoked optimistically, so newcomers get a chance to show their
//! rate. Pure logic: the caller passes the clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::picker::PeerId;

pub const ROUND: Duration = Duration::from_secs(10);
pub const OPTIMISTIC_ROUND: Duration = Duration::from_secs(30);
pub const SLOTS: usize = 4;

/// What the choker needs to know of a connected peer.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: PeerId,
    pub interested: bool,
    /// Bytes/s over the last round: from them when downloading, to them when seeding.
    pub rate: u64,
}

#[derive(Debug)]
pub struct Choker {
    optimistic: Option<PeerId>,
    optimistic_since: Option<Instant>,
    rng: super::Xorshift,
}

impl Choker {
    pub fn new(seed: u64) -> Choker {
        Choker {
            optimistic: None,
            optimistic_since: None,
            rng: super::Xorshift::new(seed),
        }
    }

    pub fn optimistic(&self) -> Option<PeerId> {
        self.optimistic
    }

    /// The peers to have unchoked from now on; everyone else is choked.
    pub fn round(&mut self, peers: &[Candidate], slots: usize, now: Instant) -> BTreeSet<PeerId> {
        let mut interested: Vec<&Candidate> = peers.iter().filter(|p| p.interested).collect();
        // Best rate first; ties by id so that rounds are stable.
        interested.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.id.cmp(&b.id)));
        let mut unchoked: BTreeSet<PeerId> = interested.iter().take(slots).map(|p| p.id).collect();

        let rest: Vec<PeerId> = interested.iter().skip(slots).map(|p| p.id).collect();
        let current_valid = self.optimistic.is_some_and(|id| rest.contains(&id));
        let due = self
            .optimistic_since
            .is_none_or(|since| now.duration_since(since) >= OPTIMISTIC_ROUND);
        if !current_valid || due {
            self.optimistic = if rest.is_empty() {
                None
            } else {
                Some(rest[(self.rng.next_u64() % rest.len() as u64) as usize])
            };
            self.optimistic_since = Some(now);
        }
        if let Some(id) = self.optimistic {
            unchoked.insert(id);
        }
        unchoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: PeerId, interested: bool, rate: u64) -> Candidate {
        Candidate {
            id,
            interested,
            rate,
        }
    }

    #[test]
    fn the_fastest_interested_peers_get_the_slots() {
        let mut c = Choker::new(1);
        let peers = [
            peer(1, true, 100),
            peer(2, true, 900),
            peer(3, false, 5000),
            peer(4, true, 300),
            peer(5, true, 700),
            peer(6, true, 500),
        ];
        let now = Instant::now();
        let unchoked = c.round(&peers, SLOTS, now);
        for id in [2, 5, 6, 4] {
            assert!(
                unchoked.contains(&id),
                "{id} should be unchoked: {unchoked:?}"
            );
        }
        assert!(!unchoked.contains(&3), "not interested: stays choked");
        // The optimistic slot goes to the only interested peer left.
        assert_eq!(c.optimistic(), Some(1));
        assert_eq!(unchoked.len(), 5);
    }

    #[test]
    fn the_optimistic_unchoke_rotates_every_30_seconds() {
        let mut c = Choker::new(7);
        let mut peers: Vec<Candidate> = (1..=4).map(|i| peer(i, true, 1000 + i)).collect();
        peers.extend((10..20).map(|i| peer(i, true, 0)));
        let start = Instant::now();
        let first = {
            c.round(&peers, SLOTS, start);
            c.optimistic().unwrap()
        };
        assert!(first >= 10);
        // Regular rounds inside the 30 s keep it.
        for s in [10, 20] {
            c.round(&peers, SLOTS, start + Duration::from_secs(s));
            assert_eq!(c.optimistic(), Some(first), "at {s} s");
        }
        // Over many 30 s rounds, several peers get their turn.
        let mut chosen = BTreeSet::new();
        for round in 1..=20 {
            c.round(&peers, SLOTS, start + OPTIMISTIC_ROUND * round);
            chosen.insert(c.optimistic().unwrap());
        }
        assert!(chosen.len() >= 4, "rotation visited {chosen:?}");
    }

    #[test]
    fn a_departed_optimistic_peer_is_replaced_at_once() {
        let mut c = Choker::new(3);
        let mut peers: Vec<Candidate> = (1..=6).map(|i| peer(i, true, 100 * i)).collect();
        let now = Instant::now();
        c.round(&peers, SLOTS, now);
        let gone = c.optimistic().unwrap();
        peers.retain(|p| p.id != gone);
        c.round(&peers, SLOTS, now + ROUND);
        assert_ne!(c.optimistic(), Some(gone));
        assert!(c.optimistic().is_some());
    }

    #[test]
    fn nobody_interested_means_nobody_unchoked() {
        let mut c = Choker::new(3);
        let peers = [peer(1, false, 10), peer(2, false, 20)];
        assert!(c.round(&peers, SLOTS, Instant::now()).is_empty());
        assert_eq!(c.optimistic(), None);
    }
}

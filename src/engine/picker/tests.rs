use super::*;

/// 8 pieces of 64 KiB (4 blocks each), the last 20 000 bytes (2 blocks).
const G: Geometry = Geometry {
    piece_count: 8,
    piece_length: 65536,
    total_length: 7 * 65536 + 20000,
};

fn bits(ones: &[usize]) -> Bitfield {
    let mut b = Bitfield::repeat(false, G.piece_count as usize);
    for &i in ones {
        b.set(i, true);
    }
    b
}

fn all() -> Bitfield {
    Bitfield::repeat(true, G.piece_count as usize)
}

fn picker() -> Picker {
    Picker::new(G, bits(&[]), 42)
}

fn pieces_of(blocks: &[BlockRef]) -> Vec<u32> {
    let mut p: Vec<u32> = blocks.iter().map(|b| b.piece).collect();
    p.dedup();
    p
}

/// Receives every block of `piece` from `peer` and verifies it.
fn complete(picker: &mut Picker, peer: PeerId, blocks: &[BlockRef]) {
    for b in blocks {
        picker.received(peer, *b);
    }
    for p in pieces_of(blocks) {
        picker.verified(p);
    }
}

/// Pieces 0 to 3 come from peer 9, which has no others: the random start
/// is over, and pieces 4 to 7 are left.
fn finish_random_start(p: &mut Picker) {
    for _ in 0..RANDOM_FIRST_PIECES {
        let got = p.pick(9, &bits(&[0, 1, 2, 3]), 4);
        complete(p, 9, &got);
    }
}

#[test]
fn blocks_of_one_piece_go_to_one_peer_and_cover_it_exactly() {
    let mut p = picker();
    let got = p.pick(1, &all(), 4);
    assert_eq!(pieces_of(&got).len(), 1, "one piece per peer first");
    let piece = got[0].piece;
    let lens: u64 = got.iter().map(|b| b.len as u64).sum();
    assert_eq!(lens, G.piece_size(piece));
    // A second peer gets a different piece, never blocks of the first.
    let other = p.pick(2, &all(), 4);
    assert!(other.iter().all(|b| b.piece != piece));
}

#[test]
fn last_piece_blocks_are_short() {
    let mut p = picker();
    let got = p.pick(1, &bits(&[7]), 10);
    assert_eq!(
        got,
        vec![
            BlockRef {
                piece: 7,
                offset: 0,
                len: 16384
            },
            BlockRef {
                piece: 7,
                offset: 16384,
                len: 20000 - 16384
            },
        ]
    );
}

#[test]
fn rarest_first_after_the_random_start() {
    let mut p = picker();
    // Four peers: piece 5 is held by one, the rest by all.
    p.add_peer_pieces(&all());
    p.add_peer_pieces(&all());
    p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 6, 7]));
    p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 6, 7]));
    // Complete four pieces (random-first phase).
    while p.have_count() < RANDOM_FIRST_PIECES {
        let got = p.pick(1, &bits(&[0, 1, 2, 3, 4, 6, 7]), 4);
        complete(&mut p, 1, &got);
    }
    let got = p.pick(2, &all(), 4);
    assert_eq!(pieces_of(&got), vec![5], "the rarest piece comes first");
}

#[test]
fn random_first_spreads_over_pieces() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut p = Picker::new(G, bits(&[]), seed);
        seen.insert(p.pick(1, &all(), 1)[0].piece);
    }
    assert!(seen.len() >= 4, "random first picks: {seen:?}");
}

#[test]
fn urgent_pieces_go_first() {
    let mut p = picker();
    p.make_urgent([6, 2]);
    assert_eq!(pieces_of(&p.pick(1, &all(), 4)), vec![2]);
    assert_eq!(pieces_of(&p.pick(2, &all(), 4)), vec![6]);
}

#[test]
fn while_a_read_waits_the_pieces_after_it_follow_in_order() {
    let mut p = picker();
    p.add_peer_pieces(&all());
    finish_random_start(&mut p);
    p.make_urgent([4]);
    assert_eq!(
        pieces_of(&p.pick(1, &all(), 4)),
        vec![4],
        "the urgent piece first"
    );
    // Piece 6 is the rarest, but a reader waits at 4: 5, 6, 7 in order,
    // for whichever peers ask.
    p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 5, 7]));
    assert_eq!(pieces_of(&p.pick(2, &all(), 4)), vec![5]);
    assert_eq!(pieces_of(&p.pick(3, &all(), 8)), vec![6, 7]);
    // Once no read waits, rarest first again.
    let mut p = picker();
    p.add_peer_pieces(&all());
    p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 5, 7]));
    finish_random_start(&mut p);
    p.make_urgent([4]);
    let got = p.pick(1, &all(), 4);
    complete(&mut p, 1, &got);
    assert!(!p.any_urgent());
    assert_eq!(
        pieces_of(&p.pick(2, &all(), 4)),
        vec![6],
        "the rarest piece"
    );
}

#[test]
fn a_reader_ahead_of_nothing_missing_still_gets_the_pieces_in_order() {
    let mut p = picker();
    p.add_peer_pieces(&all());
    // Piece 7 is the rarest.
    p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 5, 6]));
    finish_random_start(&mut p);
    assert!(!p.streaming());
    // A read at piece 3: nothing it pulled forward is missing, so no
    // piece is urgent, but the reader goes on from there.
    p.stream_at(3);
    assert!(p.streaming() && !p.any_urgent());
    assert_eq!(pieces_of(&p.pick(1, &all(), 4)), vec![4]);
    assert_eq!(pieces_of(&p.pick(2, &all(), 4)), vec![5]);
    // The reader stopped: rarest first again.
    p.stop_streaming();
    assert!(!p.streaming());
    assert_eq!(pieces_of(&p.pick(3, &all(), 2)), vec![7]);
}

#[test]
fn a_read_waiting_on_a_stalled_peer_gets_its_piece_from_another() {
    let mut p = picker();
    p.make_urgent(0..8);
    // Peer 1 takes piece 0, the one the read waits on, sends one block of
    // it and stalls; the rest of its piece is not even requested yet.
    let stalled = p.pick(1, &all(), 2);
    assert_eq!(pieces_of(&stalled), vec![0]);
    p.received(1, stalled[0]);
    // Other peers finish the pieces after it.
    for peer in 2..2 + OVERTAKEN_BY as PeerId {
        let got = p.pick(peer, &all(), 4);
        assert_eq!(pieces_of(&got), vec![peer as u32 - 1], "not yet late");
        complete(&mut p, peer, &got);
    }
    // Now piece 0 is late: the next peer to ask gets what is left of it,
    // both the block peer 1 still owes and the ones never requested.
    let rescue = p.pick(9, &all(), 3);
    assert_eq!(pieces_of(&rescue), vec![0]);
    assert_eq!(
        rescue.iter().map(|b| b.offset).collect::<Vec<_>>(),
        vec![16384, 32768, 49152]
    );
    // Only one peer rescues a block, and the owner does not rescue itself.
    assert!(!pieces_of(&p.pick(10, &all(), 4)).contains(&0));
    assert!(!pieces_of(&p.pick(1, &all(), 4)).contains(&0));
    // The first copy in wins; the stalled owner's request is cancelled.
    let arrival = p.received(9, rescue[0]).unwrap();
    assert_eq!(arrival.cancel, vec![1]);
    for b in &rescue[1..] {
        assert!(p.received(9, *b).unwrap().cancel.is_empty());
    }
    assert!(p.received(1, rescue[0]).is_none(), "its copy is not needed");
}

#[test]
fn a_choking_owner_leaves_an_orphan_that_another_peer_finishes() {
    let mut p = picker();
    let got = p.pick(1, &all(), 2);
    let piece = got[0].piece;
    p.received(1, got[0]);
    p.release(1); // peer 1 choked us: block 1 back to missing
    let rest = p.pick(2, &all(), 8);
    assert_eq!(rest[0].piece, piece, "the orphan is adopted first");
    assert_eq!(rest[0].offset, 16384, "the received block is kept");
    assert_eq!(rest.iter().filter(|b| b.piece == piece).count(), 3);
    for b in rest.iter().filter(|b| b.piece == piece) {
        let arrival = p.received(2, *b).unwrap();
        assert!(arrival.cancel.is_empty());
    }
    // Both peers sent parts: both are blamed when the piece fails.
    assert_eq!(p.failed(piece), vec![1, 2]);
}

#[test]
fn endgame_duplicates_requests_and_cancels_the_losers() {
    let mut p = picker();
    let only = bits(&[3]);
    let first = p.pick(1, &only, 10);
    assert_eq!(first.len(), 4);
    // Peer 2 has only piece 3 too: nothing new, so endgame duplicates.
    let dup = p.pick(2, &only, 10);
    assert_eq!(dup, first);
    // A third and fourth requester are capped at ENDGAME_REQUESTERS.
    assert_eq!(p.pick(3, &only, 10).len(), 4);
    assert!(p.pick(4, &only, 10).is_empty());
    let arrival = p.received(2, first[0]).unwrap();
    assert_eq!(arrival.cancel, vec![1, 3]);
    assert_eq!(
        p.received(1, first[0]),
        None,
        "the loser's copy is not needed"
    );
}

#[test]
fn received_blocks_are_checked_against_the_layout() {
    let mut p = picker();
    let got = p.pick(1, &all(), 1);
    let b = got[0];
    assert_eq!(
        p.received(
            1,
            BlockRef {
                len: b.len - 1,
                ..b
            }
        ),
        None
    );
    assert_eq!(p.received(1, BlockRef { offset: 1, ..b }), None);
    assert_eq!(
        p.received(
            1,
            BlockRef {
                piece: (b.piece + 1) % 8,
                ..b
            }
        ),
        None
    );
    assert!(p.received(1, b).is_some());
}

#[test]
fn a_failed_piece_starts_over_and_is_never_had() {
    let mut p = picker();
    let got = p.pick(9, &bits(&[1]), 4);
    for b in &got {
        p.received(9, *b);
    }
    assert_eq!(p.failed(1), vec![9]);
    assert!(!p.have()[1]);
    let again = p.pick(10, &bits(&[1]), 4);
    assert_eq!(again, got, "the whole piece is requested again");
}

#[test]
fn interest_and_completion() {
    let mut p = Picker::new(G, bits(&[0, 1, 2, 3, 4, 5, 6]), 1);
    assert!(!p.wants_any(&bits(&[0, 6])));
    assert!(p.wants_any(&bits(&[7])));
    let got = p.pick(1, &all(), 10);
    assert_eq!(pieces_of(&got), vec![7]);
    complete(&mut p, 1, &got);
    assert!(p.is_complete());
    assert!(p.pick(1, &all(), 10).is_empty());
}

#[test]
fn availability_follows_peers() {
    let mut p = picker();
    p.add_peer_pieces(&bits(&[1, 2]));
    p.add_peer_piece(2);
    assert_eq!(p.availability(2), 2);
    p.remove_peer(5, &bits(&[1, 2]));
    assert_eq!((p.availability(1), p.availability(2)), (0, 1));
}

#[test]
fn ones_lists_set_bits_in_order_below_the_length() {
    assert_eq!(
        ones(&[0b1010_0000, 0, 0xff], 20).collect::<Vec<_>>(),
        vec![0, 2, 16, 17, 18, 19]
    );
    assert_eq!(ones(&[0x80, 0x01], 15).collect::<Vec<_>>(), vec![0]);
    assert_eq!(ones(&[], 8).count(), 0);
}

#[test]
fn every_piece_is_picked_once_when_the_count_is_not_a_multiple_of_eight() {
    // 13 pieces: the bitfields' last byte has 3 bits past the end, set by
    // `repeat(true, ..)`; none of them may be picked.
    let g = Geometry {
        piece_count: 13,
        piece_length: 16384,
        total_length: 13 * 16384,
    };
    let all = Bitfield::repeat(true, 13);
    let mut p = Picker::new(g, Bitfield::repeat(false, 13), 7);
    p.add_peer_pieces(&all);
    let mut picked = Vec::new();
    loop {
        let got = p.pick(1, &all, 1);
        if got.is_empty() || p.is_complete() {
            break;
        }
        picked.extend(pieces_of(&got));
        complete(&mut p, 1, &got);
    }
    picked.sort_unstable();
    assert_eq!(picked, (0..13).collect::<Vec<u32>>());
    assert!(p.is_complete());
}

#[test]
fn ties_among_the_rarest_are_broken_at_random() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let mut p = Picker::new(G, bits(&[]), seed);
        // Pieces 1, 3 and 6 are held by one peer, the rest by two.
        p.add_peer_pieces(&all());
        p.add_peer_pieces(&bits(&[0, 2, 4, 5, 7]));
        // Past the random start: four of the common pieces are had.
        for piece in [0, 2, 4, 5] {
            p.make_urgent([piece]);
            let got = p.pick(9, &all(), 4);
            complete(&mut p, 9, &got);
        }
        let got = p.pick(1, &all(), 1);
        seen.insert(got[0].piece);
    }
    assert_eq!(seen, [1, 3, 6].into_iter().collect());
}

#[test]
fn requesters_hold_one_peer_or_several() {
    let mut r = Requesters::One(1);
    assert!(r.contains(1) && r.is_only(1) && !r.contains(2));
    assert_eq!((r.count(), r.others(1), r.others(2)), (1, vec![], vec![1]));
    r.push(2);
    r.push(3);
    assert_eq!(r, Requesters::Many(vec![1, 2, 3]));
    assert!(!r.is_only(1) && r.contains(3));
    assert_eq!(r.others(2), vec![1, 3]);
    assert!(!r.remove(1), "2 and 3 are left");
    assert!(!r.remove(9), "not there");
    assert!(!r.remove(2));
    assert!(r.is_only(3));
    assert!(r.remove(3), "nobody is left");
    assert!(!Requesters::One(1).remove(2));
    assert!(Requesters::One(1).remove(1));
}

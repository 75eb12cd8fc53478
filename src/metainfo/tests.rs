use super::*;

/// A bencoded single-file torrent with `length` bytes, written by hand so
/// that each test can break exactly one thing.
fn single(info_body: &str) -> Vec<u8> {
    format!("d8:announce14:http://t/a/ann4:info{info_body}e").into_bytes()
}

fn pieces(n: usize) -> String {
    format!("6:pieces{}:{}", n * 20, "x".repeat(n * 20))
}

#[test]
fn loads_a_single_file_torrent() {
    let bytes = single(&format!(
        "d6:lengthi40e4:name3:abc12:piece lengthi16e{}e",
        pieces(3)
    ));
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(meta.name, "abc");
    assert_eq!(meta.total_length, 40);
    assert_eq!(meta.piece_count(), 3);
    assert_eq!(meta.piece_size(0), 16);
    assert_eq!(meta.piece_size(2), 8);
    assert_eq!(meta.files.len(), 1);
    assert_eq!(meta.files[0].path, vec!["abc".to_string()]);
    assert!(!meta.multi_file);
    assert!(!meta.private);
    assert_eq!(meta.trackers, vec![vec!["http://t/a/ann".to_string()]]);
}

#[test]
fn loads_a_multi_file_torrent_with_tiers_and_empty_files() {
    let bytes = format!(
        "d8:announce3:one13:announce-listll3:one3:twoel5:threeee7:comment2:hi4:infod5:filesl\
         d6:lengthi10e4:pathl1:a1:beed6:lengthi0e4:pathl5:emptyeed6:lengthi7e4:pathl1:ceee\
         4:name3:dir12:piece lengthi16e{}7:privatei1eee",
        pieces(2)
    );
    let meta = Metainfo::from_bytes(bytes.as_bytes()).unwrap();
    assert!(meta.multi_file);
    assert!(meta.private);
    assert_eq!(meta.comment.as_deref(), Some("hi"));
    assert_eq!(
        meta.trackers,
        vec![
            vec!["one".to_string(), "two".to_string()],
            vec!["three".to_string()]
        ]
    );
    let summary: Vec<(String, u64, u64)> = meta
        .files
        .iter()
        .map(|f| (f.path.join("/"), f.length, f.offset))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("dir/a/b".to_string(), 10, 0),
            ("dir/empty".to_string(), 0, 10),
            ("dir/c".to_string(), 7, 10),
        ]
    );
    assert_eq!(meta.total_length, 17);
}

#[test]
fn info_hash_is_taken_over_the_raw_bytes() {
    // Keys out of order and an unknown key: a re-encoding would sort them.
    let info = format!(
        "d4:name3:abc6:lengthi4e1:zi1e12:piece lengthi16e{}e",
        pieces(1)
    );
    let bytes = single(&info);
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    let expected: [u8; 20] = Sha1::digest(info.as_bytes()).into();
    assert_eq!(meta.info_hash.0, expected);
    assert_eq!(
        InfoHash::from_hex(&meta.info_hash.to_hex()),
        Some(meta.info_hash)
    );
}

fn error_of(bytes: &[u8]) -> String {
    Metainfo::from_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn rejects_input_that_is_not_bencode_and_says_where() {
    assert_eq!(
        error_of(b"<html>"),
        "not valid bencode at byte 0: a .torrent file must start with a dictionary ('d')"
    );
    assert_eq!(
        error_of(b"d8:announce3:url4:infoi12xe"),
        "not valid bencode at byte 23: integer is not a decimal number"
    );
    assert_eq!(
        error_of(b"d8:announce3:url4:info5:abc"),
        "not valid bencode at byte 22: string is longer than the rest of the input"
    );
}

#[test]
fn rejects_missing_and_mistyped_keys() {
    let cases = [
        (b"d8:announce1:xe".to_vec(), "no \"info\""),
        (single("i1e"), "\"info\" is not a dictionary"),
        (
            single(&format!("d6:lengthi4e12:piece lengthi16e{}e", pieces(1))),
            "no \"name\"",
        ),
        (
            single(&format!(
                "d6:lengthi4e4:namei5e12:piece lengthi16e{}e",
                pieces(1)
            )),
            "\"name\" is not a string",
        ),
        (
            single(&format!("d4:name1:a12:piece lengthi16e{}e", pieces(1))),
            "length",
        ),
        (
            single(&format!(
                "d6:length1:44:name1:a12:piece lengthi16e{}e",
                pieces(1)
            )),
            "length",
        ),
        (
            single("d6:lengthi4e4:name1:a12:piece lengthi16ee"),
            "pieces",
        ),
        (
            single(&format!("d6:lengthi4e4:name1:a{}e", pieces(1))),
            "piece length",
        ),
        (
            single("d5:filesi1e4:name1:a12:piece lengthi16e6:pieces0:e"),
            "files",
        ),
    ];
    for (bytes, needle) in cases {
        let message = error_of(&bytes);
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
}

#[test]
fn rejects_bad_piece_data() {
    let cases = [
        (
            single("d6:lengthi4e4:name1:a12:piece lengthi16e6:pieces19:xxxxxxxxxxxxxxxxxxxe"),
            "multiple of 20",
        ),
        (
            single(&format!(
                "d6:lengthi40e4:name1:a12:piece lengthi16e{}e",
                pieces(2)
            )),
            "need 3",
        ),
        (
            single(&format!(
                "d6:lengthi10e4:name1:a12:piece lengthi16e{}e",
                pieces(2)
            )),
            "need 1",
        ),
        (
            single(&format!(
                "d6:lengthi4e4:name1:a12:piece lengthi0e{}e",
                pieces(1)
            )),
            "piece length",
        ),
        (
            single(&format!(
                "d6:lengthi4e4:name1:a12:piece lengthi-5e{}e",
                pieces(1)
            )),
            "piece length",
        ),
        (
            single(&format!(
                "d6:lengthi0e4:name1:a12:piece lengthi16e{}e",
                pieces(0)
            )),
            "length",
        ),
    ];
    for (bytes, needle) in cases {
        let message = error_of(&bytes);
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
}

fn with_path(components: &str) -> Vec<u8> {
    single(&format!(
        "d5:filesld6:lengthi4e4:pathl{components}eee4:name3:dir12:piece lengthi16e{}e",
        pieces(1)
    ))
}

#[test]
fn rejects_unsafe_paths() {
    let cases = [
        ("0:", "empty component"),
        ("1:.", "'.' or '..'"),
        ("2:..", "'.' or '..'"),
        ("1:a2:..1:b", "'.' or '..'"),
        ("4:/etc", "contains '/'"),
        ("3:a/b", "contains '/'"),
        ("3:a\0b", "NUL"),
        ("3:a\\b", "'\\'"),
    ];
    for (components, needle) in cases {
        let message = error_of(&with_path(components));
        assert!(message.starts_with("unsafe file path"), "{message}");
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
    let bad_name = single(&format!(
        "d6:lengthi4e4:name2:..12:piece lengthi16e{}e",
        pieces(1)
    ));
    assert!(error_of(&bad_name).starts_with("unsafe file path \"..\""));
    let slash_name = single(&format!(
        "d6:lengthi4e4:name4:/tmp12:piece lengthi16e{}e",
        pieces(1)
    ));
    assert!(error_of(&slash_name).contains("contains '/'"));
    let empty_list = with_path("");
    assert!(error_of(&empty_list).contains("empty \"path\""));
}

#[test]
fn rejects_files_that_collide() {
    let bytes = single(&format!(
        "d5:filesld6:lengthi2e4:pathl1:aeed6:lengthi2e4:pathl1:a1:beee4:name3:dir12:piece lengthi16e{}e",
        pieces(1)
    ));
    assert!(error_of(&bytes).contains("collides"));
}

#[test]
fn never_panics_on_truncations_of_a_valid_torrent() {
    let bytes = single(&format!(
        "d6:lengthi40e4:name3:abc12:piece lengthi16e{}e",
        pieces(3)
    ));
    for end in 0..bytes.len() {
        assert!(Metainfo::from_bytes(&bytes[..end]).is_err());
    }
}

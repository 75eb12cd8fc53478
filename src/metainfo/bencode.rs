//! A bencode syntax checker that remembers where things are.
//!
//! Two things need more than lava_torrent's decoder gives: the info-hash is the
//! SHA-1 of the `info` value exactly as it stands in the file (a re-encoding
//! changes it when keys are out of order or unknown), and a syntax error should
//! say at which byte it is. lava_torrent also refuses dictionaries whose keys
//! are not sorted, which real torrents sometimes have; so this module checks
//! the input once, finds the raw `info` span, and emits a canonical copy
//! (sorted keys, plain integers) for lava_torrent to decode.

use std::ops::Range;

/// Nesting deeper than this is refused: real torrents nest 4 or 5 levels, and
/// the limit keeps hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid bencode at byte {offset}: {what}")]
pub struct SyntaxError {
    pub offset: usize,
    pub what: &'static str,
}

/// The result of checking a whole .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Byte range of the value of the top-level `info` key, if there is one.
    pub info: Option<Range<usize>>,
    /// The same value with dictionary keys sorted, as lava_torrent requires.
    pub canonical: Vec<u8>,
}

/// Checks that `input` is exactly one bencoded dictionary and finds its `info` value.
pub fn scan_torrent(input: &[u8]) -> Result<Scanned, SyntaxError> {
    let mut scanner = Scanner {
        input,
        pos: 0,
        info: None,
    };
    if input.first() != Some(&b'd') {
        return Err(scanner.error("a .torrent file must start with a dictionary ('d')"));
    }
    let mut canonical = Vec::with_capacity(input.len());
    scanner.value(0, &mut canonical)?;
    if scanner.pos != input.len() {
        return Err(scanner.error("unexpected bytes after the top-level dictionary"));
    }
    Ok(Scanned {
        info: scanner.info,
        canonical,
    })
}

/// Decodes a bencoded dictionary (any key order) into lava_torrent's values;
/// for protocol messages (tracker responses, extension messages).
pub fn decode_dict(input: &[u8]) -> Result<lava_torrent::bencode::BencodeElem, String> {
    let scanned = scan_torrent(input).map_err(|e| e.to_string())?;
    lava_torrent::bencode::BencodeElem::from_bytes(&scanned.canonical)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or_else(|| "empty input".to_string())
}

/// Looks up `key` in a decoded dictionary (UTF-8 keys or raw ones).
pub fn get<'a>(
    dict: &'a lava_torrent::bencode::BencodeElem,
    key: &str,
) -> Option<&'a lava_torrent::bencode::BencodeElem> {
    use lava_torrent::bencode::BencodeElem;
    match dict {
        BencodeElem::Dictionary(d) => d.get(key),
        BencodeElem::RawDictionary(d) => d.get(key.as_bytes()),
        _ => None,
    }
}

/// Checks that `input` is exactly one bencoded value.
pub fn check_value(input: &[u8]) -> Result<(), SyntaxError> {
    let mut scanner = Scanner {
        input,
        pos: 0,
        info: None,
    };
    scanner.value(1, &mut Vec::new())?;
    if scanner.pos != input.len() {
        return Err(scanner.error("unexpected bytes after the value"));
    }
    Ok(())
}

struct Scanner<'a> {
    input: &'a [u8],
    pos: usize,
    info: Option<Range<usize>>,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Result<u8, SyntaxError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error("unexpected end of input"))
    }

    /// Scans one value and appends its canonical form to `out`; `depth` 0 is
    /// the top-level dictionary.
    fn value(&mut self, depth: usize, out: &mut Vec<u8>) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("values nested too deeply"));
        }
        match self.peek()? {
            b'i' => {
                let n = self.integer()?;
                out.extend_from_slice(format!("i{n}e").as_bytes());
                Ok(())
            }
            b'0'..=b'9' => {
                let s = self.string()?;
                put_string(out, s);
                Ok(())
            }
            b'l' => {
                self.pos += 1;
                out.push(b'l');
                while self.peek()? != b'e' {
                    self.value(depth + 1, out)?;
                }
                self.pos += 1;
                out.push(b'e');
                Ok(())
            }
            b'd' => self.dictionary(depth, out),
            _ => Err(self.error("expected a value (i, l, d or a digit)")),
        }
    }

    fn dictionary(&mut self, depth: usize, out: &mut Vec<u8>) -> Result<(), SyntaxError> {
        self.pos += 1;
        // (key, canonical value) pairs; duplicates are refused because they
        // make the meaning depend on which parser reads the file.
        let mut entries: Vec<(&'a [u8], Vec<u8>)> = Vec::new();
        while self.peek()? != b'e' {
            if !self.peek()?.is_ascii_digit() {
                return Err(self.error("dictionary key is not a string"));
            }
            let key_at = self.pos;
            let key = self.string()?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(SyntaxError {
                    offset: key_at,
                    what: "duplicate dictionary key",
                });
            }
            let value_start = self.pos;
            let mut value = Vec::new();
            self.value(depth + 1, &mut value)?;
            if depth == 0 && key == b"info" {
                self.info = Some(value_start..self.pos);
            }
            entries.push((key, value));
        }
        self.pos += 1;
        entries.sort_by(|a, b| a.0.cmp(b.0));
        out.push(b'd');
        for (key, value) in entries {
            put_string(out, key);
            out.extend_from_slice(&value);
        }
        out.push(b'e');
        Ok(())
    }

    fn integer(&mut self) -> Result<i64, SyntaxError> {
        self.pos += 1; // 'i'
        let start = self.pos;
        let end = self.input[start..]
            .iter()
            .position(|&b| b == b'e')
            .map(|n| start + n)
            .ok_or_else(|| self.error("integer has no closing 'e'"))?;
        let digits = &self.input[start..end];
        let (negative, body) = match digits.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, digits),
        };
        if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
            return Err(self.error("integer is not a decimal number"));
        }
        if negative && body == b"0" {
            return Err(self.error("integer is negative zero"));
        }
        let text = std::str::from_utf8(digits).map_err(|_| self.error("integer is not ASCII"))?;
        let value = text
            .parse::<i64>()
            .map_err(|_| self.error("integer does not fit in 64 bits"))?;
        self.pos = end + 1;
        Ok(value)
    }

    fn string(&mut self) -> Result<&'a [u8], SyntaxError> {
        let input: &'a [u8] = self.input;
        let start = self.pos;
        let colon = self.input[start..]
            .iter()
            .position(|&b| !b.is_ascii_digit())
            .map(|n| start + n)
            .ok_or_else(|| self.error("string length has no ':'"))?;
        if self.input[colon] != b':' {
            self.pos = colon;
            return Err(self.error("expected ':' after a string length"));
        }
        // The length is checked against what is left before it is used, so a
        // huge prefix never turns into a huge allocation or an overflow.
        let left = self.input.len() - (colon + 1);
        let len = std::str::from_utf8(&self.input[start..colon])
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&n| n <= left)
            .ok_or_else(|| self.error("string is longer than the rest of the input"))?;
        self.pos = colon + 1 + len;
        Ok(&input[colon + 1..self.pos])
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_info_span_in_any_key_order() {
        let input = b"d4:infod4:name1:xe8:announce3:urle";
        let top = scan_torrent(input).unwrap();
        let span = top.info.unwrap();
        assert_eq!(&input[span], b"d4:name1:xe");
    }

    #[test]
    fn canonical_copy_sorts_keys_at_every_level() {
        let input = b"d1:bi007e1:ad1:zl1:xe1:yi-3eee";
        let top = scan_torrent(input).unwrap();
        assert_eq!(top.canonical, b"d1:ad1:yi-3e1:zl1:xee1:bi7ee");
    }

    #[test]
    fn nested_info_keys_are_not_the_info_dictionary() {
        let input = b"d1:ad4:infoi1ee4:infoli2eee";
        let span = scan_torrent(input).unwrap().info.unwrap();
        assert_eq!(&input[span], b"li2ee");
    }

    #[test]
    fn reports_where_the_syntax_breaks() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"hello", 0),
            (b"d4:info", 7),
            (b"d3:keyi12xe", 7),
            (b"d3:keyi-0ee", 7),
            (b"d3:key99999999999999999999:xe", 6),
            (b"d3:key5:abce", 6),
            (b"di1ei2ee", 1),
            (b"d1:ai1e1:ai2ee", 7),
            (b"d1:ai1eeXYZ", 8),
            (b"d3:keyx", 6),
        ];
        for (input, offset) in cases {
            let err = scan_torrent(input).unwrap_err();
            assert_eq!(
                err.offset,
                *offset,
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut input = b"d1:a".to_vec();
        input.extend(std::iter::repeat_n(b'l', 100_000));
        let err = scan_torrent(&input).unwrap_err();
        assert_eq!(err.what, "values nested too deeply");
    }

    #[test]
    fn accepts_values_of_every_kind() {
        check_value(b"d1:ai-42e1:bli0e0:e1:cdee").unwrap();
        assert!(check_value(b"i1ei2e").is_err());
    }
}

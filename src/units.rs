//! Byte counts as people write and read them.
//!
//! Suffixes are binary and case-insensitive: `k` = 1024, `M` = 1024², `G` =
//! 1024³, `T` = 1024⁴; an optional trailing `B` or `iB` is accepted
//! (`256k`, `256KiB`, `1.5M`, `4096`).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a byte count (examples: 4096, 256k, 1.5M, 2G)")]
pub struct ParseSizeError {
    pub input: String,
}

/// Parses a byte count such as `262144`, `256k` or `1.5M`.
pub fn parse_size(input: &str) -> Result<u64, ParseSizeError> {
    let error = || ParseSizeError {
        input: input.to_owned(),
    };
    let text = input.trim();
    let lower = text.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, multiplier) = match body.char_indices().last() {
        Some((i, 'k')) => (&body[..i], 1u64 << 10),
        Some((i, 'm')) => (&body[..i], 1 << 20),
        Some((i, 'g')) => (&body[..i], 1 << 30),
        Some((i, 't')) => (&body[..i], 1 << 40),
        _ if body.len() < lower.len() && lower.ends_with("ib") => return Err(error()),
        _ => (body, 1),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(error());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(error);
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    let bytes = (value * multiplier as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes as u64)
}

/// Formats a byte count for people: `1.00 GiB`, `512 KiB`, `17 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256k"), Ok(256 * 1024));
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("256kb"), Ok(256 * 1024));
        assert_eq!(parse_size("1.5M"), Ok(1536 * 1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size(" 0 "), Ok(0));
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for bad in [
            "",
            "k",
            "-1",
            "1x",
            "1.2.3",
            "1e9",
            "99999999999999999999",
            "20000000T",
            "ib",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_size(17), "17 B");
        assert_eq!(format_size(512 * 1024), "512 KiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 * 1024), "1.50 MiB");
    }
}

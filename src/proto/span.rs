//! Spans of time as people type them on both command lines (`7d`, `12h`,
//! `30m`, `90s`, `2w`), for invitation expiries.

/// Seconds in `text`: a whole number and a unit (`s`, `m`, `h`, `d`, `w`).
pub fn parse_span(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit).filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("7d"), Some(7 * 86_400));
        assert_eq!(parse_span("90s"), Some(90));
        assert_eq!(parse_span(" 2w "), Some(14 * 86_400));
        assert_eq!(parse_span("12h"), Some(43_200));
        assert_eq!(parse_span("0d"), None);
        assert_eq!(parse_span("7"), None);
        assert_eq!(parse_span("d"), None);
        assert_eq!(parse_span("7y"), None);
        assert_eq!(parse_span("99999999999999999999d"), None);
    }
}

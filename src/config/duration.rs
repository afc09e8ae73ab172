//! Duration strings of the configuration: `"250ms"`, `"5s"`, `"1m"`, `"1h"`, `"1d"`.
//!
//! A number without a unit is refused: HAProxy reads it as milliseconds, nginx as seconds,
//! and an operator moving between them should not have to guess which we picked.

use std::time::Duration;

/// Parses `"<integer><unit>"` with unit one of `us`, `ms`, `s`, `m`, `h`, `d`.
/// Several parts may follow each other (`"1m30s"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"250ms\", \"5s\", \"1m\"".into());
    }
    let bytes = s.as_bytes();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "\"{text}\" is not a duration; write e.g. \"250ms\", \"5s\", \"1m\""
            ));
        }
        let number: u64 = s[start..i]
            .parse()
            .map_err(|_| format!("\"{text}\": number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let part = match &s[unit_start..i] {
            "us" => Duration::from_micros(number),
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "\"{text}\" has no unit; write e.g. \"{number}ms\" or \"{number}s\""
                ))
            }
            other => {
                return Err(format!(
                    "\"{text}\": unknown unit \"{other}\" (use us, ms, s, m, h or d)"
                ))
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refused() {
        for bad in ["", "5", "s", "5x", "-5s", "1.5s", "5 s s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}

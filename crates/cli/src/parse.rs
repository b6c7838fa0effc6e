//! Parsers for human input: durations (`1h30m`), RFC 3339 datetimes, `KEY=VALUE` pairs.

use std::time::Duration;

/// Parses `500ms`, `10s`, `1m30s`, `2h`, `1d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || {
        format!("invalid duration `{s}`: use a number with a unit, e.g. 500ms, 10s, 1m30s, 2h, 1d")
    };
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses an RFC 3339 datetime (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`) into
/// milliseconds since the Unix epoch.
pub fn parse_datetime_ms(s: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("invalid datetime `{s}` ({why}): use RFC 3339, e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00")
    };
    let b = s.trim().as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or_else(|| bad("truncated"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("expected digits"));
        }
        std::str::from_utf8(part)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("expected digits"))
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(bad("unexpected separator")),
        }
    };
    let year = num(0, 4)?;
    sep(4, b"-")?;
    let month = num(5, 2)?;
    sep(7, b"-")?;
    let day = num(8, 2)?;
    sep(10, b"Tt ")?;
    let hour = num(11, 2)?;
    sep(13, b":")?;
    let minute = num(14, 2)?;
    sep(16, b":")?;
    let second = num(17, 2)?;
    let mut pos = 19;
    let mut millis = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start {
            return Err(bad("empty fraction"));
        }
        // Keep milliseconds; finer digits are truncated.
        let frac = &b[start..pos.min(start + 3)];
        let mut m = 0i64;
        for (i, d) in frac.iter().enumerate() {
            m += i64::from(d - b'0') * [100, 10, 1][i];
        }
        millis = m;
    }
    let offset_s = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() => {
            let h = num(pos + 1, 2)?;
            sep(pos + 3, b":")?;
            let m = num(pos + 4, 2)?;
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err(bad("missing time zone: add Z or +HH:MM")),
    };
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("day out of range"));
    }
    // 23:59:60 (a leap second) is accepted as RFC 3339 allows it.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time out of range"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Ok(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_datetime_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `--topic` of `group reset`: `orders` (every partition) or `orders:0,2` (those).
pub fn parse_topic_partitions(s: &str) -> Result<skein_client::TopicPartitions, String> {
    let bad = |why: &str| {
        format!("invalid --topic `{s}` ({why}): use TOPIC for every partition or TOPIC:P,P.. e.g. orders:0,2")
    };
    let (topic, parts) = match s.split_once(':') {
        None => (s.trim(), None),
        Some((t, p)) => (t.trim(), Some(p)),
    };
    if topic.is_empty() {
        return Err(bad("no topic"));
    }
    let mut partitions = Vec::new();
    if let Some(parts) = parts {
        for p in parts.split(',') {
            let p = p.trim();
            let n: u32 = p.parse().map_err(|_| bad("partitions are numbers"))?;
            if !partitions.contains(&n) {
                partitions.push(n);
            }
        }
        partitions.sort_unstable();
    }
    Ok(skein_client::TopicPartitions {
        topic: topic.to_string(),
        partitions,
    })
}

/// Parses `KEY=VALUE` (for `--config`).
pub fn parse_config_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!(
            "invalid setting `{s}`: use KEY=VALUE, e.g. retention.ms=86400000"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 1s500ms "), Ok(Duration::from_millis(1500)));
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "ms10",
            "99999999999999999999d",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("e.g. 500ms"), "{bad}: {e}");
        }
    }

    #[test]
    fn rfc3339_datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(
            parse_datetime_ms("2024-05-01T12:00:00Z"),
            Ok(1_714_564_800_000)
        );
        assert_eq!(
            parse_datetime_ms("2024-05-01T14:00:00+02:00"),
            parse_datetime_ms("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            parse_datetime_ms("2024-05-01T07:30:00.250-04:30"),
            Ok(1_714_564_800_250)
        );
        assert_eq!(
            parse_datetime_ms("2024-02-29t00:00:00z"),
            Ok(1_709_164_800_000)
        );
        assert_eq!(parse_datetime_ms("1969-12-31T23:59:59Z"), Ok(-1000));
        for bad in [
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00+25:00",
            "2024-05-01T12:00:00.Z",
            "yesterday at noon please",
        ] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetimes_format_back() {
        for ms in [0, 1_714_564_800_250, -1000, 1_709_164_800_000] {
            assert_eq!(parse_datetime_ms(&format_datetime_ms(ms)), Ok(ms));
        }
        assert_eq!(
            format_datetime_ms(1_714_564_800_250),
            "2024-05-01T12:00:00.250Z"
        );
    }

    #[test]
    fn topic_partition_lists() {
        let t = parse_topic_partitions("orders:2,0,2").expect("parses");
        assert_eq!((t.topic.as_str(), t.partitions), ("orders", vec![0, 2]));
        let t = parse_topic_partitions("orders").expect("parses");
        assert!(t.partitions.is_empty(), "every partition");
        for bad in ["", ":1", "orders:", "orders:a", "orders:1,,2", "orders:-1"] {
            let e = parse_topic_partitions(bad).expect_err(bad);
            assert!(e.contains("orders:0,2"), "{bad}: {e}");
        }
    }

    #[test]
    fn config_pairs() {
        assert_eq!(
            parse_config_pair("retention.ms=10"),
            Ok(("retention.ms".into(), "10".into()))
        );
        assert_eq!(parse_config_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_config_pair("novalue").is_err());
        assert!(parse_config_pair("=v").is_err());
    }
}

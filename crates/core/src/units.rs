//! Durations and sizes as users write them ("90s", "10m", "12G", "800M"), and back.

use std::time::Duration;

/// Parse a duration such as `90s`, `10m`, `1h30m`, `1.5h` or a bare number of seconds.
/// `0` and `off` mean "no limit" and give `None`.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if let Ok(secs) = t.parse::<f64>() {
        return positive_secs(secs, text).map(Some);
    }
    // "1.5h" / "2.5m": humantime has no fractions.
    if let Some((num, unit)) = split_unit(t) {
        if num.contains('.') {
            if let (Ok(v), Some(scale)) = (num.parse::<f64>(), duration_scale(unit)) {
                return positive_secs(v * scale, text).map(Some);
            }
        }
    }
    match humantime::parse_duration(t) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d)),
        Err(_) => Err(format!(
            "'{text}' is not a duration: write it like 90s, 10m, 1h30m (0 or off for no limit)"
        )),
    }
}

fn positive_secs(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "'{text}' is not a duration: it must be positive, like 90s or 10m"
        ));
    }
    // Beyond what a Duration holds (1e30) is a typo, not a limit: say so instead of panicking.
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("'{text}' is too long to be a limit: write it like 90s, 10m or 24h"))
}

fn split_unit(t: &str) -> Option<(&str, &str)> {
    let idx = t.find(|c: char| c.is_ascii_alphabetic())?;
    Some((t[..idx].trim(), t[idx..].trim()))
}

fn duration_scale(unit: &str) -> Option<f64> {
    match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1.0),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60.0),
        "h" | "hr" | "hour" | "hours" => Some(3600.0),
        _ => None,
    }
}

/// Parse a size such as `800M`, `12G`, `1.5GiB`, `512MB` or a bare number of bytes.
/// Units are binary (1G = 1024 MiB), as memory is. `0` / `off` give `None`.
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || {
        format!("'{text}' is not a size: write it like 800M, 12G or 1.5G (0 or off for no limit)")
    };
    let (num, unit) = match split_unit(t) {
        Some((n, u)) => (n, u),
        None => (t, ""),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = (value * scale).round();
    if bytes == 0.0 {
        return Ok(None);
    }
    Ok(Some(bytes as u64))
}

/// Parse a CPU cap in percent of one core ("150", "150%"). `0`/`off` give `None`.
pub fn parse_percent(text: &str) -> Result<Option<u32>, String> {
    let t = text.trim().trim_end_matches('%').trim();
    if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    t.parse::<u32>().map(Some).map_err(|_| {
        format!("'{text}' is not a CPU percentage: write a whole number, 100 = one core, 400 = four cores")
    })
}

/// "1.5 GiB", "800 MiB", "512 KiB", "42 B".
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 || (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}

/// "45 s", "5 min", "1 h 30 min" -- for notifications and messages.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        if d.as_millis() < 10_000 && d.subsec_millis() != 0 {
            return format!("{:.1} s", d.as_secs_f64());
        }
        return format!("{s} s");
    }
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m, sec) {
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("10m").unwrap(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("1.5h").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("2.5").unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(parse_duration("0").unwrap(), None);
        assert_eq!(parse_duration("off").unwrap(), None);
        let e = parse_duration("ten minutes").unwrap_err();
        assert!(e.contains("10m"), "{e}");
        assert!(parse_duration("-5").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("800M").unwrap(), Some(800 << 20));
        assert_eq!(parse_size("12G").unwrap(), Some(12 << 30));
        assert_eq!(parse_size("1.5GiB").unwrap(), Some(3 << 29));
        assert_eq!(parse_size("4096").unwrap(), Some(4096));
        assert_eq!(parse_size("0").unwrap(), None);
        assert!(parse_size("12X").unwrap_err().contains("800M"));
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("abc").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("150%").unwrap(), Some(150));
        assert_eq!(parse_percent("off").unwrap(), None);
        assert!(parse_percent("1.5").unwrap_err().contains("100 = one core"));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(800 << 20), "800 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_duration(Duration::from_secs(300)), "5 min");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1 h 30 min");
        assert_eq!(format_duration(Duration::from_secs(42)), "42 s");
    }

    #[test]
    fn absurd_durations_are_errors_not_panics() {
        let e = parse_duration("1e30").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration("1e30h").is_err());
    }
}

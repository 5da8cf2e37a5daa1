//! Durations, read and written: Go's duration syntax (`1h30m`, `300ms`) as templates and flags
//! take it and as messages echo a configured value, Packer's words for waits and timeouts
//! (`1 minute 2 seconds`), and the compact forms of the tables (`4m05s`, ages as `3h12m`). It
//! lives below everything that reads or prints one: templates, the command line, builders,
//! provisioners, post-processors, cleanup and the orchestrator.

use std::time::Duration;

/// Go's time.ParseDuration: a sequence of decimal numbers with units, e.g. "1h30m", "1.5s".
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("it is empty".into());
    }
    let mut total: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at \"{rest}\""));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("\"{}\" is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("the number {n} has no unit")),
            other => return Err(format!("unknown unit \"{other}\"")),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err("it is too long".into());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way Go prints it ("5m0s", "1h30m0s", "300ms"), for `inspect` and
/// messages that echo a configured value.
pub fn go(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms < 1000 && d.subsec_nanos() % 1_000_000 == 0 {
        return if total_ms == 0 {
            "0s".into()
        } else {
            format!("{total_ms}ms")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let frac = d.subsec_millis();
    let s = if frac > 0 {
        format!("{s}.{:03}", frac).trim_end_matches('0').to_string()
    } else {
        s.to_string()
    };
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A duration as Packer prints it: `1 minute 2 seconds`, `3 seconds`, `850 milliseconds`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} milliseconds");
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let unit = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(unit(h, "hour"));
    }
    if m > 0 {
        parts.push(unit(m, "minute"));
    }
    if s > 0 || parts.is_empty() {
        if h == 0 && m == 0 {
            // Under a minute: tenths, as `1.3 seconds`.
            let tenths = (d.as_millis() / 100) as u64;
            if tenths % 10 != 0 {
                parts.push(format!("{}.{} seconds", tenths / 10, tenths % 10));
            } else {
                parts.push(unit(s, "second"));
            }
        } else {
            parts.push(unit(s, "second"));
        }
    }
    parts.join(" ")
}

/// A duration for the table: `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    }
}

/// An age in whole seconds, for tables: `3h12m`, `45s`, `2d4h` (a negative age is `0s`).
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{}s", s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert!(parse("5").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("5 m").is_err());
        assert!(parse("").is_err());
        assert_eq!(go(Duration::from_secs(300)), "5m0s");
        assert_eq!(go(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(go(Duration::from_millis(300)), "300ms");
        assert_eq!(go(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn durations_read_like_packer() {
        assert_eq!(human(Duration::from_millis(850)), "850 milliseconds");
        assert_eq!(human(Duration::from_millis(1300)), "1.3 seconds");
        assert_eq!(human(Duration::from_secs(1)), "1 second");
        assert_eq!(human(Duration::from_secs(62)), "1 minute 2 seconds");
        assert_eq!(
            human(Duration::from_secs(3600 * 2 + 60)),
            "2 hours 1 minute"
        );
    }

    #[test]
    fn short_durations() {
        assert_eq!(short(Duration::from_millis(850)), "850ms");
        assert_eq!(short(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short(Duration::from_secs(245)), "4m05s");
        assert_eq!(short(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(age(45), "45s");
        assert_eq!(age(125), "2m5s");
        assert_eq!(age(3 * 3600 + 720), "3h12m");
        assert_eq!(age(2 * 86400 + 4 * 3600), "2d4h");
        assert_eq!(age(-5), "0s");
    }
}

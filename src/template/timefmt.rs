//! Time formatting for `isotime` (Go reference layouts such as `2006-01-02T15:04:05Z07:00`) and
//! `strftime` (C-style `%Y-%m-%d`). Packer formats its init time in UTC, so zones print as UTC.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, Timelike, Utc};

/// Go's default for `isotime` without a layout: RFC 3339.
pub const RFC3339: &str = "2006-01-02T15:04:05Z07:00";

/// Month names as Go and Packer's HCL2 `formatdate` spell them.
pub(crate) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` with a Go reference layout. Text that is not a layout element is copied, as Go does.
pub fn go_format(t: &DateTime<Utc>, layout: &str) -> String {
    let b = layout.as_bytes();
    let mut out = String::with_capacity(layout.len() + 8);
    let mut i = 0;
    let starts = |i: usize, p: &str| layout[i..].starts_with(p);
    let lower_follows = |j: usize| b.get(j).is_some_and(|c| c.is_ascii_lowercase());
    let digit_at = |j: usize| b.get(j).is_some_and(|c| c.is_ascii_digit());
    let hour12 = || {
        let h = t.hour() % 12;
        if h == 0 {
            12
        } else {
            h
        }
    };
    while i < b.len() {
        let c = b[i];
        let (emit, len): (Option<String>, usize) = match c {
            b'J' if starts(i, "January") => (Some(MONTHS[t.month0() as usize].into()), 7),
            b'J' if starts(i, "Jan") && !lower_follows(i + 3) => {
                (Some(MONTHS[t.month0() as usize][..3].into()), 3)
            }
            b'M' if starts(i, "Monday") => (
                Some(DAYS[t.weekday().num_days_from_sunday() as usize].into()),
                6,
            ),
            b'M' if starts(i, "Mon") && !lower_follows(i + 3) => (
                Some(DAYS[t.weekday().num_days_from_sunday() as usize][..3].into()),
                3,
            ),
            b'M' if starts(i, "MST") => (Some("UTC".into()), 3),
            b'0' if starts(i, "002") => (Some(format!("{:03}", t.ordinal())), 3),
            b'0' if matches!(b.get(i + 1), Some(b'1'..=b'6')) => {
                let v = match b[i + 1] {
                    b'1' => format!("{:02}", t.month()),
                    b'2' => format!("{:02}", t.day()),
                    b'3' => format!("{:02}", hour12()),
                    b'4' => format!("{:02}", t.minute()),
                    b'5' => format!("{:02}", t.second()),
                    _ => format!("{:02}", t.year().rem_euclid(100)),
                };
                (Some(v), 2)
            }
            b'1' if starts(i, "15") => (Some(format!("{:02}", t.hour())), 2),
            b'1' => (Some(t.month().to_string()), 1),
            b'2' if starts(i, "2006") => (Some(format!("{:04}", t.year())), 4),
            b'2' => (Some(t.day().to_string()), 1),
            b'_' if starts(i, "_2006") => (Some(format!("_{:04}", t.year())), 5),
            b'_' if starts(i, "__2") => (Some(format!("{:>3}", t.ordinal())), 3),
            b'_' if starts(i, "_2") => (Some(format!("{:>2}", t.day())), 2),
            b'3' => (Some(hour12().to_string()), 1),
            b'4' => (Some(t.minute().to_string()), 1),
            b'5' => (Some(t.second().to_string()), 1),
            b'P' if starts(i, "PM") => (Some(if t.hour() >= 12 { "PM" } else { "AM" }.into()), 2),
            b'p' if starts(i, "pm") => (Some(if t.hour() >= 12 { "pm" } else { "am" }.into()), 2),
            b'-' | b'Z' => {
                let z = c == b'Z';
                let forms = [
                    ("070000", "+000000"),
                    ("07:00:00", "+00:00:00"),
                    ("0700", "+0000"),
                    ("07:00", "+00:00"),
                    ("07", "+00"),
                ];
                match forms.iter().find(|(f, _)| starts(i + 1, f)) {
                    Some((f, v)) => (Some(if z { "Z".into() } else { (*v).into() }), 1 + f.len()),
                    None => (None, 1),
                }
            }
            b'.' | b',' if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let d = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == d {
                    j += 1;
                }
                if digit_at(j) {
                    (None, 1)
                } else {
                    let n = j - i - 1;
                    let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                    let digits = &nanos[..n.min(9)];
                    let v = if d == b'9' {
                        let trimmed = digits.trim_end_matches('0');
                        if trimmed.is_empty() {
                            String::new()
                        } else {
                            format!("{}{trimmed}", c as char)
                        }
                    } else {
                        format!("{}{digits}", c as char)
                    };
                    (Some(v), j - i)
                }
            }
            _ => (None, 1),
        };
        match emit {
            Some(s) => out.push_str(&s),
            None => {
                // Copy one character (which may be several bytes).
                let ch = layout[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
                continue;
            }
        }
        i += len;
    }
    out
}

/// Formats `t` with a C strftime format; a malformed format is an error, never a panic.
pub fn strftime(t: &DateTime<Utc>, format: &str) -> Result<String, String> {
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "`{format}` is not a valid strftime format (see `man strftime`; e.g. %Y-%m-%d)"
        ));
    }
    let mut s = String::new();
    use std::fmt::Write;
    write!(s, "{}", t.format_with_items(items.into_iter()))
        .map_err(|_| format!("`{format}` cannot be formatted"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 14, 5, 9).unwrap() + chrono::Duration::milliseconds(120)
    }

    #[test]
    fn go_layouts() {
        let t = t();
        assert_eq!(go_format(&t, RFC3339), "2026-03-07T14:05:09Z");
        assert_eq!(go_format(&t, "2006-01-02"), "2026-03-07");
        assert_eq!(go_format(&t, "20060102150405"), "20260307140509");
        assert_eq!(go_format(&t, "Jan _2 3:04PM"), "Mar  7 2:05PM");
        assert_eq!(
            go_format(&t, "Monday, January 2, 06"),
            "Saturday, March 7, 26"
        );
        assert_eq!(
            go_format(&t, "Mon Jan 2 15:04:05 MST 2006"),
            "Sat Mar 7 14:05:09 UTC 2026"
        );
        assert_eq!(go_format(&t, "15:04:05.000"), "14:05:09.120");
        assert_eq!(go_format(&t, "15:04:05.999"), "14:05:09.12");
        assert_eq!(go_format(&t, "-0700 -07:00 Z07:00"), "+0000 +00:00 Z");
        assert_eq!(go_format(&t, "002"), "066");
        assert_eq!(go_format(&t, "pm"), "pm");
        // Lowercase after "Jan" means a word, not a month: Go copies it.
        assert_eq!(go_format(&t, "Janet"), "Janet");
        assert_eq!(go_format(&t, "build-é"), "build-é");
    }

    #[test]
    fn strftime_formats_and_rejects_bad_specs() {
        assert_eq!(strftime(&t(), "%Y-%m-%d_%H%M").unwrap(), "2026-03-07_1405");
        assert!(strftime(&t(), "%Q").is_err());
    }
}

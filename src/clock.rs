//! Wall-clock formatting: the few timestamp shapes the service writes (HTTP `Date`, RFC 3339 in
//! logs), computed from `SystemTime` without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar instant, to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

impl Utc {
    pub fn now() -> Utc {
        Utc::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Utc {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Utc::from_unix_millis(d.as_millis() as i64)
    }

    pub fn from_unix_millis(ms: i64) -> Utc {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            millis: ms.rem_euclid(1000) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `2026-11-26T12:04:36.123Z`
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `Thu, 26 Nov 2026 12:04:36 GMT` (RFC 9110 IMF-fixdate).
    pub fn http_date(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize],
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

/// `20150830T123600Z`, the timestamp form AWS signatures use.
impl Utc {
    pub fn amz_date(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (the form of AWS credential `Expiration` fields).
pub fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + std::time::Duration::from_secs(s))
}

/// (year, month, day) to days since 1970-01-01; the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (the era-based method from Howard Hinnant's date algorithms).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_thursday_first_of_january_1970() {
        let t = Utc::from_unix_millis(0);
        assert_eq!(t.rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(t.http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn known_instants() {
        // 2000-02-29 (leap day of a century leap year), 12:34:56.789.
        let t = Utc::from_unix_millis(951_827_696_789);
        assert_eq!(t.rfc3339(), "2000-02-29T12:34:56.789Z");
        assert_eq!(t.http_date(), "Tue, 29 Feb 2000 12:34:56 GMT");
        // The RFC 9110 example date.
        let t = Utc::from_unix_millis(784_111_777_000);
        assert_eq!(t.http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        // The SigV4 test suite's instant.
        let t = Utc::from_unix_millis(1_440_938_160_000);
        assert_eq!(t.rfc3339(), "2015-08-30T12:36:00.000Z");
        assert_eq!(t.amz_date(), "20150830T123600Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0i64, 951_827_696_000, 1_440_938_160_000, 4_102_444_800_000] {
            let text = Utc::from_unix_millis(ms).rfc3339();
            let parsed = parse_rfc3339_utc(&text).unwrap();
            assert_eq!(
                parsed,
                UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
            );
        }
        assert_eq!(
            parse_rfc3339_utc("2015-08-30T12:36:00Z"),
            Some(UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160))
        );
        assert_eq!(parse_rfc3339_utc("2015-08-30 12:36:00"), None);
        assert_eq!(parse_rfc3339_utc("2015-13-30T12:36:00Z"), None);
    }
}

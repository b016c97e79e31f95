//! Time formatting for the message view: `HH:MM` and day separators, in the
//! local zone or in UTC (tests use UTC so snapshots are machine-independent).
//! Calendar arithmetic is done here so no date crate is needed.

use crate::proto::Millis;

/// Which zone times are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    #[default]
    Local,
    Utc,
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub weekday: usize,
    pub hour: u32,
    pub minute: u32,
    /// Days since the epoch in this zone: equal for the same calendar day.
    pub day_number: i64,
}

impl TimeZone {
    pub fn wall(self, ts: Millis) -> WallTime {
        let secs = ts.div_euclid(1000) + self.offset_secs(ts);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        WallTime {
            year,
            month,
            day,
            weekday: (days + 4).rem_euclid(7) as usize,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            day_number: days,
        }
    }

    /// `HH:MM`.
    pub fn hhmm(self, ts: Millis) -> String {
        let w = self.wall(ts);
        format!("{:02}:{:02}", w.hour, w.minute)
    }

    /// `Tue 24 Nov 2026`.
    pub fn day_label(self, ts: Millis) -> String {
        let w = self.wall(ts);
        let month = MONTHS.get(w.month as usize - 1).copied().unwrap_or("???");
        let weekday = WEEKDAYS.get(w.weekday).copied().unwrap_or("???");
        format!("{weekday} {} {month} {}", w.day, w.year)
    }

    fn offset_secs(self, ts: Millis) -> i64 {
        match self {
            TimeZone::Utc => 0,
            TimeZone::Local => local_offset_secs(ts.div_euclid(1000)),
        }
    }
}

#[cfg(unix)]
fn local_offset_secs(secs: i64) -> i64 {
    let t = secs as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fully initialises on
    // success; both pointers are valid for the call.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

#[cfg(not(unix))]
fn local_offset_secs(_secs: i64) -> i64 {
    0
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic
/// Gregorian.
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
    fn formats_utc() {
        // 2026-11-24T09:05:00Z
        let ts = 1_795_511_100_000;
        assert_eq!(TimeZone::Utc.hhmm(ts), "09:05");
        assert_eq!(TimeZone::Utc.day_label(ts), "Tue 24 Nov 2026");
        assert_eq!(TimeZone::Utc.day_label(0), "Thu 1 Jan 1970");
        assert_eq!(TimeZone::Utc.day_label(951_782_400_000), "Tue 29 Feb 2000");
        assert_eq!(TimeZone::Utc.hhmm(-60_000), "23:59");
    }

    #[test]
    fn local_never_panics() {
        let _ = TimeZone::Local.hhmm(i64::MAX / 4);
        let _ = TimeZone::Local.day_label(0);
    }
}

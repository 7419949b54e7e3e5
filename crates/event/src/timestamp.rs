//! Points in time as Unix milliseconds, written as RFC 3339 UTC with milliseconds.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::error::{Error, excerpt};

/// A point in time with millisecond precision, stored as milliseconds since the Unix epoch.
///
/// JSON and `Display` use RFC 3339 in UTC with exactly three fraction digits
/// (`2026-02-09T20:30:00.123Z`); parsing accepts any RFC 3339 date-time and any offset.
///
/// ```
/// use nexus_event::Timestamp;
/// let t: Timestamp = "2026-02-09T21:30:00.123+01:00".parse()?;
/// assert_eq!(t.to_string(), "2026-02-09T20:30:00.123Z");
/// assert_eq!(t.as_unix_millis(), 1_770_669_000_123);
/// # Ok::<(), nexus_event::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// Year 0000 to 9999 keeps every timestamp writable as RFC 3339.
const MIN_MILLIS: i64 = -62_167_219_200_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The current time of the system clock.
    pub fn now() -> Self {
        let millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(-MIN_MILLIS),
        };
        Timestamp(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// A timestamp from milliseconds since the Unix epoch; refused outside the years 0000 to 9999.
    ///
    /// ```
    /// use nexus_event::Timestamp;
    /// let t = Timestamp::from_unix_millis(1_700_000_000_999)?;
    /// assert_eq!(t.as_unix_secs(), 1_700_000_000); // signature timestamps are whole seconds
    /// assert!(Timestamp::from_unix_millis(i64::MAX).is_err());
    /// # Ok::<(), nexus_event::Error>(())
    /// ```
    pub fn from_unix_millis(millis: i64) -> Result<Self, Error> {
        if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            Ok(Timestamp(millis))
        } else {
            Err(Error::Timestamp {
                value: millis.to_string(),
                reason: "outside the years 0000 to 9999".into(),
            })
        }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down), as signature timestamps are written.
    pub const fn as_unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, written by hand: every answer, event body and WebSocket
    /// frame carries a timestamp, and `time`'s calendar conversion with `write!` cost about
    /// 3,400 instructions per timestamp (3 % of a publish under callgrind), this about a tenth.
    fn rfc3339(self) -> Rfc3339Text {
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let of_day = secs.rem_euclid(86_400);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for i in (at..at + width).rev() {
                // Each digit is 0 to 9: the constructor keeps the year within 0000 to 9999.
                out[i] = b'0' + value.rem_euclid(10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3600);
        put(14, 2, of_day / 60 % 60);
        put(17, 2, of_day % 60);
        put(20, 3, millis);
        Rfc3339Text(out)
    }
}

/// A timestamp's 24 ASCII bytes.
struct Rfc3339Text([u8; 24]);

impl Rfc3339Text {
    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("0000-00-00T00:00:00.000Z")
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era, 0 to 146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0 to 399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // from March 1st, 0 to 365
    let mp = (5 * doy + 2) / 153; // month from March, 0 to 11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc3339().as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| Error::Timestamp {
            value: excerpt(s),
            reason: e.to_string(),
        })?;
        let utc = dt.to_offset(UtcOffset::UTC);
        let millis = utc.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(millis)
            .map_err(|_| Error::Timestamp {
                value: excerpt(s),
                reason: "out of range".into(),
            })
            .and_then(Timestamp::from_unix_millis)
            .map_err(|_| Error::Timestamp {
                value: excerpt(s),
                reason: "outside the years 0000 to 9999".into(),
            })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.rfc3339().as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(
            Timestamp::from_unix_millis(0).map(|t| t.to_string()),
            Ok("1970-01-01T00:00:00.000Z".into())
        );
        assert_eq!(
            Timestamp::from_unix_millis(-1).map(|t| t.to_string()),
            Ok("1969-12-31T23:59:59.999Z".into())
        );
        assert_eq!(
            Timestamp::from_unix_millis(MAX_MILLIS).map(|t| t.to_string()),
            Ok("9999-12-31T23:59:59.999Z".into())
        );
        assert!(Timestamp::from_unix_millis(MAX_MILLIS + 1).is_err());
    }

    /// The text `time` gives for `millis` (how timestamps were written before
    /// [`Timestamp::rfc3339`]).
    fn by_time(millis: i64) -> String {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .expect("in range");
        let (year, month, day) = dt.to_calendar_date();
        format!(
            "{year:04}-{:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            u8::from(month),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }

    #[test]
    fn writes_what_the_time_crate_writes_over_the_whole_range() {
        const DAY: i64 = 86_400_000;
        for millis in [
            MIN_MILLIS,
            MIN_MILLIS + 1,
            -DAY - 1,
            -1,
            0,
            1,
            MAX_MILLIS - 1,
            MAX_MILLIS,
        ] {
            assert_eq!(Timestamp(millis).to_string(), by_time(millis), "{millis}");
        }
        // Leap days and century years, then one day in 101 across all ten thousand years, each at
        // another time of day.
        for (text, millis) in [
            ("2000-02-29T00:00:00.000Z", 951_782_400_000),
            ("1900-03-01T00:00:00.000Z", -2_203_891_200_000),
            ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
            ("0000-01-01T00:00:00.000Z", MIN_MILLIS),
        ] {
            assert_eq!(Timestamp(millis).to_string(), text);
        }
        let mut millis = MIN_MILLIS;
        let mut of_day = 0;
        while millis <= MAX_MILLIS {
            let t = millis + of_day;
            if t <= MAX_MILLIS {
                assert_eq!(Timestamp(t).to_string(), by_time(t), "{t}");
            }
            millis += 101 * DAY;
            of_day = (of_day + 7_654_321) % DAY;
        }
    }

    proptest::proptest! {
        #[test]
        fn any_timestamp_is_written_as_the_time_crate_writes_it(millis in MIN_MILLIS..=MAX_MILLIS) {
            let t = Timestamp(millis);
            proptest::prop_assert_eq!(t.to_string(), by_time(millis));
            proptest::prop_assert_eq!(
                serde_json::to_string(&t).expect("serialises"),
                format!("\"{}\"", by_time(millis))
            );
        }
    }

    #[test]
    fn parses_any_rfc3339_and_round_trips() {
        let t: Timestamp = "2026-02-09T20:30:00.123456Z".parse().expect("valid");
        assert_eq!(t.to_string(), "2026-02-09T20:30:00.123Z");
        let back: Timestamp = t.to_string().parse().expect("own output parses");
        assert_eq!(back, t);
        assert!(matches!(
            "2026-02-09 20:30".parse::<Timestamp>(),
            Err(Error::Timestamp { .. })
        ));
    }

    #[test]
    fn now_is_recent() {
        let now = Timestamp::now().as_unix_millis();
        assert!(now > 1_700_000_000_000, "{now}");
        let before_epoch = Timestamp::from_unix_millis(-1).expect("valid");
        assert_eq!(before_epoch.as_unix_secs(), -1, "rounded down");
    }
}

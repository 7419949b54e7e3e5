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

    fn to_datetime(self) -> OffsetDateTime {
        let nanos = i128::from(self.0) * 1_000_000;
        // The constructor keeps the value inside the years 0000 to 9999, which `time` represents.
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_datetime();
        let (year, month, day) = dt.to_calendar_date();
        write!(
            f,
            "{year:04}-{:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            u8::from(month),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
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
        s.collect_str(self)
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

//! Event types: validated names, and the well-known ones of the payment -> mint -> notify protocol.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, check_chars, excerpt};

/// Longest event type, in characters.
pub const MAX_TYPE_LEN: usize = 128;

const TYPE_CHARSET: &str = "A-Z a-z 0-9 _ . : -";

pub(crate) fn is_type_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// The event types of the FlowPay / Smart Factory / notifier protocol.
///
/// ```
/// use nexus_event::WellKnown;
/// let t: WellKnown = "MINT_CONFIRMED".parse()?;
/// assert_eq!(t, WellKnown::MintConfirmed);
/// assert_eq!(t.as_str(), "MINT_CONFIRMED");
/// # Ok::<(), nexus_event::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WellKnown {
    /// FlowPay reports a received payment.
    PaymentReceived,
    /// Nexus asked the factory to mint.
    MintRequested,
    /// The factory confirms a mint.
    MintConfirmed,
    /// A mint failed for good.
    MintFailed,
    /// Someone asks the notifier to tell a user.
    NotificationRequested,
    /// The notifier told the user.
    NotificationSent,
}

impl WellKnown {
    /// Every well-known type, in protocol order.
    pub const ALL: [WellKnown; 6] = [
        WellKnown::PaymentReceived,
        WellKnown::MintRequested,
        WellKnown::MintConfirmed,
        WellKnown::MintFailed,
        WellKnown::NotificationRequested,
        WellKnown::NotificationSent,
    ];

    /// The wire name, such as `PAYMENT_RECEIVED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            WellKnown::PaymentReceived => "PAYMENT_RECEIVED",
            WellKnown::MintRequested => "MINT_REQUESTED",
            WellKnown::MintConfirmed => "MINT_CONFIRMED",
            WellKnown::MintFailed => "MINT_FAILED",
            WellKnown::NotificationRequested => "NOTIFICATION_REQUESTED",
            WellKnown::NotificationSent => "NOTIFICATION_SENT",
        }
    }

    fn lookup(s: &str) -> Option<WellKnown> {
        WellKnown::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for WellKnown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WellKnown {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        WellKnown::lookup(s).ok_or_else(|| Error::UnknownType { value: excerpt(s) })
    }
}

/// A validated event type: 1 to 128 characters of `A-Z a-z 0-9 _ . : -`.
///
/// Well-known types are held without allocating; any other valid type is accepted too.
///
/// ```
/// use nexus_event::{EventType, WellKnown};
/// let t = EventType::new("order.shipped:v2")?;
/// assert_eq!(t.as_str(), "order.shipped:v2");
/// assert_eq!(EventType::new("PAYMENT_RECEIVED")?.well_known(), Some(WellKnown::PaymentReceived));
/// assert!(EventType::new("has space").is_err());
/// # Ok::<(), nexus_event::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    Known(WellKnown),
    Custom(Box<str>),
}

impl EventType {
    /// Validates `value` and makes it an event type.
    pub fn new(value: &str) -> Result<Self, Error> {
        if let Some(known) = WellKnown::lookup(value) {
            return Ok(EventType(Repr::Known(known)));
        }
        check_chars("type", value, MAX_TYPE_LEN, TYPE_CHARSET, is_type_byte)?;
        Ok(EventType(Repr::Custom(value.into())))
    }

    /// The type as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Known(k) => k.as_str(),
            Repr::Custom(s) => s,
        }
    }

    /// The well-known protocol type this is, if it is one.
    pub fn well_known(&self) -> Option<WellKnown> {
        match self.0 {
            Repr::Known(k) => Some(k),
            Repr::Custom(_) => None,
        }
    }
}

impl From<WellKnown> for EventType {
    fn from(k: WellKnown) -> Self {
        EventType(Repr::Known(k))
    }
}

impl PartialEq<WellKnown> for EventType {
    fn eq(&self, other: &WellKnown) -> bool {
        self.well_known() == Some(*other)
    }
}

impl PartialEq<str> for EventType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        EventType::new(s)
    }
}

impl TryFrom<&str> for EventType {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        EventType::new(s)
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({:?})", self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        EventType::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_round_trips() {
        for k in WellKnown::ALL {
            assert_eq!(k.as_str().parse::<WellKnown>(), Ok(k));
            let t = EventType::new(k.as_str()).expect("well-known types are valid");
            assert_eq!(t.well_known(), Some(k));
            assert_eq!(t, EventType::from(k));
            assert_eq!(t.to_string(), k.as_str());
        }
        assert!(matches!(
            "PAYMENT".parse::<WellKnown>(),
            Err(Error::UnknownType { .. })
        ));
    }

    #[test]
    fn custom_types_validate_charset_and_length() {
        assert_eq!(
            EventType::new("a.B:c-d_9").map(|t| t.well_known()),
            Ok(None)
        );
        assert_eq!(
            EventType::new(""),
            Err(Error::Length {
                field: "type",
                max: 128,
                len: 0
            })
        );
        assert!(EventType::new(&"A".repeat(128)).is_ok());
        assert!(matches!(
            EventType::new(&"A".repeat(129)),
            Err(Error::Length { len: 129, .. })
        ));
        let err = EventType::new("PAY MENT").expect_err("space is not allowed");
        assert_eq!(
            err,
            Error::Charset {
                field: "type",
                found: ' ',
                position: 3,
                allowed: TYPE_CHARSET
            }
        );
        assert!(matches!(
            EventType::new("PAYé"),
            Err(Error::Charset { found: 'é', .. })
        ));
        assert!(EventType::new("PAYMENT_*").is_err(), "a glob is not a type");
    }

    #[test]
    fn serde_is_a_plain_string() {
        let t: EventType = serde_json::from_str("\"MINT_FAILED\"").expect("valid");
        assert_eq!(t, WellKnown::MintFailed);
        assert_eq!(
            serde_json::to_string(&t).expect("serializes"),
            "\"MINT_FAILED\""
        );
        let err = serde_json::from_str::<EventType>("\"bad type\"").expect_err("invalid");
        assert!(err.to_string().contains("type contains ' '"), "{err}");
    }
}

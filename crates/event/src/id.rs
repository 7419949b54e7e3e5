//! Event ids and correlation ids: 1 to 128 visible ASCII characters.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, check_chars, is_visible_ascii};

/// Longest id or correlation id, in characters.
pub const MAX_ID_LEN: usize = 128;

const ID_CHARSET: &str = "visible ASCII (0x21 to 0x7e)";

macro_rules! visible_ascii_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            /// Validates `value`: 1 to 128 visible ASCII characters.
            pub fn new(value: &str) -> Result<Self, Error> {
                check_chars($field, value, MAX_ID_LEN, ID_CHARSET, is_visible_ascii)?;
                Ok($name(value.into()))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

visible_ascii_id!(
    /// An event id: the publisher's own (1 to 128 visible ASCII characters) or a new UUIDv7.
    ///
    /// ```
    /// use nexus_event::EventId;
    /// let mine = EventId::new("pay-2026-000042")?;
    /// assert_eq!(mine.as_str(), "pay-2026-000042");
    /// let fresh = EventId::new_v7();
    /// assert_eq!(fresh.as_str().len(), 36);
    /// assert!(EventId::new("has space").is_err());
    /// # Ok::<(), nexus_event::Error>(())
    /// ```
    EventId,
    "id"
);

visible_ascii_id!(
    /// The id that ties an event to the one that caused it (1 to 128 visible ASCII characters).
    ///
    /// Reactors set it to the id of the triggering event.
    ///
    /// ```
    /// use nexus_event::{CorrelationId, EventId};
    /// let trigger = EventId::new("pay-o-1")?;
    /// assert_eq!(CorrelationId::from(&trigger).as_str(), "pay-o-1");
    /// assert!(CorrelationId::new(&"x".repeat(129)).is_err());
    /// # Ok::<(), nexus_event::Error>(())
    /// ```
    CorrelationId,
    "correlation_id"
);

impl EventId {
    /// A new time-ordered UUIDv7, in its hyphenated lowercase form.
    pub fn new_v7() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        let s = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        EventId((*s).into())
    }
}

impl From<&EventId> for CorrelationId {
    fn from(id: &EventId) -> Self {
        // Both share one charset and length limit, so an event id is always a valid correlation id.
        CorrelationId(id.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_visible_ascii_only() {
        assert!(EventId::new("!~azAZ09-_.:/").is_ok());
        assert!(EventId::new(&"x".repeat(128)).is_ok());
        assert!(matches!(
            EventId::new(&"x".repeat(129)),
            Err(Error::Length { field: "id", .. })
        ));
        assert!(matches!(
            EventId::new(""),
            Err(Error::Length { field: "id", .. })
        ));
        assert!(matches!(
            EventId::new("a\tb"),
            Err(Error::Charset {
                field: "id",
                found: '\t',
                position: 1,
                ..
            })
        ));
        assert!(matches!(
            CorrelationId::new("ü"),
            Err(Error::Charset {
                field: "correlation_id",
                ..
            })
        ));
    }

    #[test]
    fn v7_ids_are_unique_and_time_ordered() {
        let ids: Vec<EventId> = (0..1000).map(|_| EventId::new_v7()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{:?} then {:?}", pair[0], pair[1]);
        }
        let parsed = uuid::Uuid::parse_str(ids[0].as_str()).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn serde_validates() {
        let id: EventId = serde_json::from_str("\"abc\"").expect("valid");
        assert_eq!(id, "abc");
        assert!(serde_json::from_str::<EventId>("\"a b\"").is_err());
        assert_eq!(CorrelationId::from(&id).as_str(), "abc");
    }
}

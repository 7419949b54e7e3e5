//! The one error type of this crate.

/// What was wrong with a value handed to the event model.
///
/// Every variant names the field it is about ([`Error::field`]), so the HTTP layer can put it in
/// `details.field` of a `VALIDATION_ERROR` answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string field is empty or longer than its limit.
    #[error("{field} must be 1 to {max} characters long, got {len}")]
    Length {
        /// The field, as named in the wire contract (`type`, `id`, `correlation_id`, ...).
        field: &'static str,
        /// The largest length allowed.
        max: usize,
        /// The length that was given, in bytes.
        len: usize,
    },
    /// A string field holds a character its charset does not allow.
    #[error("{field} contains {found:?} at byte {position}; allowed: {allowed}")]
    Charset {
        /// The field, as named in the wire contract.
        field: &'static str,
        /// The first character that is not allowed.
        found: char,
        /// Its byte offset in the value.
        position: usize,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
    /// A string is not one of the well-known protocol event types.
    #[error("{value:?} is not a well-known event type")]
    UnknownType {
        /// The value that was given (cut to 128 characters).
        value: String,
    },
    /// A timestamp is not an RFC 3339 date-time or is out of range.
    #[error("time {value:?} is not an RFC 3339 date-time: {reason}")]
    Timestamp {
        /// The value that was given (cut to 128 characters).
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Error {
    /// The field the error is about, as named in the wire contract.
    ///
    /// ```
    /// use nexus_event::{EventId, EventType};
    /// let e = EventType::new("has space").unwrap_err();
    /// assert_eq!(e.field(), "type");
    /// assert_eq!(EventId::new("").unwrap_err().field(), "id");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            Error::Length { field, .. } | Error::Charset { field, .. } => field,
            Error::UnknownType { .. } => "type",
            Error::Timestamp { .. } => "time",
        }
    }
}

/// Cuts a value that goes into an error message, so a hostile megabyte does not end up in logs.
pub(crate) fn excerpt(value: &str) -> String {
    match value.char_indices().nth(128) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

/// Checks length and charset of a field; `allowed` says which bytes may appear.
pub(crate) fn check_chars(
    field: &'static str,
    value: &str,
    max: usize,
    allowed_desc: &'static str,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), Error> {
    if value.is_empty() || value.len() > max {
        return Err(Error::Length {
            field,
            max,
            len: value.len(),
        });
    }
    if let Some(position) = value.bytes().position(|b| !allowed(b)) {
        let found = value[position..].chars().next().unwrap_or('\u{fffd}');
        return Err(Error::Charset {
            field,
            found,
            position,
            allowed: allowed_desc,
        });
    }
    Ok(())
}

/// Visible ASCII: `!` (0x21) to `~` (0x7e), the charset of ids and correlation ids.
pub(crate) fn is_visible_ascii(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

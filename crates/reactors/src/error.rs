//! The one error type of this crate.

/// A reactor definition that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// A field with a bad value; `field` is its config key (`http.url`, `when."/amount".gt`).
    #[error("{field}: {message}")]
    Invalid {
        /// The key.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Two reactors with the same name.
    #[error("name: reactor {0:?} is defined twice")]
    DuplicateName(String),
}

impl ReactorError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ReactorError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

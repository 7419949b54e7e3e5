//! The one error type of this crate.

use nexus_store::StoreError;

/// What went wrong with a declaration or the catalogue's store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A declaration with a bad value: `field` is `name`, `schema` or `examples/<index>`, as
    /// API.md section 11 names them in `details.field`.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store refused or failed (a config-declared type is
    /// [`StoreError::Declared`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CatalogError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CatalogError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

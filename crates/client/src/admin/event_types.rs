//! The event-type catalogue of the admin API (API.md section 11): list, get, declare or
//! replace, delete.

use nexus_api::dead_letters::Deleted;
use nexus_api::event_types::{EventType, EventTypePut};

use super::{Admin, Page, PageRequest, encode, query};
use crate::Error;

/// What `PUT /api/event-types/{name}` did: the type as now declared, and whether it was new
/// (`201`) or replaced an earlier declaration (`200`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Declaration {
    /// The type as the server now holds it.
    pub event_type: EventType,
    /// `true` when it was created, `false` when it replaced one.
    pub created: bool,
}

/// The path of one type; the name is checked first (1 to 128 of `A-Z a-z 0-9 _ . : -`), so a
/// bad name is refused before anything is sent.
fn type_path(name: &str) -> Result<String, Error> {
    nexus_event::EventType::new(name)
        .map_err(|e| Error::invalid("event type", format!("{name:?}: {e}")))?;
    Ok(format!("/api/event-types/{}", encode(name)))
}

impl Admin {
    /// `GET /api/event-types`: the declared types, by name.
    pub fn event_types(&self, page: &PageRequest) -> Result<Page<EventType>, Error> {
        self.page(&format!(
            "/api/event-types{}",
            query(&Self::page_query(page))
        ))
    }

    /// `GET /api/event-types/{name}`; an undeclared type is a `404` [`Error::Api`].
    pub fn event_type(&self, name: &str) -> Result<EventType, Error> {
        self.get(&type_path(name)?)
    }

    /// `PUT /api/event-types/{name}`: declares the type or replaces it whole (a field left at
    /// its default clears it). A schema that does not compile or an example that does not
    /// match answers `400 VALIDATION_ERROR` with `details.field` (`schema`, `examples/<i>`); a
    /// type declared in the server's config file answers `409 CONFLICT`.
    pub fn put_event_type(&self, name: &str, body: &EventTypePut) -> Result<Declaration, Error> {
        let path = type_path(name)?;
        let (status, data) = self.call_with_status("PUT", &path, Some(body))?;
        Ok(Declaration {
            event_type: self.typed(&path, data)?,
            created: status == 201,
        })
    }

    /// `DELETE /api/event-types/{name}`: the count deleted (events already stored are kept).
    pub fn delete_event_type(&self, name: &str) -> Result<u64, Error> {
        let counted: Deleted = self.count::<(), _>("DELETE", &type_path(name)?, None)?;
        Ok(counted.deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_checked_and_encoded_before_sending() {
        assert_eq!(
            type_path("legacy.order:v1").expect("valid"),
            "/api/event-types/legacy.order%3Av1"
        );
        let e = type_path("two words").expect_err("a space");
        assert!(
            e.to_string()
                .starts_with("invalid event type: \"two words\""),
            "{e}"
        );
        assert!(type_path("").is_err());
        assert!(type_path(&"A".repeat(129)).is_err());
        let admin = Admin::new("http://127.0.0.1:9", "t").expect("valid");
        let e = admin
            .put_event_type("a/b", &EventTypePut::default())
            .expect_err("refused before sending");
        assert!(
            matches!(
                e,
                Error::Invalid {
                    what: "event type",
                    ..
                }
            ),
            "{e}"
        );
    }
}

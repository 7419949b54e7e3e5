//! Checking a draft against its type's schema before sending (feature `schema`): the schema a
//! server's catalogue declares (API.md section 11), compiled here with `jsonschema` as JSON
//! Schema draft 2020-12, gives the same `{pointer, message}` violations the server would
//! answer with, without a round trip.

use std::fmt;

use nexus_api::event_types::EventType as DeclaredType;
use serde_json::{Value, json};

use crate::{Admin, Draft, Error, SchemaViolation};

/// Most violations a refusal lists (the server's `details.errors` holds at most 10 too).
pub const MAX_SCHEMA_ERRORS: usize = 10;

/// A type's payload schema, compiled once, to check drafts with.
///
/// ```
/// use nexus_client::{Draft, PayloadSchema};
/// let schema = PayloadSchema::compile(
///     "PAYMENT_RECEIVED",
///     &serde_json::json!({"type": "object", "required": ["amount"],
///         "properties": {"amount": {"type": "integer", "minimum": 1}}}),
/// )?;
/// let draft = Draft::of_type("PAYMENT_RECEIVED")?.payload(serde_json::json!({"amount": 0}));
/// let refused = draft.check(&schema).unwrap_err();
/// let (pointer, errors) = refused.schema_violations().expect("a schema refusal");
/// assert_eq!((pointer.as_str(), errors.len()), ("/amount", 1));
/// # Ok::<(), nexus_client::Error>(())
/// ```
pub struct PayloadSchema {
    event_type: String,
    schema: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadSchema")
            .field("event_type", &self.event_type)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PayloadSchema {
    /// Compiles `schema` (JSON Schema draft 2020-12, whatever its `$schema` says, as the
    /// server reads it) for payloads of `event_type`. A schema that does not compile is
    /// [`Error::Invalid`] naming `schema`. Nothing is fetched: a `$ref` to another document
    /// does not compile.
    pub fn compile(event_type: &str, schema: &Value) -> Result<PayloadSchema, Error> {
        nexus_event::EventType::new(event_type)
            .map_err(|e| Error::invalid("event type", format!("{event_type:?}: {e}")))?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(schema)
            .map_err(|e| {
                Error::invalid(
                    "schema",
                    format!("{event_type}'s schema does not compile: {e}"),
                )
            })?;
        Ok(PayloadSchema {
            event_type: event_type.to_owned(),
            schema: schema.clone(),
            validator,
        })
    }

    /// The compiled schema of a declared type, or `None` when it declares none (any payload
    /// is accepted).
    pub fn of(declared: &DeclaredType) -> Result<Option<PayloadSchema>, Error> {
        declared
            .schema
            .as_ref()
            .map(|schema| PayloadSchema::compile(&declared.name, schema))
            .transpose()
    }

    /// The type it checks.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The schema as JSON.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Checks a payload: [`Error::Schema`] with the first failing pointer and at most
    /// [`MAX_SCHEMA_ERRORS`] violations.
    pub fn check_payload(&self, payload: &Value) -> Result<(), Error> {
        let errors: Vec<SchemaViolation> = self
            .validator
            .iter_errors(payload)
            .take(MAX_SCHEMA_ERRORS)
            .map(|e| SchemaViolation {
                pointer: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect();
        match errors.first() {
            None => Ok(()),
            Some(first) => Err(Error::Schema {
                event_type: self.event_type.clone(),
                pointer: first.pointer.clone(),
                errors,
            }),
        }
    }
}

impl Draft {
    /// Checks the draft's payload against its type's schema before sending; a payload never
    /// set is checked as `{}`, which the server stores for it. A schema of another type is
    /// [`Error::Invalid`]; a failing payload is [`Error::Schema`] with the violations the
    /// server would answer (see [`Error::schema_violations`]).
    pub fn check(&self, schema: &PayloadSchema) -> Result<(), Error> {
        if self.event_type().as_str() != schema.event_type {
            return Err(Error::invalid(
                "schema",
                format!(
                    "it is {}'s, the draft is of type {}",
                    schema.event_type,
                    self.event_type()
                ),
            ));
        }
        match self.payload_value() {
            Some(payload) => schema.check_payload(payload),
            None => schema.check_payload(&json!({})),
        }
    }
}

impl Admin {
    /// `GET /api/event-types/{name}`, its schema compiled: `None` when the type declares no
    /// schema. Fetch it once and check many drafts with [`Draft::check`]; fetch again after
    /// the type changes.
    pub fn payload_schema(&self, name: &str) -> Result<Option<PayloadSchema>, Error> {
        PayloadSchema::of(&self.event_type(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment() -> PayloadSchema {
        PayloadSchema::compile(
            "PAYMENT_RECEIVED",
            &json!({
                "type": "object",
                "required": ["order", "amount"],
                "properties": {
                    "order": { "type": "string", "pattern": "^o-[0-9]+$" },
                    "amount": { "type": "integer", "minimum": 1 },
                    "currency": { "enum": ["EUR", "USD"] },
                    "lines": { "type": "array", "items": { "$ref": "#/$defs/line" } },
                },
                "$defs": { "line": { "type": "object", "required": ["sku"] } },
            }),
        )
        .expect("compiles")
    }

    fn refusal(draft: &Draft, schema: &PayloadSchema) -> (String, Vec<SchemaViolation>) {
        draft
            .check(schema)
            .expect_err("refused")
            .schema_violations()
            .expect("a schema refusal")
    }

    fn draft(payload: Value) -> Draft {
        Draft::of_type("PAYMENT_RECEIVED")
            .expect("valid")
            .payload(payload)
    }

    #[test]
    fn a_valid_payload_passes_and_each_kind_of_failure_names_its_pointer() {
        let schema = payment();
        draft(json!({"order": "o-1", "amount": 5, "currency": "EUR", "lines": [{"sku": "a"}]}))
            .check(&schema)
            .expect("valid");
        for (payload, pointer) in [
            (json!([]), ""),
            (json!({"order": "o-1"}), ""),
            (json!({"order": "o-1", "amount": "5"}), "/amount"),
            (json!({"order": "x", "amount": 5}), "/order"),
            (
                json!({"order": "o-1", "amount": 5, "currency": "GBP"}),
                "/currency",
            ),
            (
                json!({"order": "o-1", "amount": 5, "lines": [{"sku": "a"}, {}]}),
                "/lines/1",
            ),
        ] {
            let (first, errors) = refusal(&draft(payload.clone()), &schema);
            assert_eq!(first, pointer, "{payload}");
            assert_eq!(errors[0].pointer, pointer);
            assert!(!errors[0].message.is_empty());
        }
        let (first, _) = refusal(&Draft::of_type("PAYMENT_RECEIVED").expect("valid"), &schema);
        assert_eq!(first, "", "a payload never set is checked as {{}}");
    }

    #[test]
    fn at_most_ten_violations_are_listed() {
        let schema = PayloadSchema::compile(
            "MANY",
            &json!({"type": "array", "items": {"type": "integer"}}),
        )
        .expect("compiles");
        let payload = Value::Array((0..25).map(|i| json!(i.to_string())).collect());
        let e = Draft::of_type("MANY")
            .expect("valid")
            .payload(payload)
            .check(&schema)
            .expect_err("refused");
        let (pointer, errors) = e.schema_violations().expect("violations");
        assert_eq!((pointer.as_str(), errors.len()), ("/0", MAX_SCHEMA_ERRORS));
        assert_eq!(errors[9].pointer, "/9");
        assert!(
            e.to_string()
                .starts_with("the payload of MANY does not match its schema at \"/0\": "),
            "{e}"
        );
    }

    #[test]
    fn bad_schemas_and_schemas_of_another_type_are_refused() {
        let e = PayloadSchema::compile("T", &json!({"type": "no-such-type"})).expect_err("bad");
        assert!(matches!(e, Error::Invalid { what: "schema", .. }), "{e}");
        let e = PayloadSchema::compile("T", &json!({"$ref": "https://example.invalid/s.json"}))
            .expect_err("nothing is fetched");
        assert!(matches!(e, Error::Invalid { what: "schema", .. }), "{e}");
        let e = PayloadSchema::compile("not a type", &json!(true)).expect_err("bad name");
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
        let e = Draft::of_type("MINT_CONFIRMED")
            .expect("valid")
            .check(&payment())
            .expect_err("another type");
        assert!(e.to_string().contains("PAYMENT_RECEIVED's"), "{e}");
        let open = PayloadSchema::compile("T", &json!(true)).expect("true accepts anything");
        Draft::of_type("T")
            .expect("valid")
            .payload(json!([1]))
            .check(&open)
            .expect("any");
    }

    #[test]
    fn declared_types_without_a_schema_have_none_and_server_refusals_read_alike() {
        let now = nexus_event::Timestamp::now();
        let mut declared = DeclaredType {
            name: "X".into(),
            description: String::new(),
            schema: None,
            examples: vec![],
            deprecated: false,
            created_at: now,
            updated_at: now,
        };
        assert!(
            PayloadSchema::of(&declared)
                .expect("nothing to compile")
                .is_none()
        );
        declared.schema = Some(json!({"type": "object"}));
        let schema = PayloadSchema::of(&declared)
            .expect("compiles")
            .expect("some");
        assert_eq!(schema.event_type(), "X");
        assert_eq!(schema.schema(), &json!({"type": "object"}));

        let server = Error::Api(Box::new(crate::ApiError {
            status: 400,
            code: "VALIDATION_ERROR".into(),
            message: "payload does not match the schema".into(),
            details: Some(json!({"field": "payload", "pointer": "/amount",
                "errors": [{"pointer": "/amount", "message": "\"5\" is not of type \"integer\""}]})),
            request_id: None,
            retry_after: None,
        }));
        let (pointer, errors) = server.schema_violations().expect("read from details");
        assert_eq!((pointer.as_str(), errors.len()), ("/amount", 1));
        let local = draft(json!({"order": "o-1", "amount": "5"}))
            .check(&payment())
            .expect_err("refused");
        assert_eq!(local.schema_violations(), Some((pointer, errors)));
    }
}

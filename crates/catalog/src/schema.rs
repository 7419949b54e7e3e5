//! One payload schema, compiled once (JSON Schema draft 2020-12, through `jsonschema`), and what
//! a failing payload is told: the JSON pointer of the first failing value and up to
//! [`MAX_ERRORS`] errors, each with its pointer (API.md section 11).

use serde_json::Value;

/// The most errors a refusal lists.
pub const MAX_ERRORS: usize = 10;

/// A compiled schema. Compiling is the costly part; checking a payload against it is cheap, so
/// the catalogue compiles each schema once and keeps it.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

/// One reason a payload fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The JSON pointer of the failing value in the payload (`""` for the payload itself).
    pub pointer: String,
    /// What is wrong with it, for people.
    pub message: String,
}

/// Why a payload fails its schema: at least one [`Violation`], at most [`MAX_ERRORS`], the
/// first one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations {
    errors: Vec<Violation>,
}

impl Violations {
    /// The JSON pointer of the first failing value (`""` for the root).
    pub fn pointer(&self) -> &str {
        self.errors.first().map_or("", |v| v.pointer.as_str())
    }

    /// Every error, the first one first (at most [`MAX_ERRORS`]).
    pub fn errors(&self) -> &[Violation] {
        &self.errors
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errors.first() {
            Some(first) if first.pointer.is_empty() => write!(f, "{}", first.message)?,
            Some(first) => write!(f, "at {}: {}", first.pointer, first.message)?,
            None => f.write_str("does not match its schema")?,
        }
        if self.errors.len() > 1 {
            write!(f, " (and {} more)", self.errors.len() - 1)?;
        }
        Ok(())
    }
}

/// A schema that does not compile: not a JSON Schema (draft 2020-12), or one with a `$ref` the
/// catalogue cannot resolve (schemas are self-contained: no remote or file references).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchemaError {
    /// What the compiler said.
    pub message: String,
}

impl Schema {
    /// Compiles `schema` as draft 2020-12 (whatever its `$schema` says), after checking it
    /// against the draft's meta-schema.
    ///
    /// ```
    /// use nexus_catalog::Schema;
    /// use serde_json::json;
    ///
    /// let schema = Schema::compile(&json!({"type": "object", "required": ["amount"]}))?;
    /// assert!(schema.check(&json!({"amount": 1})).is_ok());
    /// let refused = schema.check(&json!({"amount": 1, "x": {}})).map(|_| ());
    /// assert!(refused.is_ok());
    /// let refused = schema.check(&json!({})).expect_err("amount is required");
    /// assert_eq!(refused.pointer(), "");
    /// assert!(Schema::compile(&json!({"type": "integr"})).is_err());
    /// # Ok::<(), nexus_catalog::SchemaError>(())
    /// ```
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err(SchemaError {
                message: "a JSON Schema is an object or a boolean".into(),
            });
        }
        jsonschema::draft202012::options()
            .build(schema)
            .map(|validator| Schema { validator })
            .map_err(|e| SchemaError {
                message: match e.instance_path().as_str() {
                    "" => e.to_string(),
                    at => format!("at {at}: {e}"),
                },
            })
    }

    /// Checks a payload: `Ok` when it matches, else the first [`MAX_ERRORS`] reasons why not.
    pub fn check(&self, payload: &Value) -> Result<(), Violations> {
        // The boolean walk is the fast path (it stops at the first failure and builds no
        // error); only a failing payload pays for the errors.
        if self.validator.is_valid(payload) {
            return Ok(());
        }
        let errors: Vec<Violation> = self
            .validator
            .iter_errors(payload)
            .take(MAX_ERRORS)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect();
        if errors.is_empty() {
            // Not expected (both walks are the same schema's); still a refusal with a reason.
            return Err(Violations {
                errors: vec![Violation {
                    pointer: String::new(),
                    message: "does not match its schema".into(),
                }],
            });
        }
        Err(Violations { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payment() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "required": ["order", "amount", "currency"],
            "properties": {
                "order": {"type": "string", "pattern": "^o-[0-9]+$"},
                "amount": {"type": "integer", "minimum": 1},
                "currency": {"enum": ["EUR", "USD"]},
                "lines": {"type": "array", "items": {
                    "type": "object", "required": ["sku"],
                    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}
                }}
            }
        }))
        .expect("compiles")
    }

    fn refused(payload: Value) -> Violations {
        payment()
            .check(&payload)
            .expect_err("the payload should fail")
    }

    #[test]
    fn a_matching_payload_passes() {
        let ok = json!({"order": "o-1", "amount": 2500, "currency": "EUR",
            "lines": [{"sku": "a", "qty": 1}]});
        assert_eq!(payment().check(&ok), Ok(()));
    }

    #[test]
    fn every_kind_of_failure_names_its_pointer() {
        let base = json!({"order": "o-1", "amount": 2500, "currency": "EUR"});
        let with = |key: &str, value: Value| {
            let mut p = base.clone();
            p[key] = value;
            p
        };
        // Wrong type.
        let v = refused(with("amount", json!("2500")));
        assert_eq!(v.pointer(), "/amount");
        assert!(v.errors()[0].message.contains("integer"), "{v}");
        // Missing required key: the object that lacks it.
        let mut missing = base.clone();
        missing.as_object_mut().expect("object").remove("currency");
        let v = refused(missing);
        assert_eq!(v.pointer(), "");
        assert!(v.to_string().contains("currency"), "{v}");
        // Pattern.
        assert_eq!(refused(with("order", json!("x-1"))).pointer(), "/order");
        // Enum.
        assert_eq!(
            refused(with("currency", json!("GBP"))).pointer(),
            "/currency"
        );
        // A nested array item.
        let v = refused(with("lines", json!([{"sku": "a"}, {"sku": 7}])));
        assert_eq!(v.pointer(), "/lines/1/sku");
        let v = refused(with("lines", json!([{"sku": "a"}, {"qty": 1}])));
        assert_eq!(v.pointer(), "/lines/1");
        // The root of the wrong type.
        assert_eq!(refused(json!([1, 2])).pointer(), "");
    }

    #[test]
    fn errors_are_listed_up_to_ten() {
        let schema = Schema::compile(&json!({"type": "array", "items": {"type": "integer"}}))
            .expect("compiles");
        let v = schema
            .check(&json!((0..25).map(|i| i.to_string()).collect::<Vec<_>>()))
            .expect_err("strings");
        assert_eq!(v.errors().len(), MAX_ERRORS);
        assert_eq!(v.pointer(), "/0");
        assert_eq!(v.errors()[9].pointer, "/9");
        assert!(v.to_string().contains("and 9 more"), "{v}");
    }

    #[test]
    fn schemas_that_do_not_compile_are_refused() {
        for bad in [
            json!({"type": "integr"}),
            json!({"type": 5}),
            json!({"required": "amount"}),
            json!({"properties": {"a": {"minimum": "one"}}}),
            json!({"$ref": "https://example.com/schema.json"}),
            json!({"$ref": "#/$defs/missing"}),
            json!({"pattern": "("}),
            json!("a string"),
            json!(12),
            json!(null),
        ] {
            let e = Schema::compile(&bad).expect_err(&bad.to_string());
            assert!(!e.message.is_empty(), "{bad}");
        }
        assert!(Schema::compile(&json!(true)).is_ok());
        assert!(Schema::compile(&json!({})).is_ok());
        assert!(
            Schema::compile(&json!({"$defs": {"a": {"type": "integer"}},
            "properties": {"x": {"$ref": "#/$defs/a"}}}))
            .is_ok()
        );
    }
}

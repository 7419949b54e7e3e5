//! `[[event_types]]` of the config file (API.md section 11): each type's name, description,
//! schema (a JSON file beside the config file, or an inline table), examples and deprecation,
//! checked as the admin API checks a `PUT` (the schema compiles, every example matches it); an
//! error names the key (`event_types[0].schema`, `event_types[1].examples[2]`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use nexus_api::event_types::EventTypePut;
use nexus_event::EventType;
use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, err};

/// One `[[event_types]]` entry, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventTypeEntry {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    /// A path (relative to the config file) of a JSON file, or an inline table.
    pub(crate) schema: Option<Value>,
    #[serde(default)]
    pub(crate) examples: Vec<Value>,
    #[serde(default)]
    pub(crate) deprecated: bool,
}

/// A checked declaration, ready for the catalogue.
pub(crate) type Declaration = (EventType, EventTypePut);

/// Reads a schema: inline, or the JSON file at `path` (relative to `base`, the config file's
/// directory).
fn schema_of(written: Value, base: &Path, key: &str) -> Result<Value, ConfigError> {
    match written {
        Value::String(path) => {
            let file = base.join(&path);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| err(key, format!("cannot read {}: {e}", file.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| err(key, format!("{} is not JSON: {e}", file.display())))
        }
        inline @ (Value::Object(_) | Value::Bool(_)) => Ok(inline),
        other => Err(err(
            key,
            format!("must be the path of a JSON file or an inline table, got {other}"),
        )),
    }
}

/// Checks every entry; `base` is the directory schema paths are relative to.
pub(crate) fn check(
    entries: Vec<EventTypeEntry>,
    base: &Path,
) -> Result<Vec<Declaration>, ConfigError> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, t) in entries.into_iter().enumerate() {
        let key = |field: &str| format!("event_types[{i}].{field}");
        let name = EventType::new(&t.name).map_err(|e| err(key("name"), e.to_string()))?;
        if !names.insert(t.name.clone()) {
            return Err(err(
                key("name"),
                format!("event type {:?} is declared twice", t.name),
            ));
        }
        let schema = t
            .schema
            .map(|s| schema_of(s, base, &key("schema")))
            .transpose()?;
        let put = EventTypePut {
            description: t.description,
            schema,
            examples: t.examples,
            deprecated: t.deprecated,
        };
        nexus_catalog::check_declaration(&put).map_err(|e| match e {
            nexus_catalog::CatalogError::Invalid { field, message } => {
                // `examples/2` on the wire is `examples[2]` in TOML.
                let field = match field.strip_prefix("examples/") {
                    Some(index) => format!("examples[{index}]"),
                    None => field,
                };
                err(key(&field), message)
            }
            other => err(key("schema"), other.to_string()),
        })?;
        out.push((name, put));
    }
    Ok(out)
}

/// The directory schema paths are relative to: the config file's, or the working directory.
pub(crate) fn base_of(config_path: Option<&Path>) -> PathBuf {
    config_path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Mode, test_env as env};

    fn checked(text: &str, base: &Path) -> Result<Vec<Declaration>, ConfigError> {
        FileConfig::parse(text)
            .map(|f| f.relative_to(base))
            .and_then(|f| f.check(Mode::Development, env(&[])))
            .map(|c| c.event_types)
    }

    #[test]
    fn schemas_come_inline_or_from_a_file_beside_the_config() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("schemas")).expect("mkdir");
        std::fs::write(
            dir.path().join("schemas/paid.json"),
            r#"{"type": "object", "required": ["amount"]}"#,
        )
        .expect("write");
        let text = r#"
            [[event_types]]
            name = "PAYMENT_RECEIVED"
            description = "A customer paid; the amount is in minor units."
            schema = "schemas/paid.json"
            examples = [ { order = "o-1", amount = 2500, currency = "EUR" } ]

            [[event_types]]
            name = "MINT_FAILED"
            schema = { type = "object", properties = { reason = { type = "string" } } }
            deprecated = true

            [[event_types]]
            name = "NOTIFICATION_SENT"
        "#;
        let types = checked(text, dir.path()).expect("valid");
        assert_eq!(types.len(), 3);
        assert_eq!(types[0].0.as_str(), "PAYMENT_RECEIVED");
        assert_eq!(
            types[0].1.schema,
            Some(serde_json::json!({"type": "object", "required": ["amount"]}))
        );
        assert_eq!(types[0].1.examples[0]["amount"], 2500);
        assert!(types[1].1.deprecated);
        assert_eq!(
            types[1].1.schema.as_ref().map(|s| &s["type"]),
            Some(&"object".into())
        );
        assert_eq!(types[2].1, EventTypePut::default());
    }

    #[test]
    fn bad_entries_stop_the_start_naming_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("broken.json"), "{ not json").expect("write");
        let cases = [
            ("name = \"bad type!\"", "event_types[0].name"),
            ("name = \"A\"\ncolour = \"red\"", "event_types[0]"),
            (
                "name = \"A\"\nschema = \"missing.json\"",
                "event_types[0].schema",
            ),
            (
                "name = \"A\"\nschema = \"broken.json\"",
                "event_types[0].schema",
            ),
            ("name = \"A\"\nschema = 5", "event_types[0].schema"),
            (
                "name = \"A\"\nschema = { type = \"integr\" }",
                "event_types[0].schema",
            ),
            (
                "name = \"A\"\nschema = { type = \"object\" }\nexamples = [{}, 3]",
                "event_types[0].examples[1]",
            ),
            (
                "name = \"A\"\ndeprecated = \"yes\"",
                "event_types[0].deprecated",
            ),
        ];
        for (entry, name) in cases {
            let text = format!("[[event_types]]\n{entry}\n");
            let e = checked(&text, dir.path()).expect_err(entry);
            assert!(e.name.starts_with(name), "{entry}: {e}");
        }
        let twice = "[[event_types]]\nname = \"A\"\n[[event_types]]\nname = \"A\"\n";
        let e = checked(twice, dir.path()).expect_err("twice");
        assert_eq!(e.name, "event_types[1].name", "{e}");
    }
}

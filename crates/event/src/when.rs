//! Conditions on an event's payload: tests on JSON pointers, all of which must hold.
//!
//! One language for every place Nexus filters on a payload: a reactor's `when` and a
//! subscription's `filter` (API.md sections 10 and 12). Its JSON form is an object of JSON
//! pointers (RFC 6901), each with one or more tests: `{"/amount": {"gte": 1, "lt": 100},
//! "/currency": {"eq": "EUR"}}`. Parsing refuses anything else with a [`WhenError`] that names
//! the failing key, so it can be reported against the field it came from.

use std::cmp::Ordering;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The operators a test may name.
pub const OPERATORS: [&str; 7] = ["eq", "ne", "gt", "gte", "lt", "lte", "exists"];

/// One test on the value at a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// Equal (numbers compare by value: `1` equals `1.0`).
    Eq(Value),
    /// Not equal; a missing value is not equal to anything.
    Ne(Value),
    /// Greater than (numbers with numbers, strings with strings).
    Gt(Value),
    /// Greater than or equal.
    Gte(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal.
    Lte(Value),
    /// The pointer resolves (`true`) or does not (`false`).
    Exists(bool),
}

impl Test {
    /// The operator's name in the JSON form (`eq`, `gte`, ...).
    pub fn operator(&self) -> &'static str {
        match self {
            Test::Eq(_) => "eq",
            Test::Ne(_) => "ne",
            Test::Gt(_) => "gt",
            Test::Gte(_) => "gte",
            Test::Lt(_) => "lt",
            Test::Lte(_) => "lte",
            Test::Exists(_) => "exists",
        }
    }

    /// The operand in the JSON form.
    pub fn operand(&self) -> Value {
        match self {
            Test::Eq(v) | Test::Ne(v) | Test::Gt(v) | Test::Gte(v) | Test::Lt(v) | Test::Lte(v) => {
                v.clone()
            }
            Test::Exists(b) => Value::Bool(*b),
        }
    }
}

/// A test at a JSON pointer (RFC 6901, such as `/amount` or `/order/items/0/sku`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The pointer into the payload.
    pub pointer: String,
    /// The test.
    pub test: Test,
}

/// Conditions that all must hold; an empty set always holds.
///
/// Its serde form is the JSON object form; deserializing it refuses what [`When::from_value`]
/// refuses, with the [`WhenError`]'s message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct When {
    conditions: Vec<Condition>,
}

/// What is wrong with a condition object. [`WhenError::field`] names the failing key relative to
/// the object (`"/amount".gt`), [`WhenError::field_under`] under the key the object came from
/// (`filter."/amount".gt`, `when."/amount"`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenError {
    /// The conditions are not a JSON object.
    NotAnObject {
        /// The kind of value that was given (`array`, `string`, ...).
        found: &'static str,
    },
    /// A key is not a JSON pointer.
    NotAPointer {
        /// The key (cut to 128 characters).
        pointer: String,
    },
    /// A pointer's tests are not an object.
    NotTests {
        /// The pointer.
        pointer: String,
        /// The kind of value that was given.
        found: &'static str,
    },
    /// A pointer has no test.
    NoTest {
        /// The pointer.
        pointer: String,
    },
    /// A test names an operator outside `eq ne gt gte lt lte exists`.
    UnknownOperator {
        /// The pointer.
        pointer: String,
        /// The operator given (cut to 128 characters).
        operator: String,
    },
    /// An operator got an operand of the wrong kind (`gt` on an object, `exists` on a string).
    WrongOperand {
        /// The pointer.
        pointer: String,
        /// The operator.
        operator: &'static str,
        /// What the operator takes.
        expected: &'static str,
        /// The kind of value that was given.
        found: &'static str,
    },
}

impl WhenError {
    /// The failing key relative to the condition object: `""` for the object itself,
    /// `"/amount"` (quoted) for a pointer, `"/amount".gt` for one of its tests.
    ///
    /// ```
    /// use nexus_event::When;
    /// let e = When::from_value(&serde_json::json!({"/amount": {"gt": {}}})).unwrap_err();
    /// assert_eq!(e.field(), r#""/amount".gt"#);
    /// assert_eq!(e.field_under("filter"), r#"filter."/amount".gt"#);
    /// ```
    pub fn field(&self) -> String {
        match self {
            WhenError::NotAnObject { .. } => String::new(),
            WhenError::NotAPointer { pointer }
            | WhenError::NotTests { pointer, .. }
            | WhenError::NoTest { pointer } => format!("{pointer:?}"),
            WhenError::UnknownOperator { pointer, operator } => format!("{pointer:?}.{operator}"),
            WhenError::WrongOperand {
                pointer, operator, ..
            } => format!("{pointer:?}.{operator}"),
        }
    }

    /// The failing key under `prefix`, the key the condition object came from.
    pub fn field_under(&self, prefix: &str) -> String {
        match self.field() {
            f if f.is_empty() => prefix.to_owned(),
            f => format!("{prefix}.{f}"),
        }
    }

    /// What is wrong, without the key.
    pub fn reason(&self) -> String {
        match self {
            WhenError::NotAnObject { found } => format!(
                "must be an object of JSON pointers to tests, such as \
                 {{\"/amount\": {{\"gte\": 1}}}}; got {found}"
            ),
            WhenError::NotAPointer { .. } => "is not a JSON pointer; use one such as \"/amount\" \
                 (\"\" for the whole payload, ~0 and ~1 for ~ and /)"
                .to_owned(),
            WhenError::NotTests { found, .. } => {
                format!("must be an object of tests such as {{\"gte\": 1}}; got {found}")
            }
            WhenError::NoTest { .. } => "has no test".to_owned(),
            WhenError::UnknownOperator { .. } => {
                "is not a test; use eq, ne, gt, gte, lt, lte or exists".to_owned()
            }
            WhenError::WrongOperand {
                expected, found, ..
            } => format!("takes {expected}; got {found}"),
        }
    }
}

impl fmt::Display for WhenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field() {
            field if field.is_empty() => f.write_str(&self.reason()),
            field => write!(f, "{field}: {}", self.reason()),
        }
    }
}

impl std::error::Error for WhenError {}

/// The kind of a JSON value, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Cuts a key that goes into an error, so a hostile megabyte does not end up in logs.
fn cut(s: &str) -> String {
    crate::error::excerpt(s)
}

/// An RFC 6901 pointer: empty, or `/`-separated tokens in which `~` only starts `~0` or `~1`.
fn is_pointer(p: &str) -> bool {
    if !(p.is_empty() || p.starts_with('/')) {
        return false;
    }
    let bytes = p.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

impl When {
    /// Conditions that all must hold.
    pub fn new(conditions: Vec<Condition>) -> Self {
        When { conditions }
    }

    /// Reads the JSON form (any JSON value; anything but an object is refused).
    ///
    /// ```
    /// use nexus_event::When;
    /// let when = When::from_value(&serde_json::json!({"/amount": {"gte": 1, "lt": 100}}))?;
    /// assert!(when.holds(&serde_json::json!({"amount": 5})));
    /// assert!(!when.holds(&serde_json::json!({"amount": 500})));
    /// assert!(!when.holds(&serde_json::json!({})));
    /// assert!(When::from_value(&serde_json::json!([1])).is_err());
    /// # Ok::<(), nexus_event::WhenError>(())
    /// ```
    pub fn from_value(value: &Value) -> Result<When, WhenError> {
        match value {
            Value::Object(map) => When::parse(map),
            other => Err(WhenError::NotAnObject { found: kind(other) }),
        }
    }

    /// Reads the object form: `{ "/amount" = { gte = 1 }, "/currency" = { eq = "EUR" } }` in
    /// the config file, each pointer with one or more of `eq`, `ne`, `gt`, `gte`, `lt`, `lte`,
    /// `exists`. `gt`, `gte`, `lt` and `lte` take a number or a string, `exists` a boolean,
    /// `eq` and `ne` any value.
    pub fn parse(map: &Map<String, Value>) -> Result<When, WhenError> {
        let mut conditions = Vec::new();
        for (pointer, tests) in map {
            if !is_pointer(pointer) {
                return Err(WhenError::NotAPointer {
                    pointer: cut(pointer),
                });
            }
            let Value::Object(tests) = tests else {
                return Err(WhenError::NotTests {
                    pointer: cut(pointer),
                    found: kind(tests),
                });
            };
            if tests.is_empty() {
                return Err(WhenError::NoTest {
                    pointer: cut(pointer),
                });
            }
            for (op, operand) in tests {
                let wrong =
                    |operator: &'static str, expected: &'static str| WhenError::WrongOperand {
                        pointer: cut(pointer),
                        operator,
                        expected,
                        found: kind(operand),
                    };
                let ordered = |operator: &'static str| match operand {
                    Value::Number(_) | Value::String(_) => Ok(operand.clone()),
                    _ => Err(wrong(operator, "a number or a string")),
                };
                let test = match op.as_str() {
                    "eq" => Test::Eq(operand.clone()),
                    "ne" => Test::Ne(operand.clone()),
                    "gt" => Test::Gt(ordered("gt")?),
                    "gte" => Test::Gte(ordered("gte")?),
                    "lt" => Test::Lt(ordered("lt")?),
                    "lte" => Test::Lte(ordered("lte")?),
                    "exists" => match operand {
                        Value::Bool(b) => Test::Exists(*b),
                        _ => return Err(wrong("exists", "true or false")),
                    },
                    other => {
                        return Err(WhenError::UnknownOperator {
                            pointer: cut(pointer),
                            operator: cut(other),
                        });
                    }
                };
                conditions.push(Condition {
                    pointer: pointer.clone(),
                    test,
                });
            }
        }
        Ok(When { conditions })
    }

    /// The JSON form: an object of pointers to their tests. Should two tests of one pointer
    /// share an operator (only [`When::new`] can build that), the last one is written.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        for c in &self.conditions {
            let tests = out
                .entry(c.pointer.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(tests) = tests {
                tests.insert(c.test.operator().to_owned(), c.test.operand());
            }
        }
        Value::Object(out)
    }

    /// The conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether there is no condition (so it always holds).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether every condition holds for `payload`.
    pub fn holds(&self, payload: &Value) -> bool {
        self.conditions.iter().all(|c| c.holds(payload))
    }
}

impl Condition {
    /// Whether this condition holds for `payload`.
    pub fn holds(&self, payload: &Value) -> bool {
        let found = payload.pointer(&self.pointer);
        match (&self.test, found) {
            (Test::Exists(want), found) => found.is_some() == *want,
            (_, None) => matches!(self.test, Test::Ne(_)),
            (Test::Eq(want), Some(v)) => equal(v, want),
            (Test::Ne(want), Some(v)) => !equal(v, want),
            (Test::Gt(o), Some(v)) => compare(v, o) == Some(Ordering::Greater),
            (Test::Gte(o), Some(v)) => {
                matches!(compare(v, o), Some(Ordering::Greater | Ordering::Equal))
            }
            (Test::Lt(o), Some(v)) => compare(v, o) == Some(Ordering::Less),
            (Test::Lte(o), Some(v)) => {
                matches!(compare(v, o), Some(Ordering::Less | Ordering::Equal))
            }
        }
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Numbers with numbers, strings with strings; anything else does not compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Serialize for When {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<When, D::Error> {
        let value = Value::deserialize(deserializer)?;
        When::from_value(&value).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn when(v: Value) -> Result<When, WhenError> {
        When::from_value(&v)
    }

    #[test]
    fn every_test_on_numbers_strings_and_presence() {
        let p = json!({"amount": 5, "currency": "EUR", "ok": true, "nested": {"n": 2.5},
            "items": [{"sku": "a/b"}], "a~b": 1, "c/d": 2});
        let cases = [
            (json!({"/amount": {"eq": 5}}), true),
            (json!({"/amount": {"eq": 5.0}}), true),
            (json!({"/amount": {"ne": 5}}), false),
            (json!({"/amount": {"gt": 4, "lt": 6}}), true),
            (json!({"/amount": {"gte": 5, "lte": 5}}), true),
            (json!({"/amount": {"gt": 5}}), false),
            (json!({"/amount": {"gt": "4"}}), false),
            (json!({"/currency": {"eq": "EUR"}}), true),
            (json!({"/currency": {"lt": "USD"}}), true),
            (json!({"/ok": {"eq": true}}), true),
            (json!({"/nested/n": {"gte": 2.5}}), true),
            (json!({"/nested": {"eq": {"n": 2.5}}}), true),
            (json!({"/items/0/sku": {"eq": "a/b"}}), true),
            (json!({"/a~0b": {"eq": 1}, "/c~1d": {"eq": 2}}), true),
            (json!({"": {"exists": true}}), true),
            (json!({"/missing": {"exists": false}}), true),
            (json!({"/missing": {"exists": true}}), false),
            (json!({"/missing": {"eq": 1}}), false),
            (json!({"/missing": {"ne": 1}}), true),
            (json!({"/missing": {"gte": 1}}), false),
            (
                json!({"/amount": {"exists": true}, "/currency": {"eq": "USD"}}),
                false,
            ),
            (json!({}), true),
        ];
        for (spec, expected) in cases {
            let w = when(spec.clone()).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(w.holds(&p), expected, "{spec}");
        }
    }

    /// Every refusal of API.md section 12, each naming the failing key.
    #[test]
    fn bad_conditions_name_what_is_wrong() {
        let cases = [
            (json!([]), "", "an array"),
            (json!("x"), "", "a string"),
            (json!(null), "", "null"),
            (json!(1), "", "a number"),
            (json!({"amount": {"eq": 1}}), r#""amount""#, "JSON pointer"),
            (json!({"/a~2": {"eq": 1}}), r#""/a~2""#, "JSON pointer"),
            (json!({"/a~": {"eq": 1}}), r#""/a~""#, "JSON pointer"),
            (json!({"/amount": 1}), r#""/amount""#, "object of tests"),
            (json!({"/amount": [1]}), r#""/amount""#, "object of tests"),
            (json!({"/amount": {}}), r#""/amount""#, "has no test"),
            (
                json!({"/amount": {"between": 1}}),
                r#""/amount".between"#,
                "is not a test",
            ),
            (
                json!({"/amount": {"EQ": 1}}),
                r#""/amount".EQ"#,
                "is not a test",
            ),
            (
                json!({"/amount": {"gt": {}}}),
                r#""/amount".gt"#,
                "an object",
            ),
            (
                json!({"/amount": {"gte": [1]}}),
                r#""/amount".gte"#,
                "an array",
            ),
            (
                json!({"/amount": {"lt": true}}),
                r#""/amount".lt"#,
                "number or a string",
            ),
            (
                json!({"/amount": {"lte": null}}),
                r#""/amount".lte"#,
                "null",
            ),
            (
                json!({"/amount": {"exists": "yes"}}),
                r#""/amount".exists"#,
                "true or false",
            ),
            (
                json!({"/amount": {"exists": 1}}),
                r#""/amount".exists"#,
                "true or false",
            ),
        ];
        for (spec, field, needle) in cases {
            match when(spec.clone()) {
                Ok(_) => panic!("{spec} should be refused"),
                Err(e) => {
                    assert_eq!(e.field(), field, "{spec}");
                    assert!(e.to_string().contains(needle), "{spec}: {e}");
                    let under = e.field_under("filter");
                    assert!(under.starts_with("filter"), "{under}");
                    assert_eq!(under == "filter", field.is_empty(), "{under}");
                }
            }
        }
    }

    #[test]
    fn the_json_form_round_trips() {
        let spec = json!({"/amount": {"gte": 10000, "lt": 1e9}, "/currency": {"eq": "EUR"},
            "/tag": {"exists": false}, "/x": {"ne": {"a": [1]}}});
        let w = when(spec.clone()).expect("valid");
        assert_eq!(w.to_value(), spec);
        assert_eq!(serde_json::to_value(&w).expect("ser"), spec);
        let back: When = serde_json::from_value(spec).expect("de");
        assert_eq!(back, w);
        let e = serde_json::from_value::<When>(json!({"/a": {"gt": []}})).expect_err("refused");
        assert!(e.to_string().contains(r#""/a".gt"#), "{e}");
        assert!(When::default().is_empty() && When::default().holds(&json!(null)));
    }

    #[test]
    fn a_long_hostile_key_is_cut_in_the_error() {
        let key = "x".repeat(10_000);
        let e = when(json!({ key: {"eq": 1} })).expect_err("refused");
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }

    proptest! {
        /// gt/gte/lt/lte agree with the plain numeric comparison, and eq with ne.
        #[test]
        fn numeric_tests_match_the_model(x in -1e6f64..1e6, y in -1e6f64..1e6) {
            let p = json!({"v": x});
            let t = |op: &str| when(json!({"/v": {op: y}})).map(|w| w.holds(&p)).unwrap_or(false);
            prop_assert_eq!(t("gt"), x > y);
            prop_assert_eq!(t("gte"), x >= y);
            prop_assert_eq!(t("lt"), x < y);
            prop_assert_eq!(t("lte"), x <= y);
            prop_assert_eq!(t("eq"), x == y);
            prop_assert_eq!(t("ne"), x != y);
        }

        /// Parsing never panics, and what it accepts survives the round trip through JSON.
        #[test]
        fn parsing_is_total(key in "[/a-z~0-9]{0,8}", op in "[a-z]{1,6}", n in any::<i32>()) {
            let spec = json!({ key: { op: n } });
            if let Ok(w) = when(spec) {
                prop_assert_eq!(when(w.to_value()).ok(), Some(w));
            }
        }
    }
}

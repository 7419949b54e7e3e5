//! `when` conditions: tests on JSON pointers into an event's payload, all of which must hold.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::ReactorError;

/// One test on the value at a pointer.
#[derive(Debug, Clone, PartialEq)]
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

/// A test at a JSON pointer (RFC 6901, such as `/amount` or `/order/items/0/sku`).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The pointer into the payload.
    pub pointer: String,
    /// The test.
    pub test: Test,
}

/// All the conditions of a reactor; an empty set always holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct When {
    conditions: Vec<Condition>,
}

impl When {
    /// Conditions that all must hold.
    pub fn new(conditions: Vec<Condition>) -> Self {
        When { conditions }
    }

    /// Reads the config form: `{ "/amount" = { gte = 1 }, "/currency" = { eq = "EUR" } }`, each
    /// pointer with one or more of `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `exists`.
    ///
    /// ```
    /// use nexus_reactors::When;
    /// let when = When::parse(&serde_json::from_str(r#"{"/amount": {"gte": 1, "lt": 100}}"#)?)?;
    /// assert!(when.holds(&serde_json::json!({"amount": 5})));
    /// assert!(!when.holds(&serde_json::json!({"amount": 500})));
    /// assert!(!when.holds(&serde_json::json!({})));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(map: &Map<String, Value>) -> Result<When, ReactorError> {
        let mut conditions = Vec::new();
        for (pointer, tests) in map {
            let field = format!("when.{pointer:?}");
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(ReactorError::invalid(
                    field,
                    "must be a JSON pointer such as \"/amount\" (empty for the whole payload)",
                ));
            }
            let Value::Object(tests) = tests else {
                return Err(ReactorError::invalid(
                    field,
                    "must be a table of tests such as { gte = 1 }",
                ));
            };
            if tests.is_empty() {
                return Err(ReactorError::invalid(field, "has no test"));
            }
            for (op, operand) in tests {
                let ordered = |v: &Value| match v {
                    Value::Number(_) | Value::String(_) => Ok(v.clone()),
                    _ => Err(ReactorError::invalid(
                        format!("{field}.{op}"),
                        "compares numbers or strings only",
                    )),
                };
                let test = match op.as_str() {
                    "eq" => Test::Eq(operand.clone()),
                    "ne" => Test::Ne(operand.clone()),
                    "gt" => Test::Gt(ordered(operand)?),
                    "gte" => Test::Gte(ordered(operand)?),
                    "lt" => Test::Lt(ordered(operand)?),
                    "lte" => Test::Lte(ordered(operand)?),
                    "exists" => match operand {
                        Value::Bool(b) => Test::Exists(*b),
                        _ => {
                            return Err(ReactorError::invalid(
                                format!("{field}.exists"),
                                "must be true or false",
                            ));
                        }
                    },
                    other => {
                        return Err(ReactorError::invalid(
                            format!("{field}.{other}"),
                            "is not a test; use eq, ne, gt, gte, lt, lte or exists",
                        ));
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

    /// The conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn when(v: Value) -> Result<When, ReactorError> {
        match v {
            Value::Object(m) => When::parse(&m),
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn every_test_on_numbers_strings_and_presence() {
        let p = json!({"amount": 5, "currency": "EUR", "ok": true, "nested": {"n": 2.5}});
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

    #[test]
    fn bad_conditions_name_what_is_wrong() {
        let cases = [
            (json!({"amount": {"eq": 1}}), "JSON pointer"),
            (json!({"/amount": 1}), "table of tests"),
            (json!({"/amount": {}}), "has no test"),
            (json!({"/amount": {"between": 1}}), "between"),
            (json!({"/amount": {"gt": true}}), "numbers or strings"),
            (json!({"/amount": {"exists": "yes"}}), "true or false"),
        ];
        for (spec, needle) in cases {
            match when(spec.clone()) {
                Ok(_) => panic!("{spec} should be refused"),
                Err(e) => assert!(e.to_string().contains(needle), "{spec}: {e}"),
            }
        }
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
    }
}

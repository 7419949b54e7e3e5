//! Reading JSON bodies so that every parser reads the same signed bytes the same way.
//!
//! serde_json keeps the last of two equal keys and turns an integer past the 64-bit range into
//! a rounded float; another parser may keep the first key or the exact number, so one signed
//! body could mean two things. A body with a duplicate key anywhere (compared after unescaping,
//! so `"a"` and `"\u0061"` are one key) is refused with `400 BAD_REQUEST`, and an integer
//! literal outside `i64` and `u64` with `400 VALIDATION_ERROR`: numbers are kept exact or
//! refused, never rounded. A number with a fraction or an exponent is a double, as JSON says.
//! (serde_json's `arbitrary_precision` would keep such integers, but it changes how every
//! number of the workspace is held, compared and stored, for a case no publisher needs.)

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::envelope::ApiError;

/// Parses a JSON body, refusing duplicate keys and integers beyond 64 bits.
pub(crate) fn parse(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    check(body).map_err(Finding::into_error)?;
    Ok(value)
}

/// What [`check`] found wrong in well-formed JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// `key` appears twice in the object at `object` (a JSON pointer).
    DuplicateKey { object: String, key: String },
    /// The integer `literal` at `pointer` does not fit in 64 bits.
    IntegerOutOfRange { pointer: String, literal: String },
}

impl Finding {
    fn into_error(self) -> ApiError {
        match self {
            Finding::DuplicateKey { object, key } => {
                let pointer = format!("{object}/{}", escape(&key));
                let at = if object.is_empty() {
                    "the top-level object".to_owned()
                } else {
                    format!("the object at {object}")
                };
                ApiError::bad_request(format!(
                    "duplicate key {key:?} in {at}: a key may appear once in an object"
                ))
                .with_details(json!({ "field": key, "pointer": pointer }))
            }
            Finding::IntegerOutOfRange { pointer, literal } => {
                let field = pointer
                    .split('/')
                    .nth(1)
                    .map_or_else(|| "body".to_owned(), unescape);
                ApiError::validation(
                    &field,
                    format!(
                        "the integer {literal} at {} is outside the 64-bit range \
                         (-9223372036854775808 to 18446744073709551615); send it as a string",
                        if pointer.is_empty() {
                            "the top level"
                        } else {
                            &pointer
                        }
                    ),
                )
                .with_details(json!({ "field": field, "pointer": pointer }))
            }
        }
    }
}

/// Where the scan is: inside an object (with its keys so far and the key whose value comes
/// next) or an array (with the index of the current element).
enum Frame {
    Object {
        keys: HashSet<String>,
        current: Option<String>,
    },
    Array {
        index: usize,
    },
}

/// Scans well-formed JSON (serde_json has accepted it, so nesting is bounded) for duplicate
/// keys and integers beyond 64 bits; the first one found is returned.
pub(crate) fn check(bytes: &[u8]) -> Result<(), Finding> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Object {
                    keys: HashSet::new(),
                    current: None,
                });
                i += 1;
            }
            b'[' => {
                stack.push(Frame::Array { index: 0 });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Array { index }) => *index += 1,
                    Some(Frame::Object { current, .. }) => *current = None,
                    None => {}
                }
                i += 1;
            }
            b'"' => {
                let end = string_end(bytes, i);
                if let Some(Frame::Object { keys, current }) = stack.last_mut()
                    && current.is_none()
                {
                    let key = decode(&bytes[i..end]);
                    let fresh = keys.insert(key.clone());
                    *current = Some(key.clone());
                    if !fresh {
                        let object = pointer(&stack[..stack.len() - 1]);
                        return Err(Finding::DuplicateKey { object, key });
                    }
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let mut end = i + 1;
                while end < bytes.len()
                    && matches!(bytes[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    end += 1;
                }
                let literal = std::str::from_utf8(&bytes[i..end]).unwrap_or("");
                let integer = !literal.contains(['.', 'e', 'E']);
                let fits = if literal.starts_with('-') {
                    literal.parse::<i64>().is_ok()
                } else {
                    literal.parse::<u64>().is_ok()
                };
                if integer && !fits {
                    return Err(Finding::IntegerOutOfRange {
                        pointer: pointer(&stack),
                        literal: literal.to_owned(),
                    });
                }
                i = end;
            }
            // Whitespace, `:`, and the letters of true, false and null.
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the string token that starts at `start` (its opening quote).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A string token's text, escapes resolved.
fn decode(token: &[u8]) -> String {
    if token.contains(&b'\\') {
        serde_json::from_slice::<String>(token).unwrap_or_default()
    } else {
        let inner = &token[1..token.len().saturating_sub(1).max(1)];
        String::from_utf8_lossy(inner).into_owned()
    }
}

/// The JSON pointer of the value the scan is in.
fn pointer(stack: &[Frame]) -> String {
    let mut out = String::new();
    for frame in stack {
        out.push('/');
        match frame {
            Frame::Object { current, .. } => {
                out.push_str(&escape(current.as_deref().unwrap_or("")))
            }
            Frame::Array { index } => out.push_str(&index.to_string()),
        }
    }
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_api::envelope::ErrorCode;

    fn dup(object: &str, key: &str) -> Result<(), Finding> {
        Err(Finding::DuplicateKey {
            object: object.into(),
            key: key.into(),
        })
    }

    #[test]
    fn duplicate_keys_are_found_anywhere() {
        assert_eq!(check(br#"{"a":1,"a":2}"#), dup("", "a"));
        assert_eq!(
            check(br#"{"type":"T","payload":{"x":{"k":1,"k":[2]}}}"#),
            dup("/payload/x", "k")
        );
        assert_eq!(
            check(br#"{"events":[{"type":"A"},{"type":"B","type":"C"}]}"#),
            dup("/events/1", "type")
        );
        // Compared after unescaping.
        assert_eq!(check(br#"{"a":1,"\u0061":2}"#), dup("", "a"));
        assert_eq!(check(br#"{"a/b":{"c":1,"c":1}}"#), dup("/a~1b", "c"));
        // Equal keys in different objects, and strings that look like keys, are fine.
        assert_eq!(
            check(br#"{"a":{"a":"a"},"b":[{"a":1},{"a":2}],"c":"\"a\":1,"}"#),
            Ok(())
        );
        assert_eq!(check(br#"[{"k":1},{"k":1}]"#), Ok(()));
    }

    #[test]
    fn integers_beyond_64_bits_are_found_and_floats_are_not() {
        for ok in [
            r#"{"n":18446744073709551615}"#,
            r#"{"n":-9223372036854775808}"#,
            r#"{"n":1e30,"m":-1.5E+300,"o":123456789012345678901234.5}"#,
            r#"[0,-0,1,true,false,null]"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        assert_eq!(
            check(br#"{"payload":{"amounts":[1,18446744073709551616]}}"#),
            Err(Finding::IntegerOutOfRange {
                pointer: "/payload/amounts/1".into(),
                literal: "18446744073709551616".into()
            })
        );
        assert_eq!(
            check(b"-9223372036854775809"),
            Err(Finding::IntegerOutOfRange {
                pointer: String::new(),
                literal: "-9223372036854775809".into()
            })
        );
    }

    #[test]
    fn refusals_name_the_key_and_the_field() {
        let e = parse(br#"{"type":"A","payload":{"amount":1,"amount":1000}}"#).expect_err("dup");
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("\"amount\""), "{}", e.message);
        assert_eq!(
            e.details,
            Some(json!({"field": "amount", "pointer": "/payload/amount"}))
        );
        let e = parse(br#"{"type":"A","payload":{"n":100000000000000000000}}"#).expect_err("big");
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert_eq!(
            e.details,
            Some(json!({"field": "payload", "pointer": "/payload/n"}))
        );
        let e = parse(b"{not json").expect_err("not JSON");
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            parse(br#"{"a":[1,{"b":2}]}"#).ok(),
            Some(json!({"a":[1,{"b":2}]}))
        );
    }
}

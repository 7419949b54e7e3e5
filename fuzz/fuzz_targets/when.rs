//! The reactors' and subscriptions' `when` conditions (`nexus_event::when`, API.md section 12).
//! An input is the conditions as JSON, a newline, then the payload as JSON.
//!
//! Checked: no panic; `When::from_value` and the serde form agree; an accepted condition set
//! survives `to_value` and back unchanged, and holds on a payload exactly as it did before.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_event::When;
use nexus_fuzz::two_parts;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (conditions, payload) = two_parts(data);
    let Ok(conditions) = serde_json::from_slice::<Value>(conditions) else {
        return;
    };
    let payload: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);

    let when = When::from_value(&conditions);
    let serde_form = serde_json::from_value::<When>(conditions.clone());
    assert_eq!(
        when.is_ok(),
        serde_form.is_ok(),
        "from_value and serde disagree on {conditions}"
    );
    let Ok(when) = when else {
        let e = when.expect_err("refused");
        // A refusal names its field and a reason.
        assert!(!e.reason().is_empty());
        let _ = e.field();
        return;
    };
    assert_eq!(serde_form.ok().as_ref(), Some(&when));
    assert_eq!(when.is_empty(), when.conditions().is_empty());

    let holds = when.holds(&payload);
    let again = When::from_value(&when.to_value()).expect("the written form of a When reads back");
    assert_eq!(again, when, "to_value then from_value changed {conditions}");
    assert_eq!(again.holds(&payload), holds);
    if when.is_empty() {
        assert!(holds, "an empty condition set always holds");
    }
});

//! WebSocket client frames (API.md section 7): the text of a frame read as the server reads it:
//! JSON, then its `action` (one of `ClientFrame::ACTIONS`), then the `nexus_api::ws::ClientFrame`
//! wire type, then each of its `events` globs compiled as a `nexus_event::Pattern`.
//!
//! Checked: no panic; an object that reads as a `ClientFrame` has one of the known actions; a
//! frame read serializes back to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_api::ws::ClientFrame;
use nexus_event::Pattern;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the server takes text frames only, and a text frame is UTF-8
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let action = value
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let known = ClientFrame::ACTIONS.contains(&action.as_str());
    let value_was_object = value.is_object();
    let Ok(frame) = serde_json::from_value::<ClientFrame>(value) else {
        return;
    };
    // The server checks `action` before it reads the frame, so only an object reaches this
    // point there. The wire type alone also reads serde's sequence form of a tagged enum
    // (`["ping"]`, `["subscribe", ["*"], 41]`): found by this target; harmless in the server,
    // which refuses a frame without an `action` key first.
    if value_was_object {
        assert!(
            known,
            "a frame of unknown action {action:?} was read as {frame:?}"
        );
    }
    let written = serde_json::to_string(&frame).expect("a frame serializes");
    let back: ClientFrame = serde_json::from_str(&written).expect("and reads back");
    assert_eq!(back, frame);
    let globs = match &frame {
        ClientFrame::Subscribe { events, .. } | ClientFrame::Unsubscribe { events } => {
            events.as_slice()
        }
        ClientFrame::Ping => &[],
    };
    for glob in globs {
        if let Ok(pattern) = Pattern::new(glob) {
            assert_eq!(pattern.as_str(), glob);
        }
    }
});

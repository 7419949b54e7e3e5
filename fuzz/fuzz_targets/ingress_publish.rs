//! `POST /events` parsing: a plain event, a structured CloudEvent or a binary CloudEvent, chosen
//! by the headers as the handler chooses (nexus_transport::fuzzing::publish). An input is
//! headers, a blank line, the body (see the crate doc).
//!
//! Checked: no panic; a refusal is a 4xx, never a 5xx; an accepted payload survives a JSON
//! round trip unchanged (what is stored is what is served).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_fuzz::request;

fuzz_target!(|data: &[u8]| {
    let request = request(data);
    match nexus_transport::fuzzing::publish(&request.headers, request.body) {
        Ok((_, event_type, payload)) => {
            assert!(nexus_event::EventType::new(event_type.as_str()).is_ok());
            let text = serde_json::to_vec(&payload).expect("a JSON value serializes");
            let back: serde_json::Value = serde_json::from_slice(&text).expect("and parses back");
            assert_eq!(back, payload, "the payload changed in a JSON round trip");
        }
        Err(e) => assert!(
            e.status.is_client_error(),
            "{} for {:?}",
            e.status,
            e.message
        ),
    }
});

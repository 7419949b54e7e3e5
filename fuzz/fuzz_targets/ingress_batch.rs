//! `POST /events/batch` parsing: 1 to 1000 plain events, each read on its own
//! (nexus_transport::fuzzing::batch). The input is the body.
//!
//! Checked: no panic; a refusal is a 4xx; an accepted batch has 1 to MAX_BATCH events.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match nexus_transport::fuzzing::batch(data) {
        Ok(events) => assert!((1..=nexus_transport::MAX_BATCH).contains(&events.len())),
        Err(e) => assert!(
            e.status.is_client_error(),
            "{} for {:?}",
            e.status,
            e.message
        ),
    }
});

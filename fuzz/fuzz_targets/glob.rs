//! The glob compiler and matcher (`nexus_event::Pattern`, `TypeFilter`). An input is a glob, a
//! newline, then a subject (any UTF-8; a `*` in it is a plain character).
//!
//! Checked: no panic; a glob is accepted exactly when it is 1 to 128 characters of
//! `A-Z a-z 0-9 _ . : -` and `*`; the compiled matcher agrees with a plain backtracking-free
//! reference (dynamic programming over bytes) on every subject; the serde and `FromStr` forms
//! give the same pattern; a filter of the one pattern matches what the pattern matches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_event::{EventType, Pattern, TypeFilter};
use nexus_fuzz::two_parts;

fn allowed(b: u8) -> bool {
    b == b'*' || b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// `*` is any run of bytes, the empty one included; every other byte is itself.
fn reference(glob: &[u8], subject: &[u8]) -> bool {
    // row[j]: the glob so far matches subject[..j].
    let mut row = vec![false; subject.len() + 1];
    row[0] = true;
    for &g in glob {
        let mut next = vec![false; subject.len() + 1];
        if g == b'*' {
            let mut any = false;
            for j in 0..=subject.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=subject.len() {
                next[j] = row[j - 1] && subject[j - 1] == g;
            }
        }
        row = next;
    }
    row[subject.len()]
}

fuzz_target!(|data: &[u8]| {
    let (glob, subject) = two_parts(data);
    let Ok(glob) = std::str::from_utf8(glob) else {
        return;
    };
    let subject = String::from_utf8_lossy(subject);
    let valid = (1..=128).contains(&glob.len()) && glob.bytes().all(allowed);
    let pattern = match Pattern::new(glob) {
        Ok(p) => p,
        Err(e) => {
            assert!(!valid, "refused a valid glob {glob:?}: {e}");
            return;
        }
    };
    assert!(valid, "accepted an invalid glob {glob:?}");
    assert_eq!(pattern.as_str(), glob);
    assert_eq!(pattern.is_any(), glob.bytes().all(|b| b == b'*'));

    let matched = pattern.matches(&subject);
    assert_eq!(
        matched,
        reference(glob.as_bytes(), subject.as_bytes()),
        "{glob:?} against {subject:?}"
    );
    // A pattern matches itself, as a subject.
    assert!(pattern.matches(glob), "{glob:?} does not match itself");

    let parsed: Pattern = glob.parse().expect("FromStr takes what new takes");
    assert_eq!(parsed, pattern);
    let json = serde_json::to_string(&pattern).expect("a pattern serializes");
    let back: Pattern = serde_json::from_str(&json).expect("and deserializes");
    assert_eq!(back, pattern);

    let filter = TypeFilter::parse([glob]).expect("a filter of one valid glob");
    assert_eq!(filter.matches_str(&subject), matched);
    if let Ok(event_type) = EventType::new(&subject) {
        assert_eq!(pattern.matches_type(&event_type), matched);
        assert_eq!(filter.matches(&event_type), matched);
    }
});

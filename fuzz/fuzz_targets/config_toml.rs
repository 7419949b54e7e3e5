//! The config file named by `NEXUS_CONFIG` (API.md section 10): the server's own parser and
//! checks, compiled in from `bins/nexus-server/src/config` by `#[path]` (a binary crate has no
//! library to depend on). The input is the file's text.
//!
//! Checked: no panic in parsing or in checking key by key, in each mode, with every secret
//! variable set and with none; every refusal names a key or variable and says what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports, unreachable_pub, clippy::all)]
#[path = "../../bins/nexus-server/src/config/mod.rs"]
mod config;

use config::{FileConfig, Mode};

/// A strong secret for any variable a file names.
fn every_variable(_: &str) -> Option<String> {
    Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
}

fn no_variable(_: &str) -> Option<String> {
    None
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // read_to_string refuses a file that is not UTF-8 before the parser sees it
    };
    if let Err(e) = FileConfig::parse(text) {
        assert!(!e.name.is_empty() && !e.message.is_empty(), "{e:?}");
        return;
    }
    // Schema paths of [[event_types]] are read relative to the file: a directory that does not
    // exist, so a fuzzed path reads nothing from this machine.
    let base = std::path::Path::new("/nonexistent/nexus-fuzz");
    for (mode, get) in [
        (
            Mode::Development,
            every_variable as fn(&str) -> Option<String>,
        ),
        (Mode::Production, every_variable),
        (Mode::Development, no_variable),
    ] {
        let file = FileConfig::parse(text).expect("it parsed above");
        if let Err(e) = file.relative_to(base).check(mode, get) {
            assert!(!e.name.is_empty() && !e.message.is_empty(), "{e:?}");
        }
    }
});

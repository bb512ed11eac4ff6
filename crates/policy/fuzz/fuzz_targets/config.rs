//! Any text given as a config file: `parse` answers with a config or with
//! problems, and never panics (invariant 6 for config).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = taskgate_policy::config::parse(text);
    }
});

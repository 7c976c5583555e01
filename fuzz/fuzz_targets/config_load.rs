//! `Config::from_toml` on arbitrary text: never a panic, and what it accepts
//! passes its own validation again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = authd::Config::from_toml(text) {
        config.validate().expect("an accepted config validates");
        assert!(config.server.threads <= 1024);
    }
});

//! The whole Verifier, over the fixture's fixed key set and clock, on
//! arbitrary bytes as the token: it must never panic, and a token it accepts
//! must carry the issuer, an audience and an unexpired `exp`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // gRPC strings are UTF-8; anything else never reaches the verifier.
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(verified) = authd_fuzz::fixture().verify(token) {
        authd_fuzz::assert_acceptable(&verified);
    }
});

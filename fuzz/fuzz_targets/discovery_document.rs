//! An OpenID Connect discovery document (untrusted JSON) read as the issuer
//! client reads it: never a panic, and it is only taken when it names the
//! very issuer it was fetched for.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://tenant.example.auth0.com/";

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = authd::fuzzing::parse_discovery(data, ISSUER) {
        assert_eq!(doc.issuer, ISSUER);
    }
});

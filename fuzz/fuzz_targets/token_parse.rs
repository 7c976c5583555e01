//! The untrusted JWT parser (`verify/token.rs`) on arbitrary text: it must
//! never panic, and what it accepts must be a three-segment compact JWS
//! whose signature segment is the canonical base64url of what it decoded.
#![no_main]

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = authd::fuzzing::parse_token(token) {
        let last_dot = token.rfind('.').expect("accepted tokens have dots");
        assert_eq!(token.matches('.').count(), 2, "{token:?}");
        assert_eq!(parsed.signing_input, &token.as_bytes()[..last_dot]);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&parsed.signature),
            token[last_dot + 1..]
        );
        assert!(!parsed.signature.is_empty());
    }
});

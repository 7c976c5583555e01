//! A JWKS document from the issuer (untrusted JSON) read into prepared keys,
//! as the key set does it: never a panic; every key prepared fits the
//! algorithms allowed and its JWK's own `alg`, and only keys meant to sign.
#![no_main]

use authd::jwks::Algorithm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first two bytes pick the configured algorithms, one bit each.
    let (mask, document) = (u16::from_le_bytes([data[0], data[1]]), &data[2..]);
    let allowed: Vec<Algorithm> = Algorithm::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, alg)| alg)
        .collect();
    let Some(keys) = authd::fuzzing::parse_key_set(document, &allowed) else {
        return;
    };
    assert!(keys.len() <= 100, "a key set is at most 100 keys");
    for (jwk, key) in keys {
        let Ok(key) = key else { continue };
        assert_eq!(key.kid(), jwk.kid.as_deref().unwrap_or_default());
        assert!(jwk.use_.as_deref().is_none_or(|u| u == "sig"));
        let supported: Vec<Algorithm> = Algorithm::ALL
            .into_iter()
            .filter(|alg| key.supports(*alg))
            .collect();
        assert!(!supported.is_empty(), "a usable key supports something");
        for alg in supported {
            assert!(allowed.contains(&alg), "{alg} was not allowed");
            if let Some(named) = &jwk.alg {
                // By its JOSE name, or RFC 9864's `Ed25519` for EdDSA.
                assert_eq!(
                    Algorithm::from_name(named),
                    Some(alg),
                    "the JWK names its algorithm ({named})"
                );
            }
            // A prepared key must survive any signature without panicking.
            assert!(!key.verify(alg, b"message", &[0u8; 64]));
        }
    }
});

//! Differential check: authd's Verifier and `jsonwebtoken::decode` must agree
//! on accept/refuse for the same token, key set and rules — valid tokens,
//! mutated headers and claims, tokens re-signed with other keys, wrong `alg`,
//! expired, wrong `iss`/`aud`, ES256 with `s → n − s` — except where authd
//! is stricter (or laxer) on purpose: the `Difference` list in
//! `differential/harness.rs`, each with its reason.
//!
//! The fuzz target `differential` (fuzz/) runs the same harness under
//! libFuzzer.

#[path = "differential/harness.rs"]
mod harness;

use std::sync::OnceLock;

use harness::{Choices, Difference, Harness, Spec};
use proptest::prelude::*;

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::new)
}

/// The spec whose one field is `value` and every other the valid variant.
fn one_change(field: usize, value: u8) -> Spec {
    let mut bytes = [0u8; 16];
    bytes[field] = value;
    Spec::from_choices(&mut Choices::new(&bytes))
}

/// How many variants each field of [`Spec`] has, in field order.
const VARIANTS: [u8; 16] = [6, 10, 9, 4, 11, 7, 9, 12, 10, 5, 4, 3, 3, 8, 7, 255];

#[test]
fn the_valid_token_is_accepted_by_both() {
    let (authd, jwt) = harness()
        .compare(&one_change(0, 0))
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(authd && jwt, "authd {authd}, jsonwebtoken {jwt}");
}

#[test]
fn every_variant_alone_agrees_or_is_a_listed_difference() {
    let mut disagreements = Vec::new();
    for (field, variants) in VARIANTS.iter().enumerate().take(15) {
        for value in 0..*variants {
            if let Err(d) = harness().compare(&one_change(field, value)) {
                disagreements.push(d);
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{}",
        disagreements
            .iter()
            .map(|d| format!("{d}\n"))
            .collect::<String>()
    );
}

#[test]
fn high_s_es256_signatures_verify_in_both() {
    // ECDSA is malleable and neither library normalises s: the (r, n − s)
    // twin of a genuine ES256 token is accepted by both.
    let mut bytes = [0u8; 16];
    bytes[0] = 2; // the P-256 signer
    bytes[14] = 4; // s → n − s
    let spec = Spec::from_choices(&mut Choices::new(&bytes));
    let (authd, jwt) = harness().compare(&spec).unwrap_or_else(|d| panic!("{d}"));
    assert!(authd && jwt, "authd {authd}, jsonwebtoken {jwt}");
    let token = harness().build(&spec, 0);
    let plain = harness().build(&one_change(0, 2), 0);
    assert_ne!(
        token.rsplit('.').next(),
        plain.rsplit('.').next(),
        "the twin is another signature"
    );
}

/// Keeps the list honest: each listed difference must show up as a real
/// disagreement, in the direction it claims, on at least one token.
#[test]
fn every_listed_difference_is_real() {
    let cases: [(Difference, usize, u8); 10] = [
        (Difference::Crit, 4, 2),
        (Difference::KeyChoosingHeader, 4, 3),
        (Difference::DuplicateClaim, 13, 4),
        (Difference::ClaimOfWrongType, 10, 2),
        (Difference::IssuerArray, 5, 4),
        (Difference::IatInFuture, 9, 2),
        (Difference::FractionalTime, 7, 7),
        (Difference::B64Header, 4, 7),
        (Difference::UnreadHeaderMember, 3, 3),
        (Difference::NumericDateNotU64, 7, 9),
    ];
    for (difference, field, value) in cases {
        let spec = one_change(field, value);
        assert!(spec.differences().contains(&difference), "{difference:?}");
        let (authd, jwt) = harness().compare(&spec).unwrap_or_else(|d| panic!("{d}"));
        assert_ne!(authd, jwt, "{difference:?} shows no difference");
        assert_eq!(!authd, difference.authd_refuses(), "{difference:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any combination of the variants.
    #[test]
    fn authd_and_jsonwebtoken_agree_on_accept_and_refuse(
        // Mostly the valid variant, so that tokens stay near-valid.
        bytes in proptest::collection::vec(prop_oneof![3 => Just(0u8), 1 => any::<u8>()], 16),
    ) {
        let spec = Spec::from_choices(&mut Choices::new(&bytes));
        if let Err(d) = harness().compare(&spec) {
            prop_assert!(false, "{}", d);
        }
    }
}

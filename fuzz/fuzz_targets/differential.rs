//! authd's Verifier against `jsonwebtoken::decode` on the same tokens: the
//! harness of `server/tests/differential.rs` (property test), driven by
//! libFuzzer. A disagreement that none of the listed deliberate differences
//! explains is a crash.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../server/tests/differential/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::{Choices, Harness, Spec};

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::new)
}

fuzz_target!(|data: &[u8]| {
    let spec = Spec::from_choices(&mut Choices::new(data));
    if let Err(disagreement) = harness().compare(&spec) {
        panic!("authd and jsonwebtoken disagree: {disagreement}");
    }
});

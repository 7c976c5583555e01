//! `LocalKeys::open` (the `v1` values local keys seal) on arbitrary sealed strings and item keys: never a panic,
//! a forged value never opens, and a genuine one opens only for its own item.
#![no_main]

use std::sync::OnceLock;

use authd::secrets::{LocalKeys, SealedSecret, Secret};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    sealed: String,
    item_key: String,
    /// A genuine value to seal and then tamper with, when present.
    genuine: Option<(String, String, u16, u8)>,
}

fn sealer() -> &'static LocalKeys {
    static SEALER: OnceLock<LocalKeys> = OnceLock::new();
    SEALER.get_or_init(|| LocalKeys::from_keys(&[("k2", [2; 32]), ("k1", [1; 32])]).expect("keys"))
}

fuzz_target!(|input: Input| {
    let sealer = sealer();
    // Arbitrary text almost never authenticates: if it does, the fuzzer has
    // forged AES-GCM, which is a finding either way.
    assert!(
        sealer
            .open(&SealedSecret(input.sealed), &input.item_key)
            .is_err()
    );

    if let Some((secret, item, at, flip)) = input.genuine {
        let sealed = sealer
            .seal(&Secret::new(secret.clone()), &item)
            .expect("seals");
        let opened = sealer.open(&sealed, &item).expect("a genuine value opens");
        assert_eq!(opened.expose(), secret);
        if input.item_key != item {
            assert!(
                sealer.open(&sealed, &input.item_key).is_err(),
                "opened for another item"
            );
        }
        let mut bytes = sealed.0.into_bytes();
        let at = usize::from(at) % bytes.len();
        bytes[at] ^= flip.max(1);
        // Any change opens nothing: base64url without padding is canonical
        // here, so no other text decodes to the same bytes.
        if let Ok(tampered) = String::from_utf8(bytes)
            && let Ok(opened) = sealer.open(&SealedSecret(tampered.clone()), &item)
        {
            panic!(
                "tampered value {tampered:?} opened as {:?}",
                opened.expose()
            );
        }
    }
});

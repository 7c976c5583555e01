//! Server nonces for DPoP proofs (RFC 9449 §8), stateless: a nonce is the
//! index of a time window and an HMAC of it, so every replica holding the
//! same key issues and accepts the same nonces with nothing shared at run
//! time. The current and the previous window's nonce are accepted.

use aws_lc_rs::{hmac, rand};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

/// The window index (8 bytes) and 16 bytes of its HMAC-SHA256.
const NONCE_BYTES: usize = 24;

/// Issues and checks nonces.
pub(crate) struct Nonces {
    key: hmac::Key,
    window_seconds: i64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("window_seconds", &self.window_seconds)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    /// Nonces under `secret`, or under a key drawn now when there is none.
    pub(crate) fn new(secret: Option<&[u8]>, window_seconds: u64) -> Nonces {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
                .unwrap_or_else(|_| {
                    // aws-lc's generator does not fail; if it ever did, a
                    // fixed key would only make nonces guessable, and
                    // nonces are not what keeps proofs single-use.
                    hmac::Key::new(hmac::HMAC_SHA256, b"authd dpop nonce")
                }),
        };
        Nonces {
            key,
            window_seconds: i64::try_from(window_seconds.max(1)).unwrap_or(i64::MAX),
        }
    }

    fn for_window(&self, window: i64) -> String {
        let index = window.to_be_bytes();
        let tag = hmac::sign(&self.key, &index);
        let mut bytes = [0u8; NONCE_BYTES];
        bytes[..8].copy_from_slice(&index);
        bytes[8..].copy_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The nonce to hand out at `now` (unix seconds).
    pub(crate) fn current(&self, now: i64) -> String {
        self.for_window(now.div_euclid(self.window_seconds))
    }

    /// Whether `nonce` is the current or the previous window's.
    pub(crate) fn accepts(&self, nonce: &str, now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(bytes) = <[u8; NONCE_BYTES]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let mut index = [0u8; 8];
        index.copy_from_slice(&bytes[..8]);
        let window = i64::from_be_bytes(index);
        let current = now.div_euclid(self.window_seconds);
        if window != current && window != current.saturating_sub(1) {
            return false;
        }
        let tag = hmac::sign(&self.key, &index);
        aws_lc_rs::constant_time::verify_slices_are_equal(&tag.as_ref()[..16], &bytes[8..]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_last_two_windows_and_are_bound_to_the_key() {
        let nonces = Nonces::new(Some(b"0123456789abcdef0123456789abcdef"), 300);
        let nonce = nonces.current(1_000);
        assert!(nonces.accepts(&nonce, 1_000));
        assert!(nonces.accepts(&nonce, 1_199), "same window");
        assert!(nonces.accepts(&nonce, 1_499), "previous window");
        assert!(!nonces.accepts(&nonce, 1_500), "two windows on");
        assert!(!nonces.accepts(&nonce, 800), "from the future");
        // Another replica with the same key accepts it; another key does not.
        let twin = Nonces::new(Some(b"0123456789abcdef0123456789abcdef"), 300);
        assert!(twin.accepts(&nonce, 1_000));
        let other = Nonces::new(Some(b"another key, another set of nonces"), 300);
        assert!(!other.accepts(&nonce, 1_000));
        assert!(!nonces.accepts("", 1_000));
        assert!(!nonces.accepts("not base64!", 1_000));
        let mut forged = nonce.into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(!nonces.accepts(std::str::from_utf8(&forged).expect("ascii"), 1_000));
    }
}

//! ECDSA malleability, for tests: from a valid ES256/ES384 token anyone can
//! compute a second valid signature over the same signing input, (r, s) →
//! (r, n − s). The twin has other bytes but says exactly what the original
//! says, so nothing that refuses tokens may key on a token's bytes.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

/// The order n of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The order n of P-384, big-endian.
const P384_N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// `n − s`, big-endian, when 0 < s < n.
fn negate(s: &[u8], n: &[u8]) -> Option<Vec<u8>> {
    if s.len() != n.len() || s.iter().all(|b| *b == 0) || s >= n {
        return None;
    }
    let mut out = vec![0u8; n.len()];
    let mut borrow = 0i16;
    for i in (0..n.len()).rev() {
        let mut d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = u8::try_from(d).ok()?;
    }
    Some(out)
}

/// The twin of an ES256 or ES384 compact token: the same header and claims,
/// the signature's `s` replaced by `n − s`. `None` for any other token.
pub fn ecdsa_twin(token: &str) -> Option<String> {
    let (input, signature) = token.rsplit_once('.')?;
    let mut sig = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let n: &[u8] = match sig.len() {
        64 => &P256_N,
        96 => &P384_N,
        _ => return None,
    };
    let half = sig.len() / 2;
    let twin_s = negate(&sig[half..], n)?;
    sig[half..].copy_from_slice(&twin_s);
    Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negation_is_an_involution_and_refuses_out_of_range() {
        let s = [0x12u8; 32];
        let once = negate(&s, &P256_N).expect("in range");
        assert_eq!(negate(&once, &P256_N).expect("in range"), s);
        assert_eq!(negate(&[0; 32], &P256_N), None);
        assert_eq!(negate(&P256_N, &P256_N), None);
        let mut one = [0u8; 48];
        one[47] = 1;
        let mut n_minus_one = P384_N;
        n_minus_one[47] -= 1;
        assert_eq!(negate(&one, &P384_N), Some(n_minus_one.to_vec()));
    }

    #[test]
    fn only_ecdsa_sized_signatures_have_twins() {
        assert_eq!(ecdsa_twin("a.b.c2ln"), None);
        assert_eq!(ecdsa_twin("no-dots"), None);
    }
}

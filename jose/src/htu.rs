//! The URI comparison of a DPoP proof's `htu` (RFC 9449 §4.3 item 9): both
//! sides without query and fragment, after the syntax-based and scheme-based
//! normalization of RFC 3986 §6.2.2–6.2.3 — scheme and host in lower case,
//! the scheme's default port removed, an empty path as `/`, dot segments
//! removed, percent-encoded unreserved characters decoded and other
//! percent-encodings in upper case.

use url::Url;

/// `uri` normalized for comparison: `scheme://host[:port]/path`, or `None`
/// when it is not an absolute `http` or `https` URI.
pub fn normalize(uri: &str) -> Option<String> {
    let parsed = Url::parse(uri).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    // `Url` lower-cases the scheme and host, drops the default port, removes
    // dot segments and writes an empty path as `/`.
    let host = parsed.host_str()?;
    let mut out = String::with_capacity(uri.len());
    out.push_str(parsed.scheme());
    out.push_str("://");
    out.push_str(host);
    if let Some(port) = parsed.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    normalize_percent(parsed.path(), &mut out);
    Some(out)
}

/// Whether `a` and `b` name the same target URI for DPoP.
pub fn same_target(a: &str, b: &str) -> bool {
    match (normalize(a), normalize(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Appends `path` with percent-encoded unreserved characters decoded and the
/// hex digits of the remaining escapes in upper case.
fn normalize_percent(path: &str, out: &mut String) {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            let byte = hi << 4 | lo;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
            continue;
        }
        // `Url` percent-encodes every non-ASCII byte, so the path is ASCII.
        out.push(char::from(bytes[i]));
        i += 1;
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_forms_are_the_same_target() {
        for (a, b) in [
            (
                "https://api.example.com/orders",
                "HTTPS://API.Example.COM/orders",
            ),
            (
                "https://api.example.com:443/orders",
                "https://api.example.com/orders",
            ),
            ("http://api.example.com:80/", "http://api.example.com"),
            (
                "https://api.example.com/orders?page=2",
                "https://api.example.com/orders",
            ),
            (
                "https://api.example.com/orders#top",
                "https://api.example.com/orders?x=1",
            ),
            (
                "https://api.example.com/a/./b/../c",
                "https://api.example.com/a/c",
            ),
            (
                "https://api.example.com/%7euser",
                "https://api.example.com/~user",
            ),
            (
                "https://api.example.com/a%2fb",
                "https://api.example.com/a%2Fb",
            ),
            (
                "https://api.example.com/auth.v1.AuthService/VerifyToken",
                "https://API.example.com:443/auth.v1.AuthService/VerifyToken?",
            ),
        ] {
            assert!(same_target(a, b), "{a} and {b}");
        }
    }

    #[test]
    fn different_targets_differ() {
        for (a, b) in [
            (
                "https://api.example.com/orders",
                "http://api.example.com/orders",
            ),
            (
                "https://api.example.com/orders",
                "https://api.example.com:8443/orders",
            ),
            (
                "https://api.example.com/orders",
                "https://api.example.com/Orders",
            ),
            (
                "https://api.example.com/orders",
                "https://api.example.com/orders/",
            ),
            (
                "https://api.example.com/a%2fb",
                "https://api.example.com/a/b",
            ),
            (
                "https://api.example.com/orders",
                "https://evil.example.com/orders",
            ),
            (
                "https://api.example.com/orders",
                "ftp://api.example.com/orders",
            ),
            ("https://api.example.com/orders", "/orders"),
            ("", ""),
        ] {
            assert!(!same_target(a, b), "{a} and {b}");
        }
    }
}

//! Writes the seed corpora, `corpus/<target>/`, from the fixture: tokens
//! signed with the fixed keys, key sets, discovery documents, configs, and
//! byte strings for the targets that decode their input with `arbitrary` or
//! the differential harness (all zeros is their valid token).
//!
//! `cargo run --example seeds` (in fuzz/; any toolchain).

use std::{fs, path::Path};

use authd_fuzz::{ISS, fixture, sample_tokens};
use serde_json::json;

fn write(target: &str, seeds: Vec<Vec<u8>>) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), seed)?;
    }
    println!("{target}: {} seeds", seeds.len());
    Ok(())
}

/// Pseudo-random bytes (xorshift), so that the seeds are the same each run.
fn noise(mut state: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let f = fixture();
    let tokens: Vec<Vec<u8>> = sample_tokens(f)
        .into_iter()
        .map(String::into_bytes)
        .collect();
    write("token_parse", tokens.clone())?;
    write("verify_bytes", tokens)?;

    let structured = |seed: u64| {
        let mut seeds = vec![Vec::new(), vec![0; 64], vec![0; 256]];
        seeds.extend((0..4).map(|i| noise(seed + i, 64 << i)));
        seeds
    };
    write("verify_structured", structured(1))?;
    write("sealed_open", structured(2))?;
    write("dpop_proof", structured(3))?;
    let mut differential = vec![vec![0u8; 16]];
    for field in [0usize, 2, 4, 7, 13, 14] {
        let mut bytes = vec![0u8; 16];
        bytes[field] = 3;
        differential.push(bytes);
    }
    write("differential", differential)?;

    let all_algorithms = |doc: serde_json::Value| {
        let mut bytes = vec![0xff, 0x01];
        bytes.extend(doc.to_string().into_bytes());
        bytes
    };
    let keys = f.jwks().to_vec();
    write(
        "jwks_document",
        vec![
            all_algorithms(json!({ "keys": keys })),
            all_algorithms(
                json!({ "keys": [keys[0], {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}] }),
            ),
            all_algorithms(
                json!({ "keys": [{"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"}, {"kty": "OKP", "crv": "Ed448", "x": "AA"}, 7] }),
            ),
            all_algorithms(
                json!({ "keys": [{"kty": "RSA", "alg": "PS256", "n": "!!", "e": "AQAB"}] }),
            ),
            vec![0x04, 0x00, b'{', b'}'],
        ],
    )?;

    let discovery = |issuer: &str| {
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{ISS}.well-known/jwks.json"),
            "userinfo_endpoint": format!("{ISS}userinfo"),
            "token_endpoint": format!("{ISS}oauth/token"),
            "revocation_endpoint": format!("{ISS}oauth/revoke"),
            "device_authorization_endpoint": format!("{ISS}oauth/device/code"),
            "scopes_supported": ["openid", "profile"],
        })
        .to_string()
        .into_bytes()
    };
    write(
        "discovery_document",
        vec![
            discovery(ISS),
            discovery("https://evil.example.com/"),
            format!(r#"{{"issuer":"{ISS}","jwks_uri":"not a url"}}"#).into_bytes(),
            format!(r#"{{"issuer":"{ISS}"}}"#).into_bytes(),
        ],
    )?;

    write(
        "config_load",
        vec![
            format!("[[issuers]]\nissuer = \"{ISS}\"\naudiences = [\"https://api.example.com\"]\n").into_bytes(),
            format!(
                "[server]\nlisten = \"0.0.0.0:50051\"\nthreads = 4\n\n[[issuers]]\nissuer = \"{ISS}\"\n\
                 audiences = [\"a\"]\nalgorithms = [\"RS256\", \"ES256\"]\nleeway_seconds = 10\n\
                 client_id = \"c\"\nclient_secret = {{ env = \"SECRET\" }}\n\n[verify]\nmax_token_bytes = 4096\n\n\
                 [store]\nkind = \"dynamodb\"\ntable = \"t\"\n\n[secrets]\nprimary_key_id = \"k1\"\n\
                 [[secrets.keys]]\nid = \"k1\"\nvalue = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n"
            )
            .into_bytes(),
            b"[server]\nthreads = 100000\n".to_vec(),
            b"[[issuers]]\nissuer = \"ftp://x/\"\naudiences = []\n".to_vec(),
            b"[log]\nformat = \"json\"\nfilter = \"debug\"\n[jwks]\nrefresh_interval_seconds = 0\n".to_vec(),
        ],
    )?;
    Ok(())
}

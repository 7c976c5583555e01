//! Issuers that misbehave, served by a small HTTP server of the test's own
//! on loopback, beside the real test issuer: a 10 MB key set, a key set of
//! 10,000 keys, a discovery document naming another issuer, and an issuer
//! that accepts the connection and never answers. authd refuses their tokens
//! as `UNAVAILABLE` (it cannot tell a new key from a forged one), stays
//! within its memory bound, says why in its log, and keeps serving the good
//! issuer's tokens.

use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use authd_tests::{AuthdProcess, Issuer};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tonic::Code;

/// How a hostile issuer answers.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Discovery is fine; the key set is 10 MB of JSON.
    HugeKeySet,
    /// Discovery is fine; the key set holds 10,000 keys.
    ManyKeys,
    /// Discovery names another issuer.
    DiscoveryElsewhere,
    /// Accepts connections and never answers.
    Silent,
}

/// Serves `behaviour` on a loopback port; returns the issuer URL.
async fn hostile(behaviour: Hostile) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let url = format!("http://{addr}/");
    let base = url.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            if matches!(behaviour, Hostile::Silent) {
                held.push(tcp); // never read, never answered
                continue;
            }
            let base = base.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = tcp.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let body = if path.ends_with("openid-configuration") {
                    let issuer = match behaviour {
                        Hostile::DiscoveryElsewhere => "https://someone-else.example/".to_owned(),
                        _ => base.clone(),
                    };
                    format!(r#"{{"issuer":"{issuer}","jwks_uri":"{base}jwks"}}"#)
                } else {
                    key_set(behaviour)
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

fn key_set(behaviour: Hostile) -> String {
    let key = |i: usize| {
        format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"k{i}","x":"{x}","y":"{x}"}}"#,
            x = "AA"
        )
    };
    match behaviour {
        Hostile::HugeKeySet => format!(r#"{{"keys":[],"padding":"{}"}}"#, "x".repeat(10 << 20)),
        Hostile::ManyKeys => {
            let keys: Vec<String> = (0..10_000).map(key).collect();
            format!(r#"{{"keys":[{}]}}"#, keys.join(","))
        }
        _ => r#"{"keys":[]}"#.to_owned(),
    }
}

/// A token naming `issuer` and kid `k1`; its signature is never reached.
fn token_of(issuer: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iss":"{issuer}","sub":"x","aud":"https://api.authd.test","exp":4000000000}}"#
    ));
    format!("{header}.{claims}.c2ln")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_issuers_cost_bounded_memory_and_never_stop_the_good_one() -> Result<()> {
    let good = Issuer::start().await?;
    let mut hostiles = Vec::new();
    for behaviour in [
        Hostile::HugeKeySet,
        Hostile::ManyKeys,
        Hostile::DiscoveryElsewhere,
        Hostile::Silent,
    ] {
        hostiles.push((behaviour, hostile(behaviour).await?));
    }
    let mut config = good.config_entry(&["RS256"]);
    for (_, url) in &hostiles {
        config.push_str(&format!(
            "[[issuers]]\nissuer = \"{url}\"\naudiences = [\"https://api.authd.test\"]\nalgorithms = [\"ES256\", \"RS256\"]\n"
        ));
    }
    config.push_str("[jwks]\nfetch_timeout_ms = 1000\nrequest_wait_ms = 500\nmin_refetch_interval_seconds = 0\n");
    let authd = AuthdProcess::start(&config).await?;
    let baseline = authd.rss_kib()?;
    let good_token = good.token(&[]).await?;
    let mut client = authd.client().await?;
    client.verify_token(&good_token, &[]).await?;

    for round in 0..3 {
        for (behaviour, url) in &hostiles {
            let started = std::time::Instant::now();
            let err = client
                .verify_token(&token_of(url), &[])
                .await
                .expect_err("no key can be had");
            assert_eq!(err.code(), Code::Unavailable, "{behaviour:?}: {err}");
            assert_eq!(
                err.reason().map(|r| r.as_str().to_owned()).as_deref(),
                Some("KEYS_UNAVAILABLE"),
                "{behaviour:?}"
            );
            // The caller waits at most about request_wait_ms, even on a
            // silent issuer.
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{behaviour:?} round {round}: {:?}",
                started.elapsed()
            );
            client.verify_token(&good_token, &[]).await?;
        }
    }
    let grown = authd.rss_kib()?.saturating_sub(baseline);
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB");
    let log = authd.log();
    for said in [
        "over the limit of 100",
        "larger than 1048576 bytes",
        "someone-else.example",
        "key set fetch",
    ] {
        assert!(log.contains(said), "the log does not say {said:?}:\n{log}");
    }
    Ok(())
}

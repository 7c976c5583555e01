//! authd behind a real Envoy: Envoy's ext_authz filter asks
//! `envoy.service.auth.v3.Authorization/Check` on authd's port before a
//! request reaches the upstream (which echoes the headers it got). Requests go
//! through Envoy over HTTP/1.1, HTTP/2 and gRPC; Envoy runs the README's
//! `deploy/envoy/envoy.yaml`.

use std::{collections::BTreeMap, net::SocketAddr};

use anyhow::{Context, Result};
use authd_proto::pb::{self, create_session_request::Grant, revoke_session_request::Target};
use authd_tests::{
    Authd, Issuer, REDIRECT_URI,
    envoy::{EchoUpstream, Envoy},
    run_grpcurl,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;

/// The headers the upstream saw.
type Seen = BTreeMap<String, Vec<String>>;

/// The two ways a client speaks HTTP to Envoy.
fn clients() -> Result<[(&'static str, reqwest::Client); 2]> {
    Ok([
        ("HTTP/1.1", reqwest::Client::builder().http1_only().build()?),
        (
            "HTTP/2",
            reqwest::Client::builder().http2_prior_knowledge().build()?,
        ),
    ])
}

struct Answer {
    status: StatusCode,
    version: reqwest::Version,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn seen(&self) -> Result<Seen> {
        serde_json::from_str(&self.body).with_context(|| format!("echo body: {}", self.body))
    }
}

async fn get(
    client: &reqwest::Client,
    envoy: &Envoy,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer> {
    let mut request = client.get(envoy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    Ok(Answer {
        status: response.status(),
        version: response.version(),
        headers: response.headers().clone(),
        body: response.text().await?,
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// authd (in-process, with `extra` config), the echo upstream and Envoy.
async fn stack(issuer: &Issuer, extra: &str) -> Result<(Authd, EchoUpstream, Envoy)> {
    let authd = Authd::start(&format!("{}{extra}", issuer.config_entry(&["RS256"]))).await?;
    let upstream = EchoUpstream::start().await?;
    let envoy = Envoy::start(authd.addr, upstream.addr).await?;
    Ok((authd, upstream, envoy))
}

#[tokio::test]
async fn a_valid_token_reaches_the_upstream_with_trusted_headers() -> Result<()> {
    let issuer = Issuer::start().await?;
    let (_authd, _upstream, envoy) = stack(
        &issuer,
        "[ext_authz]\nforward_claims = true\nstrip_authorization = true\n",
    )
    .await?;
    let token = issuer
        .token(&[("sub", "auth0|alice"), ("scope", "read write")])
        .await?;
    for (protocol, client) in clients()? {
        let answer = get(
            &client,
            &envoy,
            "/hello",
            &[
                ("authorization", &bearer(&token)),
                // Forged by the client: must not reach the upstream.
                ("x-authd-subject", "auth0|mallory"),
                ("x-authd-session-id", "forged-session"),
                ("x-authd-claims", "e30"),
            ],
        )
        .await?;
        assert_eq!(answer.status, StatusCode::OK, "{protocol}: {}", answer.body);
        if protocol == "HTTP/2" {
            assert_eq!(answer.version, reqwest::Version::HTTP_2);
        }
        let seen = answer.seen()?;
        let one = |name: &str| seen.get(name).cloned().unwrap_or_default();
        assert_eq!(
            one("x-authd-subject"),
            ["auth0|alice"],
            "{protocol}: {seen:?}"
        );
        assert_eq!(one("x-authd-scopes"), ["read write"], "{protocol}");
        assert_eq!(one("x-authd-issuer"), [issuer.url.as_str()], "{protocol}");
        assert!(
            !seen.contains_key("x-authd-session-id"),
            "{protocol}: a forged header the token does not back is removed: {seen:?}"
        );
        assert!(
            !seen.contains_key("authorization"),
            "{protocol}: strip_authorization"
        );
        let claims = one("x-authd-claims");
        assert_eq!(claims.len(), 1, "{protocol}: {seen:?}");
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&claims[0])?)?;
        assert_eq!(claims["sub"], "auth0|alice", "{protocol}");
        assert_eq!(claims["iss"], issuer.url.as_str(), "{protocol}");
    }
    Ok(())
}

#[tokio::test]
async fn refusals_follow_rfc_6750() -> Result<()> {
    let issuer = Issuer::start().await?;
    let (_authd, _upstream, envoy) = stack(&issuer, "[ext_authz]\nrealm = \"api\"\n").await?;
    let wrong_audience = issuer.token(&[("audience", "https://other.test")]).await?;
    let expired = issuer.token(&[("expires_in", "-600")]).await?;
    let reader = issuer.token(&[("scope", "read")]).await?;
    let admin = issuer.token(&[("scope", "read admin:all")]).await?;
    for (protocol, client) in clients()? {
        let missing = get(&client, &envoy, "/hello", &[]).await?;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{protocol}");
        assert_eq!(
            missing.header("www-authenticate"),
            Some("Bearer realm=\"api\""),
            "{protocol}: no error code without a token"
        );
        assert_eq!(missing.header("x-authd-reason"), Some("TOKEN_MISSING"));
        assert_eq!(missing.json()["reason"], "TOKEN_MISSING", "{protocol}");

        for (token, reason) in [
            (&wrong_audience, "WRONG_AUDIENCE"),
            (&expired, "TOKEN_EXPIRED"),
            (&"not.a.token".to_owned(), "MALFORMED_TOKEN"),
        ] {
            let answer = get(
                &client,
                &envoy,
                "/hello",
                &[("authorization", &bearer(token))],
            )
            .await?;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{protocol} {reason}"
            );
            let challenge = answer.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with(
                    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\""
                ),
                "{protocol} {reason}: {challenge}"
            );
            assert_eq!(answer.header("x-authd-reason"), Some(reason), "{protocol}");
            assert_eq!(answer.json()["error"], "invalid_token", "{protocol}");
        }

        let forbidden = get(
            &client,
            &envoy,
            "/admin/users",
            &[("authorization", &bearer(&reader))],
        )
        .await?;
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "{protocol}");
        let challenge = forbidden.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.ends_with("scope=\"admin:all\""),
            "{protocol}: {challenge}"
        );
        assert_eq!(
            forbidden.header("x-authd-reason"),
            Some("INSUFFICIENT_SCOPE")
        );
        let allowed = get(
            &client,
            &envoy,
            "/admin/users",
            &[("authorization", &bearer(&admin))],
        )
        .await?;
        assert_eq!(
            allowed.status,
            StatusCode::OK,
            "{protocol}: {}",
            allowed.body
        );

        // Two credentials: Envoy joins the headers; authd refuses the request.
        let two = get(
            &client,
            &envoy,
            "/hello",
            &[
                ("authorization", &bearer(&reader)),
                ("authorization", &bearer(&admin)),
            ],
        )
        .await?;
        assert_eq!(two.status, StatusCode::BAD_REQUEST, "{protocol}");
        assert_eq!(two.json()["error"], "invalid_request", "{protocol}");
        let in_query = get(
            &client,
            &envoy,
            &format!("/hello?access_token={reader}"),
            &[("authorization", &bearer(&reader))],
        )
        .await?;
        assert_eq!(in_query.status, StatusCode::BAD_REQUEST, "{protocol}");

        // allow_anonymous on /public: no token passes, without identity; a
        // bad token still does not.
        let anonymous = get(
            &client,
            &envoy,
            "/public/x",
            &[("x-authd-subject", "forged")],
        )
        .await?;
        assert_eq!(anonymous.status, StatusCode::OK, "{protocol}");
        assert!(
            !anonymous.seen()?.contains_key("x-authd-subject"),
            "{protocol}"
        );
        let bad = get(
            &client,
            &envoy,
            "/public/x",
            &[("authorization", &bearer(&expired))],
        )
        .await?;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{protocol}");
    }
    Ok(())
}

#[tokio::test]
async fn a_session_revoked_through_authd_is_refused_by_envoy() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let upstream = EchoUpstream::start().await?;
    let envoy = Envoy::start(authd.addr, upstream.addr).await?;
    let mut client = authd.client().await?.raw().clone();
    let (code, verifier) = issuer.authorize("alice", "n-envoy").await?;
    let session = client
        .create_session(pb::CreateSessionRequest {
            grant: Some(Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
                code,
                redirect_uri: REDIRECT_URI.to_owned(),
                code_verifier: verifier,
                nonce: "n-envoy".to_owned(),
            })),
            issuer: String::new(),
        })
        .await?
        .into_inner()
        .session
        .context("session")?;
    let token = bearer(&session.access_token);
    let (_, http) = &clients()?[0];

    let before = get(http, &envoy, "/hello", &[("authorization", &token)]).await?;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    // The token's own `sid` claim (the issuer's session), not authd's id.
    let payload = session
        .access_token
        .split('.')
        .nth(1)
        .context("a JWT payload")?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let sid = claims["sid"].as_str().context("the token has a sid")?;
    assert_eq!(before.seen()?["x-authd-session-id"], [sid]);

    let revoked = client
        .revoke_session(pb::RevokeSessionRequest {
            target: Some(Target::SessionHandle(session.session_handle)),
        })
        .await?
        .into_inner()
        .revoked_sessions;
    assert_eq!(revoked, 1);
    let after = get(http, &envoy, "/hello", &[("authorization", &token)]).await?;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
    assert_eq!(after.header("x-authd-reason"), Some("SESSION_REVOKED"));
    Ok(())
}

#[tokio::test]
async fn envoy_answers_503_when_authd_cannot_decide_or_is_down() -> Result<()> {
    // No keys: the issuer is gone before authd starts.
    let issuer = Issuer::start().await?;
    let token = issuer.token(&[]).await?;
    let config = issuer.config_entry(&["RS256"]);
    issuer.stop().await?;
    let authd = Authd::start(&config).await?;
    let upstream = EchoUpstream::start().await?;
    let envoy = Envoy::start(authd.addr, upstream.addr).await?;
    for (protocol, client) in clients()? {
        let answer = get(
            &client,
            &envoy,
            "/hello",
            &[("authorization", &bearer(&token))],
        )
        .await?;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{protocol}: {}",
            answer.body
        );
        assert_eq!(
            answer.header("x-authd-reason"),
            Some("KEYS_UNAVAILABLE"),
            "{protocol}"
        );
    }

    // authd stopped: Envoy cannot reach it; failure_mode_allow is false.
    authd.stop().await?;
    for (protocol, client) in clients()? {
        let answer = get(
            &client,
            &envoy,
            "/hello",
            &[("authorization", &bearer(&token))],
        )
        .await?;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{protocol}");
        assert!(
            answer.body.is_empty() || !answer.body.contains("x-authd"),
            "the upstream was not reached: {}",
            answer.body
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_grpc_call_through_envoy_needs_a_token() -> Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let issuer = Issuer::start().await?;
    let (_authd, _upstream, envoy) = stack(&issuer, "").await?;
    let channel = tonic::transport::Endpoint::from_shared(envoy.url(""))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);

    let refused = health
        .check(HealthCheckRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    let token = issuer.token(&[]).await?;
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("authorization", bearer(&token).parse()?);
    let answer = health.check(request).await?.into_inner();
    assert_eq!(answer.status, 1, "SERVING, from authd behind Envoy");
    Ok(())
}

#[tokio::test]
async fn grpcurl_lists_and_calls_check() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.config_entry(&["RS256"])).await?;
    let addr: SocketAddr = authd.addr;
    let addr = addr.to_string();
    let list = run_grpcurl(&["-plaintext", &addr, "list"]).await?;
    assert_eq!(list.code, Some(0), "{list:?}");
    assert!(
        list.stdout
            .lines()
            .any(|l| l == "envoy.service.auth.v3.Authorization"),
        "{}",
        list.stdout
    );
    let describe = run_grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "envoy.service.auth.v3.CheckResponse",
    ])
    .await?;
    assert_eq!(describe.code, Some(0), "{describe:?}");
    assert!(
        describe.stdout.contains("error_response"),
        "{}",
        describe.stdout
    );

    let token = issuer.token(&[("sub", "auth0|grpcurl")]).await?;
    let request = serde_json::json!({"attributes": {"request": {"http": {
        "path": "/x", "headers": {"authorization": bearer(&token)}}}}});
    let check = run_grpcurl(&[
        "-plaintext",
        "-d",
        &request.to_string(),
        &addr,
        "envoy.service.auth.v3.Authorization/Check",
    ])
    .await?;
    assert_eq!(check.code, Some(0), "{check:?}");
    let answer: Value = serde_json::from_str(&check.stdout)?;
    let headers = answer["okResponse"]["headers"]
        .as_array()
        .context("ok_response headers")?;
    assert!(
        headers
            .iter()
            .any(|h| h["header"]["key"] == "x-authd-subject"
                && h["header"]["value"] == "auth0|grpcurl"),
        "{answer}"
    );
    assert_eq!(answer["dynamicMetadata"]["subject"], "auth0|grpcurl");

    let denied = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"attributes":{"request":{"http":{"headers":{}}}}}"#,
        &addr,
        "envoy.service.auth.v3.Authorization/Check",
    ])
    .await?;
    assert_eq!(denied.code, Some(0), "{denied:?}");
    let denied: Value = serde_json::from_str(&denied.stdout)?;
    assert_eq!(denied["deniedResponse"]["status"]["code"], "Unauthorized");
    Ok(())
}

#[test]
fn the_readme_snippet_is_the_tested_config() -> Result<()> {
    let readme = std::fs::read_to_string(authd_tests::workspace().join("README.md"))?;
    let section = readme
        .split("## Envoy and meshes")
        .nth(1)
        .context("README has an Envoy section")?;
    let snippet = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .context("a yaml block")?;
    let trimmed = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    };
    let snippet = trimmed(snippet);
    let config = trimmed(&authd_tests::envoy::envoy_config_template()?);
    assert!(snippet.len() >= 5, "{snippet:?}");
    assert!(
        config
            .windows(snippet.len())
            .any(|w| w == snippet.as_slice()),
        "deploy/envoy/envoy.yaml must contain the README's snippet line for line: {snippet:#?}"
    );
    Ok(())
}

// === sender-constrained tokens at Check ===

/// authd and Envoy with `dpop_hosts` naming Envoy's own address, as a
/// client addresses it; Envoy on TLS requiring client certificates when
/// `mtls` is given.
async fn bound_stack(
    issuer: &Issuer,
    mtls: Option<(&authd_tests::pki::Leaf, &std::path::Path)>,
) -> Result<(Authd, EchoUpstream, Envoy)> {
    let port = authd_tests::free_port()?;
    let authd = Authd::start(&format!(
        "{}[ext_authz]\ndpop_hosts = [\"127.0.0.1:{port}\"]\n",
        issuer.config_entry(&["RS256"])
    ))
    .await?;
    let upstream = EchoUpstream::start().await?;
    let envoy = Envoy::start_on(port, authd.addr, upstream.addr, mtls).await?;
    Ok((authd, upstream, envoy))
}

#[tokio::test]
async fn a_dpop_bound_token_passes_envoy_only_with_a_fresh_proof_for_that_request() -> Result<()> {
    let issuer = Issuer::start().await?;
    let (_authd, _upstream, envoy) = bound_stack(&issuer, None).await?;
    let key = authd_tests::dpop::DpopKey::generate()?;
    let token = issuer.token(&[("claims", &key.cnf_claims()?)]).await?;
    let htu = envoy.url("/orders");
    let dpop = format!("DPoP {token}");
    let client = reqwest::Client::new();
    let reason = |answer: &Answer| {
        answer
            .header("x-authd-reason")
            .unwrap_or_default()
            .to_owned()
    };

    // Stolen and sent as a bearer token: refused, with a Bearer challenge.
    let stolen = get(
        &client,
        &envoy,
        "/orders",
        &[("authorization", &bearer(&token))],
    )
    .await?;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED, "{}", stolen.body);
    assert_eq!(reason(&stolen), "TOKEN_BINDING_MISMATCH");
    assert!(
        stolen
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer ")),
        "{:?}",
        stolen.headers
    );
    // The DPoP scheme without a proof.
    let bare = get(&client, &envoy, "/orders", &[("authorization", &dpop)]).await?;
    assert_eq!(reason(&bare), "TOKEN_BINDING_MISMATCH");

    // With a fresh proof for this request (the query is not part of htu).
    let proof = key.proof("GET", &htu, &token);
    let ok = get(
        &client,
        &envoy,
        "/orders?page=2",
        &[("authorization", &dpop), ("dpop", &proof)],
    )
    .await?;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.seen()?["x-authd-subject"].len(), 1);

    // The same proof again: a replay.
    let again = get(
        &client,
        &envoy,
        "/orders",
        &[("authorization", &dpop), ("dpop", &proof)],
    )
    .await?;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&again), "DPOP_PROOF_REPLAYED");
    let challenge = again
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("DPoP ")
            && challenge.contains("error=\"invalid_dpop_proof\"")
            && challenge.contains("algs=\""),
        "{challenge}"
    );

    // A proof for another path, another method, or another host named in
    // X-Forwarded-Host (never trusted), and two proofs at once.
    let cases = [
        ("/admin", key.proof("GET", &htu, &token), vec![]),
        ("/orders", key.proof("POST", &htu, &token), vec![]),
        (
            "/orders",
            key.proof("GET", "http://api.example.com/orders", &token),
            vec![
                ("x-forwarded-host", "api.example.com"),
                ("x-forwarded-proto", "http"),
            ],
        ),
    ];
    for (path, proof, extra) in cases {
        let mut headers = vec![("authorization", dpop.as_str()), ("dpop", proof.as_str())];
        headers.extend(extra);
        let refused = get(&client, &envoy, path, &headers).await?;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            reason(&refused),
            "DPOP_PROOF_INVALID",
            "{path}: {}",
            refused.body
        );
    }
    let first = key.proof("GET", &htu, &token);
    let second = key.proof("GET", &htu, &token);
    let two = client
        .get(envoy.url("/orders"))
        .header("authorization", &dpop)
        .header("dpop", &first)
        .header("dpop", &second)
        .send()
        .await?;
    assert_eq!(two.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        two.headers()
            .get("x-authd-reason")
            .and_then(|v| v.to_str().ok()),
        Some("DPOP_PROOF_INVALID")
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_bound_token_passes_envoy_only_with_that_client_certificate() -> Result<()> {
    use authd_tests::pki::{Ca, Names};
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    let dir = tempfile::tempdir()?;
    let ca = Ca::new("envoy test CA")?;
    let ca_file = ca.write(dir.path(), "ca")?;
    let server = ca.leaf(dir.path(), "envoy", Names::dns(&["localhost", "127.0.0.1"]))?;
    let alice = ca.leaf(dir.path(), "alice", Names::spiffe("spiffe://test/alice"))?;
    let mallory = ca.leaf(
        dir.path(),
        "mallory",
        Names::spiffe("spiffe://test/mallory"),
    )?;
    let issuer = Issuer::start().await?;
    let (_authd, _upstream, envoy) = bound_stack(&issuer, Some((&server, &ca_file))).await?;

    let der = CertificateDer::from_pem_slice(alice.cert_pem.as_bytes())?;
    let cnf = serde_json::json!({"cnf": {"x5t#S256": authd_tests::dpop::x5t_s256(&der)}});
    let token = issuer.token(&[("claims", &cnf.to_string())]).await?;
    let client_of = |leaf: &authd_tests::pki::Leaf| -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes())?)
            .identity(reqwest::Identity::from_pem(
                format!("{}{}", leaf.cert_pem, leaf.key_pem).as_bytes(),
            )?)
            .build()?)
    };
    let url = format!("https://localhost:{}/orders", envoy.addr.port());
    for (who, leaf, expected, reason) in [
        ("alice", &alice, StatusCode::OK, None),
        (
            "mallory",
            &mallory,
            StatusCode::UNAUTHORIZED,
            Some("TOKEN_BINDING_MISMATCH"),
        ),
    ] {
        let answer = client_of(leaf)?
            .get(&url)
            .header("authorization", bearer(&token))
            .send()
            .await?;
        assert_eq!(answer.status(), expected, "{who}");
        assert_eq!(
            answer
                .headers()
                .get("x-authd-reason")
                .and_then(|v| v.to_str().ok()),
            reason,
            "{who}"
        );
    }
    Ok(())
}

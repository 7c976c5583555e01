//! The Connect protocol and gRPC-Web on authd's port, against the real
//! binary: JSON and binary unary calls over HTTP/1.1 keep-alive and HTTP/2
//! answer what gRPC answers, with the same reasons; the server-streaming
//! WatchRevocations; gRPC-Web; bounds (declared and streamed body length,
//! JSON depth, unknown fields, compression, no GET); HTTP/1.1 abuse (slow
//! request heads, idle keep-alive connections, never-ending bodies, a flood
//! of small requests, pipelining, `max_connections`); the OpenAPI document
//! current, valid and true of a live authd (schemathesis); and the README's
//! curl walkthrough run as written.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use authd_tests::{AuthdProcess, Issuer, authd_binary, free_port, wait_for_port, workspace};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use prost::Message;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
};

const VERIFY: &str = "/auth.v1.AuthService/VerifyToken";

async fn setup(extra: &str) -> Result<(Issuer, AuthdProcess)> {
    let issuer = Issuer::start().await?;
    let authd = AuthdProcess::start(&format!("{}{extra}", issuer.config_entry(&["RS256"]))).await?;
    Ok((issuer, authd))
}

fn http1() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().http1_only().build()?)
}

fn http2() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().http2_prior_knowledge().build()?)
}

/// A Connect JSON call: the HTTP status and the JSON answer.
async fn call(
    client: &reqwest::Client,
    authd: &AuthdProcess,
    path: &str,
    body: &Value,
) -> Result<(u16, Value)> {
    let response = client
        .post(format!("http://{}{path}", authd.addr))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let json = serde_json::from_str(&text).with_context(|| format!("{status}: {text}"))?;
    Ok((status, json))
}

/// The ErrorInfo reason of a Connect error body, from its `debug` form.
fn reason(error: &Value) -> &str {
    error["details"][0]["debug"]["reason"]
        .as_str()
        .unwrap_or_default()
}

/// The reason gRPC gives for the same VerifyToken call.
async fn grpc_reason(authd: &AuthdProcess, token: &str, scopes: &[&str]) -> Result<String> {
    let mut client = authd.client().await?;
    match client.verify_token(token, scopes).await {
        Ok(_) => Ok("OK".to_owned()),
        Err(error) => Ok(format!("{:?}", error.reason().context("a reason")?)),
    }
}

#[tokio::test]
async fn connect_json_and_binary_answer_what_grpc_answers_over_both_http_versions() -> Result<()> {
    let (issuer, authd) = setup("").await?;
    let token = issuer
        .token(&[("scope", "read:orders"), ("sub", "auth0|carol")])
        .await?;
    let expired = issuer.token(&[("expires_in", "-300")]).await?;
    for (name, client) in [("HTTP/1.1", http1()?), ("HTTP/2", http2()?)] {
        let (status, body) = call(
            &client,
            &authd,
            VERIFY,
            &json!({"token": token, "requiredScopes": ["read:orders"]}),
        )
        .await?;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["subject"], "auth0|carol", "{name}");
        assert!(body["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')));
        // The proto field name is the JSON mapping's too.
        let (status, _) = call(
            &client,
            &authd,
            VERIFY,
            &json!({"token": token, "required_scopes": ["read:orders"]}),
        )
        .await?;
        assert_eq!(status, 200, "{name}");

        for (case, request, http, code, why) in [
            (
                "expired",
                json!({"token": expired}),
                401,
                "unauthenticated",
                "TOKEN_EXPIRED",
            ),
            (
                "missing scope",
                json!({"token": token, "requiredScopes": ["write:orders"]}),
                403,
                "permission_denied",
                "INSUFFICIENT_SCOPE",
            ),
            (
                "no token",
                json!({}),
                400,
                "invalid_argument",
                "TOKEN_MISSING",
            ),
            (
                "unknown field",
                json!({"token": token, "tokn": "x"}),
                400,
                "invalid_argument",
                "MALFORMED_REQUEST",
            ),
            (
                "wrong type",
                json!({"token": 7}),
                400,
                "invalid_argument",
                "MALFORMED_REQUEST",
            ),
        ] {
            let (status, body) = call(&client, &authd, VERIFY, &request).await?;
            assert_eq!(status, http, "{name} {case}: {body}");
            assert_eq!(body["code"], code, "{name} {case}");
            assert_eq!(reason(&body), why, "{name} {case}: {body}");
            assert_eq!(body["details"][0]["type"], "google.rpc.ErrorInfo");
            assert_eq!(body["details"][0]["debug"]["domain"], "authd");
        }
        // The same reasons as gRPC, for the same tokens.
        let (_, body) = call(&client, &authd, VERIFY, &json!({"token": expired})).await?;
        assert_eq!(grpc_reason(&authd, &expired, &[]).await?, "TokenExpired");
        assert_eq!(reason(&body), "TOKEN_EXPIRED");

        // application/proto: the binary message both ways.
        let request = authd_proto::pb::VerifyTokenRequest {
            token: token.clone(),
            ..Default::default()
        };
        let response = client
            .post(format!("http://{}{VERIFY}", authd.addr))
            .header("content-type", "application/proto")
            .body(request.encode_to_vec())
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/proto",
            "{name}"
        );
        let answer = authd_proto::pb::VerifyTokenResponse::decode(response.bytes().await?)?;
        assert_eq!(answer.subject, "auth0|carol");
        let garbage = client
            .post(format!("http://{}{VERIFY}", authd.addr))
            .header("content-type", "application/proto")
            .body(vec![0xff, 0xff, 0xff])
            .send()
            .await?;
        assert_eq!(garbage.status(), 400, "{name}");
        assert_eq!(reason(&garbage.json::<Value>().await?), "MALFORMED_REQUEST");
    }
    Ok(())
}

/// Each worker remembers the JSON of the `VerifyToken` answers it wrote
/// (`connect/memo.rs`): tokens asked in turn, many times over one
/// connection, each get their own answer, the same every time.
#[tokio::test]
async fn repeated_tokens_in_turn_each_get_their_own_json_answer() -> Result<()> {
    let (issuer, authd) = setup("").await?;
    let mut tokens = Vec::new();
    for user in ["alice", "bob", "carol", "dave"] {
        let sub = format!("auth0|{user}");
        let token = issuer
            .token(&[("sub", sub.as_str()), ("scope", "read:orders")])
            .await?;
        tokens.push((sub, token));
    }
    for (name, client) in [("HTTP/1.1", http1()?), ("HTTP/2", http2()?)] {
        let mut first: Vec<Option<Value>> = vec![None; tokens.len()];
        for round in 0..5 {
            for (i, (sub, token)) in tokens.iter().enumerate() {
                let (status, body) =
                    call(&client, &authd, VERIFY, &json!({"token": token})).await?;
                assert_eq!(status, 200, "{name} {sub}: {body}");
                assert_eq!(body["subject"], sub.as_str(), "{name} round {round}");
                let kept = first[i].get_or_insert_with(|| body.clone());
                assert_eq!(*kept, body, "{name} {sub}, round {round}");
            }
        }
        // Answers differ by token, not only by subject.
        assert_ne!(first[0], first[1]);
    }
    Ok(())
}

#[tokio::test]
async fn bodies_depth_compression_methods_and_deadlines_are_bounded() -> Result<()> {
    let (issuer, authd) = setup("").await?;
    let token = issuer.token(&[]).await?;
    let client = http1()?;
    let url = format!("http://{}{VERIFY}", authd.addr);
    let json_call = |body: Vec<u8>| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };

    // Declared over the limit: refused before the body is read.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(authd.addr).await?;
    tcp.write_all(
        format!(
            "POST {VERIFY} HTTP/1.1\r\nhost: authd\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await?;
    let head = read_head(&mut tcp, Duration::from_secs(5)).await?;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.contains("REQUEST_TOO_LARGE"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Streamed (chunked) past the limit: refused as soon as it passes, the
    // rest never read.
    let mut tcp = TcpStream::connect(authd.addr).await?;
    tcp.write_all(
        format!("POST {VERIFY} HTTP/1.1\r\nhost: authd\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    // 40 KiB, past the 32 KiB of limits.max_verify_message_bytes.
    for _ in 0..40 {
        let chunk = " ".repeat(1024);
        if tcp
            .write_all(format!("400\r\n{chunk}\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let head = read_head(&mut tcp, Duration::from_secs(5)).await?;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.contains("REQUEST_TOO_LARGE"), "{head}");

    // Nested deeper than the bound, though small.
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let refused = json_call(format!(r#"{{"token":{deep}}}"#).into_bytes())
        .send()
        .await?;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await?;
    assert_eq!(reason(&body), "MALFORMED_REQUEST");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deeper")
    );

    // gzip is read, bounded by the limit decompressed; other encodings are
    // unimplemented.
    let gzip = |data: &[u8]| -> Result<Vec<u8>> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data)?;
        Ok(encoder.finish()?)
    };
    let zipped = json_call(gzip(format!(r#"{{"token":"{token}"}}"#).as_bytes())?)
        .header("content-encoding", "gzip")
        .send()
        .await?;
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["accept-encoding"], "gzip");
    // 20 MB of spaces, 19 KiB compressed: under the limit on the wire, far
    // over it once opened.
    let bomb = json_call(gzip(&vec![b' '; 20_000_000])?)
        .header("content-encoding", "gzip")
        .send()
        .await?;
    assert_eq!(bomb.status(), 400);
    assert_eq!(reason(&bomb.json().await?), "REQUEST_TOO_LARGE");
    let brotli = json_call(br#"{"token":"x"}"#.to_vec())
        .header("content-encoding", "br")
        .send()
        .await?;
    assert_eq!(brotli.status(), 501);
    assert_eq!(brotli.headers()["accept-encoding"], "gzip");
    assert_eq!(brotli.json::<Value>().await?["code"], "unimplemented");

    // No Connect GET: a token never travels in a URL.
    let get = client
        .get(format!("{url}?encoding=json&message=%7B%7D"))
        .send()
        .await?;
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");

    // An unknown content type: 415, with what the RPC takes.
    let text = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await?;
    assert_eq!(text.status(), 415);
    assert!(
        text.headers()["accept-post"]
            .to_str()?
            .contains("application/json")
    );

    // Connect-Timeout-Ms: malformed refused; a generous one honoured.
    for bad in ["0", "-5", "12345678901", "soon"] {
        let refused = json_call(format!(r#"{{"token":"{token}"}}"#).into_bytes())
            .header("connect-timeout-ms", bad)
            .send()
            .await?;
        assert_eq!(refused.status(), 400, "{bad}");
    }
    let fine = json_call(format!(r#"{{"token":"{token}"}}"#).into_bytes())
        .header("connect-timeout-ms", "5000")
        .send()
        .await?;
    assert_eq!(fine.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_deadline_from_connect_timeout_ms_cuts_a_slow_call() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = AuthdProcess::start(&issuer.sessions_config("")).await?;
    // StartDeviceLogin asks the issuer, which is made to answer in 5 s.
    issuer
        .control(
            "fail",
            json!({"endpoint": "device", "delay_ms": 5000, "times": 1}),
        )
        .await?;
    let started = Instant::now();
    let (status, body) = {
        let response = http1()?
            .post(format!(
                "http://{}/auth.v1.AuthService/StartDeviceLogin",
                authd.addr
            ))
            .header("content-type", "application/json")
            .header("connect-timeout-ms", "300")
            .body(json!({"scopes": ["read:orders"]}).to_string())
            .send()
            .await?;
        (response.status().as_u16(), response.json::<Value>().await?)
    };
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "deadline_exceeded");
    assert_eq!(reason(&body), "DEADLINE_EXCEEDED");
    assert!(
        took < Duration::from_secs(3),
        "cut at the deadline: {took:?}"
    );
    Ok(())
}

/// Reads an HTTP/1.1 answer's head and what arrived of its body.
async fn read_head(tcp: &mut TcpStream, within: Duration) -> Result<String> {
    let mut buf = vec![0u8; 16384];
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let left = deadline - Instant::now();
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length {
                        return Ok(text.into_owned());
                    }
                }
            }
            // Reset by authd: the connection is closed.
            Ok(Err(_)) => break,
        }
    }
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

/// A Connect envelope.
fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(flags);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(message);
    out.freeze()
}

/// Reads the next Connect envelope of a streaming answer.
async fn next_envelope(
    response: &mut reqwest::Response,
    buf: &mut BytesMut,
) -> Result<(u8, Value)> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() >= 5 + len {
                    let flags = buf[0];
                    let message = buf.split_to(5 + len).split_off(5);
                    return Ok((flags, serde_json::from_slice(&message)?));
                }
            }
            match response.chunk().await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => bail!("the stream ended"),
            }
        }
    })
    .await?
}

#[tokio::test]
async fn watch_revocations_streams_as_connect_json_and_sees_a_revocation() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd =
        AuthdProcess::start(&issuer.sessions_config("[watch]\nheartbeat_ms = 200\n")).await?;
    let trusted = issuer
        .token(&[("permissions", "revocations:watch sessions:revoke")])
        .await?;
    let watch_url = format!("http://{}/auth.v1.AuthService/WatchRevocations", authd.addr);
    // The caller policy is gRPC's: an anonymous watcher is refused.
    let anonymous = http1()?
        .post(&watch_url)
        .header("content-type", "application/connect+json")
        .body(envelope(0, b"{}"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 200);
    let bytes = anonymous.bytes().await?;
    let end: Value = serde_json::from_slice(&bytes[5..])?;
    assert_eq!(
        (bytes[0], reason(&end["error"])),
        (0x02, "CALLER_NOT_TRUSTED")
    );

    for (name, client, user) in [
        ("HTTP/1.1", http1()?, "auth0|erin"),
        ("HTTP/2", http2()?, "auth0|frank"),
    ] {
        let mut response = client
            .post(&watch_url)
            .header("content-type", "application/connect+json")
            .header("authorization", format!("Bearer {trusted}"))
            .body(envelope(0, b"{}"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/connect+json"
        );
        let mut buf = BytesMut::new();
        let (flags, first) = next_envelope(&mut response, &mut buf).await?;
        assert_eq!(flags, 0, "{name}: a message, not the end: {first}");
        assert!(first["cursor"].is_string(), "{name}: {first}");
        // A revocation made over Connect reaches the Connect watcher.
        let (status, revoked) = {
            let answer = client
                .post(format!(
                    "http://{}/auth.v1.AuthService/RevokeSession",
                    authd.addr
                ))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {trusted}"))
                .body(json!({"userId": user}).to_string())
                .send()
                .await?;
            (answer.status().as_u16(), answer.text().await?)
        };
        assert_eq!(status, 200, "{name}: {revoked}");
        let mut seen = false;
        for _ in 0..50 {
            let (flags, message) = next_envelope(&mut response, &mut buf).await?;
            assert_eq!(flags, 0, "{name}: {message}");
            if message["revocation"]["kind"] == "REVOCATION_KIND_SUBJECT"
                && message.to_string().contains(user)
            {
                seen = true;
                break;
            }
        }
        assert!(seen, "{name}: the watcher saw {user}'s revocation");
    }

    // A malformed request message: the stream ends at once with the error
    // in its last envelope (HTTP 200, as Connect streams answer).
    let response = http1()?
        .post(format!(
            "http://{}/auth.v1.AuthService/WatchRevocations",
            authd.addr
        ))
        .header("content-type", "application/connect+json")
        .body(envelope(0, br#"{"nope":1}"#))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await?;
    assert_eq!(bytes[0], 0x02, "the end-of-stream flag");
    let end: Value = serde_json::from_slice(&bytes[5..])?;
    assert_eq!(end["error"]["code"], "invalid_argument");
    assert_eq!(reason(&end["error"]), "MALFORMED_REQUEST");
    // A unary content type on a streaming RPC is refused.
    let wrong = http1()?
        .post(format!(
            "http://{}/auth.v1.AuthService/WatchRevocations",
            authd.addr
        ))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(wrong.status(), 415);
    Ok(())
}

#[tokio::test]
async fn grpc_web_over_http1_answers_with_trailers_in_the_body() -> Result<()> {
    let (issuer, authd) = setup("").await?;
    let token = issuer.token(&[("sub", "auth0|dave")]).await?;
    let client = http1()?;
    let request = authd_proto::pb::VerifyTokenRequest {
        token,
        ..Default::default()
    };
    for (content_type, refused) in [
        ("application/grpc-web+proto", false),
        ("application/grpc-web", true),
    ] {
        let message = if refused {
            authd_proto::pb::VerifyTokenRequest {
                token: "not-a-jwt".to_owned(),
                ..Default::default()
            }
            .encode_to_vec()
        } else {
            request.encode_to_vec()
        };
        let response = client
            .post(format!("http://{}{VERIFY}", authd.addr))
            .header("content-type", content_type)
            .header("x-grpc-web", "1")
            .body(envelope(0, &message))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let mut body = BytesMut::from(response.bytes().await?);
        let mut answer = None;
        // A trailers-only answer carries its status in the headers.
        let mut trailers = String::new();
        for (name, value) in &headers {
            if name.as_str().starts_with("grpc-") {
                trailers.push_str(&format!("{}:{}\r\n", name, value.to_str()?));
            }
        }
        while body.len() >= 5 {
            let flags = body[0];
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            let frame = body.split_to(5 + len).split_off(5);
            if flags & 0x80 != 0 {
                trailers.push_str(&String::from_utf8_lossy(&frame));
            } else {
                answer = Some(authd_proto::pb::VerifyTokenResponse::decode(
                    frame.freeze(),
                )?);
            }
        }
        if refused {
            assert!(
                trailers.contains("grpc-status:16"),
                "{content_type}: {trailers:?}"
            );
            assert!(answer.is_none());
        } else {
            assert!(
                trailers.contains("grpc-status:0"),
                "{content_type}: {trailers:?}"
            );
            assert_eq!(answer.context("a message")?.subject, "auth0|dave");
        }
    }
    Ok(())
}

#[tokio::test]
async fn http1_abuse_is_bounded_and_a_legitimate_caller_is_served() -> Result<()> {
    let (issuer, authd) = setup(
        "[limits]\nhandshake_timeout_ms = 1000\nidle_timeout_seconds = 1\nrequest_body_timeout_ms = 1000\nmax_connections = 300\n",
    )
    .await?;
    let token = issuer.token(&[]).await?;
    let fds_before = authd.fds()?;

    // Slow loris: request heads dribbled a byte every 300 ms are cut off
    // by the handshake timeout, long before they are whole.
    let slow: Vec<_> = (0..100)
        .map(|_| {
            let addr = authd.addr;
            tokio::spawn(async move {
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    return false;
                };
                let head = format!(
                    "POST {VERIFY} HTTP/1.1\r\nhost: authd\r\nx-padding: {}\r\n",
                    "a".repeat(200)
                );
                for byte in head.as_bytes() {
                    if tcp.write_all(&[*byte]).await.is_err() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let mut probe = [0u8; 256];
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut probe)).await
                    {
                        return true;
                    }
                }
                false
            })
        })
        .collect();

    // Never-ending bodies: a declared length never delivered is cut by the
    // body timeout.
    let mut stalled = TcpStream::connect(authd.addr).await?;
    stalled
        .write_all(
            format!("POST {VERIFY} HTTP/1.1\r\nhost: authd\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"token\":")
                .as_bytes(),
        )
        .await?;
    let started = Instant::now();
    let answer = read_head(&mut stalled, Duration::from_secs(5)).await?;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("DEADLINE_EXCEEDED"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Idle keep-alive: one answer, then the connection is closed.
    let mut idle = TcpStream::connect(authd.addr).await?;
    let body = json!({"token": token}).to_string();
    let request = format!(
        "POST {VERIFY} HTTP/1.1\r\nhost: authd\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    idle.write_all(request.as_bytes()).await?;
    let answer = read_head(&mut idle, Duration::from_secs(5)).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "an idle keep-alive connection is closed: {closed:?}"
    );

    // Pipelining: two requests written at once are answered in order.
    let mut piped = TcpStream::connect(authd.addr).await?;
    piped
        .write_all(format!("{request}{request}").as_bytes())
        .await?;
    let mut both = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while both.matches("HTTP/1.1 200").count() < 2 && Instant::now() < deadline {
        both.push_str(&read_head(&mut piped, Duration::from_secs(2)).await?);
    }
    assert_eq!(both.matches("HTTP/1.1 200").count(), 2, "{both}");

    // A flood of small JSON requests over keep-alive connections: every
    // one answered, none with a server error.
    let client = http1()?;
    let url = format!("http://{}{VERIFY}", authd.addr);
    let answers: Vec<u16> = futures_util::stream::iter(0..2000)
        .map(|i| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                let token = if i % 2 == 0 { token } else { "junk".to_owned() };
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(json!({"token": token}).to_string())
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let ok = answers.iter().filter(|s| **s == 200).count();
    let refused = answers.iter().filter(|s| **s == 401).count();
    assert_eq!((ok, refused), (1000, 1000), "{:?}", &answers[..20]);

    let mut closed = 0;
    for s in slow {
        closed += usize::from(s.await?);
    }
    assert!(closed >= 95, "only {closed} of 100 slow heads were cut off");
    drop(client);
    drop(piped);
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while authd.fds()? > fds_before + 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        authd.fds()? <= fds_before + 10,
        "descriptors come back: {} (before: {fds_before})",
        authd.fds()?
    );
    Ok(())
}

#[tokio::test]
async fn http1_connections_count_against_max_connections() -> Result<()> {
    let (issuer, authd) = setup("[limits]\nmax_connections = 8\n").await?;
    let token = issuer.token(&[]).await?;
    let body = json!({"token": token}).to_string();
    let request = format!(
        "POST {VERIFY} HTTP/1.1\r\nhost: authd\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut tcp = TcpStream::connect(authd.addr).await?;
        tcp.write_all(request.as_bytes()).await?;
        let answer = read_head(&mut tcp, Duration::from_secs(5)).await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(tcp);
    }
    let mut extra = TcpStream::connect(authd.addr).await?;
    let _ = extra.write_all(request.as_bytes()).await;
    let answer = read_head(&mut extra, Duration::from_secs(3)).await?;
    assert!(
        answer.is_empty(),
        "the ninth connection is closed: {answer}"
    );
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(authd.addr).await?;
        if tcp.write_all(request.as_bytes()).await.is_ok()
            && read_head(&mut tcp, Duration::from_secs(1))
                .await?
                .starts_with("HTTP/1.1 200")
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "places come back when connections close");
    Ok(())
}

#[tokio::test]
async fn protocols_turned_off_are_answered_415_and_grpc_still_works() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = AuthdProcess::start_with_env(
        &issuer.config_entry(&["RS256"]),
        &[
            ("AUTHD_SERVER__CONNECT", "false".to_owned()),
            ("AUTHD_SERVER__GRPC_WEB", "false".to_owned()),
        ],
    )
    .await?;
    let token = issuer.token(&[]).await?;
    let client = http1()?;
    for content_type in ["application/json", "application/grpc-web+proto"] {
        let response = client
            .post(format!("http://{}{VERIFY}", authd.addr))
            .header("content-type", content_type)
            .body("{}")
            .send()
            .await?;
        assert_eq!(response.status(), 415, "{content_type}");
    }
    assert_eq!(grpc_reason(&authd, &token, &[]).await?, "OK");
    Ok(())
}

fn venv_tool(name: &str) -> Result<PathBuf> {
    let tool = workspace().join(".venv/bin").join(name);
    if !tool.exists() {
        bail!(
            "{} is missing: run tests/run (it installs tests/requirements.txt)",
            tool.display()
        );
    }
    Ok(tool)
}

#[tokio::test]
async fn the_openapi_document_is_current_valid_and_true_of_a_live_authd() -> Result<()> {
    let printed = Command::new(authd_binary()?)
        .arg("openapi")
        .output()
        .await?;
    assert!(printed.status.success());
    let committed = std::fs::read_to_string(workspace().join("proto/openapi.yaml"))?;
    assert!(
        String::from_utf8(printed.stdout)? == committed,
        "proto/openapi.yaml is stale: run `authd openapi > proto/openapi.yaml`"
    );
    let validated = Command::new(venv_tool("openapi-spec-validator")?)
        .arg(workspace().join("proto/openapi.yaml"))
        .output()
        .await?;
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let (_issuer, authd) = setup("").await?;
    let run = Command::new(venv_tool("schemathesis")?)
        .arg("run")
        .arg(workspace().join("proto/openapi.yaml"))
        .args(["--url", &format!("http://{}", authd.addr)])
        .args(["--max-examples", "25", "--seed", "1", "--no-color"])
        // What the document promises: no server error, and every answer's
        // status, content type, headers and body as documented.
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,unsupported_method",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .await?;
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found answers outside the document:\n{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("passed"), "{out}");
    Ok(())
}

/// The README's curl walkthrough, each `curl` line run by `sh` as written,
/// with `<placeholders>` filled from the answers before it, against
/// `authd dev`.
#[tokio::test]
async fn the_readme_curl_walkthrough_runs_as_written() -> Result<()> {
    let readme = std::fs::read_to_string(workspace().join("README.md"))?;
    let block = readme
        .split("<!-- curl walkthrough -->")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .context("the README's curl walkthrough block")?;
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let mut dev = authd_tests::authd_dev(port, data.path())?;
    wait_for_port(
        format!("127.0.0.1:{port}").parse()?,
        Duration::from_secs(30),
    )
    .await?;
    let mut printed = String::new();
    let mut stdout = dev.stdout.take().context("stdout")?;
    let mut buf = [0u8; 65536];
    while !printed.contains("AUTHD_WATCH_TOKEN") {
        let n = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        printed.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let demo_token = printed
        .split(r#""token":""#)
        .nth(1)
        .and_then(|t| t.split('"').next())
        .context("authd dev prints a demo token")?
        .to_owned();

    let mut values: Vec<(String, String)> = vec![("<token>".into(), demo_token)];
    let mut last: Value = Value::Null;
    let mut ran = 0;
    for line in block.lines() {
        let line = line.trim();
        if line.starts_with("A=") || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut command = line.split(" #").next().unwrap_or(line).trim().to_owned();
        for (placeholder, value) in &values {
            command = command.replace(placeholder.as_str(), value);
        }
        assert!(!command.contains('<'), "an unfilled placeholder: {command}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("A", format!("http://127.0.0.1:{port}/auth.v1.AuthService"))
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
        if let Ok(answer) = serde_json::from_str::<Value>(&stdout) {
            for (placeholder, pointer) in [
                ("<verificationUriComplete>", "/verificationUriComplete"),
                ("<deviceCode>", "/deviceCode"),
                ("<sessionHandle>", "/session/sessionHandle"),
                ("<accessToken>", "/session/accessToken"),
            ] {
                if let Some(value) = answer.pointer(pointer).and_then(Value::as_str) {
                    values.push((placeholder.to_owned(), value.to_owned()));
                }
            }
            last = answer;
        }
    }
    assert!(ran >= 6, "the walkthrough has its steps: {ran}");
    // The last line verifies the revoked session's token.
    assert_eq!(last["code"], "unauthenticated", "{last}");
    assert_eq!(reason(&last), "SESSION_REVOKED", "{last}");

    // The embedded client example does the same flow with curl alone.
    let example = workspace().join("client/examples/device-login.sh");
    let out = Command::new("sh")
        .arg(&example)
        .env("AUTHD_URL", format!("http://127.0.0.1:{port}"))
        .env("AUTHD_APPROVE", "1")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified: auth0|demo-user"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn connect_over_tls_speaks_http1_and_http2_by_alpn() -> Result<()> {
    use authd_tests::pki::{Ca, Names};
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("authd test CA")?;
    let server = ca.leaf(dir.path(), "server", Names::dns(&["localhost"]))?;
    let issuer = Issuer::start().await?;
    let authd = AuthdProcess::start(&format!(
        "{}[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        issuer.config_entry(&["RS256"]),
        server.cert_file,
        server.key_file
    ))
    .await?;
    let token = issuer.token(&[("sub", "auth0|grace")]).await?;
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes())?;
    for (name, builder, version) in [
        (
            "HTTP/1.1",
            reqwest::Client::builder().http1_only(),
            reqwest::Version::HTTP_11,
        ),
        (
            "HTTP/2",
            reqwest::Client::builder(),
            reqwest::Version::HTTP_2,
        ),
    ] {
        let client = builder
            .tls_certs_only([root.clone()])
            .resolve("localhost", authd.addr)
            .build()?;
        let response = client
            .post(format!("https://localhost:{}{VERIFY}", authd.addr.port()))
            .header("content-type", "application/json")
            .body(json!({"token": token}).to_string())
            .send()
            .await?;
        assert_eq!(response.version(), version, "{name}: ALPN chose it");
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.json::<Value>().await?["subject"], "auth0|grace");
    }
    Ok(())
}

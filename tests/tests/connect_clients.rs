//! Connect and gRPC-Web on authd's port, called by clients written elsewhere:
//! `buf curl` in its three protocols, the official Connect clients for
//! Node.js (`tests/connect-clients/node`, @connectrpc/connect-node) and for
//! Python (`tests/connect-clients/python`, connectrpc), curl and grpcurl,
//! each against the real `authd` binary on one port, in plaintext, over TLS
//! and mutual TLS; the `[[callers]]` policy answering Connect as it answers
//! gRPC; and `[server] connect` / `grpc_web` turned off.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use authd_proto::pb::{self, auth_service_client::AuthServiceClient, get_profile_request};
use authd_tests::{
    AuthdProcess, Issuer, Output,
    pki::{Ca, Leaf, Names},
    run_grpcurl, workspace,
};
use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::process::Command;
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig},
};
use tonic_types::StatusExt;

const VERIFY: &str = "/auth.v1.AuthService/VerifyToken";
const GET_PROFILE: &str = "/auth.v1.AuthService/GetProfile";

/// How long one client command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

// === the tools ===

fn node_dir() -> PathBuf {
    workspace().join("tests/connect-clients/node")
}

fn python_dir() -> PathBuf {
    workspace().join("tests/connect-clients/python")
}

/// A tool of the project's `.venv`, or a failure saying how to install it.
fn venv_tool(name: &str) -> Result<PathBuf> {
    let path = workspace().join(".venv/bin").join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `.venv/bin/pip install -r tests/requirements.txt` (tests/run does)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `program` with `args` in `dir`, `path_first` put first on `PATH`.
async fn run_in(
    program: &Path,
    args: &[String],
    dir: &Path,
    path_first: Option<&Path>,
) -> Result<Output> {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env("BUF_CACHE_DIR", workspace().join(".buf-cache"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(first) = path_first {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![first.to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(paths)?);
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .with_context(|| {
            format!(
                "{} {args:?} ran over {COMMAND_TIMEOUT:?}",
                program.display()
            )
        })?
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// What a call answered, whichever client made it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    /// The Connect code: `ok`, `unauthenticated`, ...
    code: String,
    /// The subject of an accepted token.
    subject: String,
    /// authd's ErrorInfo reason of a refusal.
    reason: String,
    /// Its metadata.
    metadata: BTreeMap<String, String>,
}

impl Answer {
    fn ok(subject: &str) -> Answer {
        Answer {
            code: "ok".to_owned(),
            subject: subject.to_owned(),
            reason: String::new(),
            metadata: BTreeMap::new(),
        }
    }

    fn refused(code: &str, reason: &str) -> Answer {
        Answer {
            code: code.to_owned(),
            subject: String::new(),
            reason: reason.to_owned(),
            metadata: BTreeMap::new(),
        }
    }

    /// The same code, subject and reason (metadata compared apart).
    fn says(&self, other: &Answer) -> bool {
        (&self.code, &self.subject, &self.reason) == (&other.code, &other.subject, &other.reason)
    }
}

/// The Connect error JSON `error` (`{"code", "message", "details"}`) as an
/// [`Answer`]: the reason from the ErrorInfo's bytes (not its `debug` form,
/// which only authd's Connect side writes), checked against `debug` when
/// present.
fn connect_error(error: &Value) -> Result<Answer> {
    let code = error["code"].as_str().context("no code")?.to_owned();
    let mut answer = Answer::refused(&code, "");
    for detail in error["details"].as_array().into_iter().flatten() {
        if detail["type"] != "google.rpc.ErrorInfo" {
            continue;
        }
        let value = detail["value"].as_str().context("a detail without value")?;
        let bytes = STANDARD_NO_PAD.decode(value.trim_end_matches('='))?;
        let info = tonic_types::pb::ErrorInfo::decode(bytes.as_slice())?;
        ensure!(info.domain == "authd", "{info:?}");
        if let Some(debug) = detail.get("debug") {
            ensure!(debug["reason"] == info.reason.as_str(), "{detail}");
        }
        answer.reason = info.reason;
        answer.metadata = info.metadata.into_iter().collect();
    }
    Ok(answer)
}

/// The first JSON object in `text` (tools print lines around it).
fn json_in(text: &str) -> Result<Value> {
    let start = text
        .find('{')
        .with_context(|| format!("no JSON in {text:?}"))?;
    let end = text
        .rfind('}')
        .with_context(|| format!("no JSON in {text:?}"))?;
    serde_json::from_str(&text[start..=end]).with_context(|| format!("not JSON: {text:?}"))
}

// --- buf curl ---

/// How `buf curl` reaches authd.
#[derive(Debug, Clone, Default)]
struct Tls {
    ca: Option<PathBuf>,
    identity: Option<Leaf>,
}

impl Tls {
    fn plaintext() -> Tls {
        Tls::default()
    }

    fn server(ca: &Path) -> Tls {
        Tls {
            ca: Some(ca.to_path_buf()),
            identity: None,
        }
    }

    fn mutual(ca: &Path, identity: &Leaf) -> Tls {
        Tls {
            ca: Some(ca.to_path_buf()),
            identity: Some(identity.clone()),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "https" } else { "http" }
    }
}

/// `buf curl --protocol PROTOCOL` of `rpc` with `body`, the schema from the
/// repository's `proto/`.
async fn buf_curl(
    authd: &AuthdProcess,
    tls: &Tls,
    protocol: &str,
    rpc: &str,
    body: &Value,
    bearer: Option<&str>,
) -> Result<Answer> {
    let mut args = strings(&["curl", "--schema", "proto", "--protocol", protocol]);
    match &tls.ca {
        None if protocol == "grpc" => args.push("--http2-prior-knowledge".to_owned()),
        None => {}
        Some(ca) => args.extend(["--cacert".to_owned(), ca.display().to_string()]),
    }
    if let Some(leaf) = &tls.identity {
        args.extend([
            "--cert".to_owned(),
            leaf.cert_file.display().to_string(),
            "--key".to_owned(),
            leaf.key_file.display().to_string(),
        ]);
    }
    if let Some(bearer) = bearer {
        args.extend(["-H".to_owned(), format!("authorization: Bearer {bearer}")]);
    }
    args.extend([
        "-d".to_owned(),
        body.to_string(),
        format!("{}://{}{rpc}", tls.scheme(), authd.addr),
    ]);
    let out = run_in(&venv_tool("buf")?, &args, &workspace(), None).await?;
    if out.code == Some(0) {
        let answer = json_in(&out.stdout)?;
        let subject = answer["subject"].as_str().unwrap_or_default();
        return Ok(Answer::ok(subject));
    }
    connect_error(&json_in(&out.stderr).with_context(|| format!("buf curl: {out:?}"))?)
}

// --- the Connect clients for Node.js and Python ---

/// Which client, protocol and HTTP version.
#[derive(Debug, Clone, Copy)]
struct Client {
    /// `node` or `python`.
    language: &'static str,
    /// `connect` (JSON), `connect-proto`, `grpcweb`, `grpc`.
    protocol: &'static str,
    /// `1.1` or `2`.
    http: &'static str,
}

const fn client(language: &'static str, protocol: &'static str, http: &'static str) -> Client {
    Client {
        language,
        protocol,
        http,
    }
}

/// What one run of a client script printed: one line per call.
#[derive(Debug)]
struct Run {
    verify: Vec<Answer>,
    watch: Option<Value>,
}

/// Runs a client's script against `authd`: VerifyToken for each of
/// `tokens`, then WatchRevocations until its first heartbeat when `watch`.
async fn run_client(
    authd: &AuthdProcess,
    tls: &Tls,
    client: Client,
    tokens: &[&str],
    bearer: Option<&str>,
    watch: bool,
    extra: &[&str],
) -> Result<Run> {
    let (program, dir, script) = match client.language {
        "node" => {
            let dir = node_dir();
            if !dir.join("node_modules/@connectrpc/connect-node").exists() {
                bail!(
                    "tests/connect-clients/node has no node_modules: run \
                     `npm ci --prefix tests/connect-clients/node` (tests/run does)"
                );
            }
            (PathBuf::from("node"), dir, "verify.mjs")
        }
        "python" => (venv_tool("python")?, python_dir(), "verify.py"),
        other => bail!("no client for {other}"),
    };
    let mut args = strings(&[
        script,
        "--base-url",
        &format!("{}://{}", tls.scheme(), authd.addr),
        "--protocol",
        client.protocol,
        "--http",
        client.http,
    ]);
    if let Some(ca) = &tls.ca {
        args.extend(["--ca".to_owned(), ca.display().to_string()]);
    }
    if let Some(leaf) = &tls.identity {
        args.extend([
            "--cert".to_owned(),
            leaf.cert_file.display().to_string(),
            "--key".to_owned(),
            leaf.key_file.display().to_string(),
        ]);
    }
    if let Some(bearer) = bearer {
        args.extend(["--authorization".to_owned(), bearer.to_owned()]);
    }
    if watch {
        args.push("--watch".to_owned());
    }
    args.extend(strings(extra));
    args.extend(strings(tokens));
    let out = run_in(&program, &args, &dir, None).await?;
    ensure!(out.code == Some(0), "{client:?}: {out:?}");
    let mut run = Run {
        verify: Vec::new(),
        watch: None,
    };
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let line: Value = serde_json::from_str(line).with_context(|| format!("{line:?}"))?;
        if line["call"] == "watch" {
            run.watch = Some(line);
            continue;
        }
        let answer = if line["ok"] == true {
            Answer::ok(line["subject"].as_str().unwrap_or_default())
        } else {
            let metadata = line["metadata"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            Answer {
                code: line["code"].as_str().unwrap_or_default().to_owned(),
                subject: String::new(),
                reason: line["reason"].as_str().unwrap_or_default().to_owned(),
                metadata,
            }
        };
        run.verify.push(answer);
    }
    ensure!(
        run.verify.len() == tokens.len(),
        "{client:?}: one line per token: {out:?}"
    );
    Ok(run)
}

/// Asserts the watch line says the stream reached its first heartbeat.
fn assert_heartbeat(run: &Run, what: &str) {
    let watch = run.watch.as_ref().expect("a watch line");
    assert_eq!(watch["ok"], true, "{what}: {watch}");
    assert_eq!(watch["heartbeats"], 1, "{what}: {watch}");
    assert_eq!(watch["interval_ms"], 200, "{what}: {watch}");
    assert!(
        !watch["cursor"].as_str().unwrap_or_default().is_empty(),
        "{what}: every message carries a cursor: {watch}"
    );
}

// --- curl ---

/// `curl` POSTing `body` as `content_type` to `rpc` over HTTP/1.1 or
/// HTTP/2 (prior knowledge in plaintext, ALPN over TLS); the HTTP status,
/// the HTTP version and the body.
async fn curl(
    authd: &AuthdProcess,
    tls: &Tls,
    http2: bool,
    content_type: &str,
    rpc: &str,
    body: &str,
    headers: &[&str],
) -> Result<(u16, String, String)> {
    let mut args = strings(&["-sS", "-X", "POST", "-H"]);
    args.push(format!("content-type: {content_type}"));
    for header in headers {
        args.extend(["-H".to_owned(), (*header).to_owned()]);
    }
    match (http2, tls.ca.is_some()) {
        (false, false) => args.push("--http1.1".to_owned()),
        // HTTP/1.1 over TLS: curl offers ALPN `http/1.1`, which authd
        // accepts beside `h2`.
        (false, true) => args.push("--http1.1".to_owned()),
        (true, false) => args.push("--http2-prior-knowledge".to_owned()),
        (true, true) => args.push("--http2".to_owned()),
    }
    if let Some(ca) = &tls.ca {
        args.extend(["--cacert".to_owned(), ca.display().to_string()]);
    }
    if let Some(leaf) = &tls.identity {
        args.extend([
            "--cert".to_owned(),
            leaf.cert_file.display().to_string(),
            "--key".to_owned(),
            leaf.key_file.display().to_string(),
        ]);
    }
    args.extend(strings(&[
        "--data-binary",
        body,
        "-w",
        "\n%{http_code} %{http_version}",
    ]));
    args.push(format!("{}://{}{rpc}", tls.scheme(), authd.addr));
    let out = run_in(Path::new("curl"), &args, &workspace(), None).await?;
    ensure!(out.code == Some(0), "curl: {out:?}");
    let (body, status) = out
        .stdout
        .rsplit_once('\n')
        .with_context(|| format!("{out:?}"))?;
    let (code, version) = status.split_once(' ').context("status line")?;
    Ok((code.parse()?, version.to_owned(), body.to_owned()))
}

/// A Connect JSON call by curl as an [`Answer`], with its HTTP status.
async fn curl_connect(
    authd: &AuthdProcess,
    tls: &Tls,
    http2: bool,
    rpc: &str,
    body: &Value,
    headers: &[&str],
) -> Result<(u16, Answer)> {
    let (status, version, text) = curl(
        authd,
        tls,
        http2,
        "application/json",
        rpc,
        &body.to_string(),
        headers,
    )
    .await?;
    assert_eq!(version, if http2 { "2" } else { "1.1" }, "{text}");
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{status}: {text}"))?;
    if status == 200 {
        return Ok((
            status,
            Answer::ok(json["subject"].as_str().unwrap_or_default()),
        ));
    }
    Ok((status, connect_error(&json)?))
}

// --- gRPC ---

/// A gRPC status as an [`Answer`].
fn grpc_answer(status: &tonic::Status) -> Answer {
    let info = status.get_error_details().error_info().cloned();
    Answer {
        code: grpc_code_name(status.code()).to_owned(),
        subject: String::new(),
        reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
        metadata: info
            .map(|i| i.metadata.into_iter().collect())
            .unwrap_or_default(),
    }
}

fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission_denied",
        Code::NotFound => "not_found",
        Code::InvalidArgument => "invalid_argument",
        Code::Unimplemented => "unimplemented",
        Code::Unavailable => "unavailable",
        _ => "other",
    }
}

/// VerifyToken over gRPC (tonic) with an optional service token.
async fn grpc_verify(channel: &Channel, token: &str, bearer: Option<&str>) -> Result<Answer> {
    let mut request = Request::new(pb::VerifyTokenRequest {
        token: token.to_owned(),
        ..Default::default()
    });
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {bearer}").parse()?);
    }
    Ok(
        match AuthServiceClient::new(channel.clone())
            .verify_token(request)
            .await
        {
            Ok(answer) => Answer::ok(&answer.into_inner().subject),
            Err(status) => grpc_answer(&status),
        },
    )
}

// === set-up ===

/// The tokens every test uses.
struct Tokens {
    valid: String,
    expired: String,
    /// A service token allowed to watch revocations.
    watcher: String,
}

const SUBJECT: &str = "auth0|connect-client";
const GARBAGE: &str = "not-a-jwt";

async fn tokens(issuer: &Issuer) -> Result<Tokens> {
    Ok(Tokens {
        valid: issuer
            .token(&[("sub", SUBJECT), ("scope", "read:orders")])
            .await?,
        expired: issuer.token(&[("expires_in", "-300")]).await?,
        watcher: issuer
            .token(&[("permissions", "revocations:watch")])
            .await?,
    })
}

/// authd's configuration: the issuer, heartbeats every 200 ms, and `extra`.
fn config(issuer: &Issuer, extra: &str) -> String {
    format!(
        "{}[watch]\nheartbeat_ms = 200\n{extra}",
        issuer.config_entry(&["RS256"])
    )
}

/// A CA, authd's certificate from it (for `localhost` and `127.0.0.1`), in
/// a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_file: PathBuf,
    server: Leaf,
}

impl Pki {
    fn new() -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let ca = Ca::new("authd connect test CA")?;
        let ca_file = ca.write(dir.path(), "ca")?;
        let server = ca.leaf(
            dir.path(),
            "server",
            Names::dns(&["localhost", "127.0.0.1"]),
        )?;
        Ok(Pki {
            dir,
            ca,
            ca_file,
            server,
        })
    }

    fn client(&self, file: &str, names: Names) -> Result<Leaf> {
        self.ca.leaf(self.dir.path(), file, names)
    }

    /// `[server.tls]`; with `client_auth` (`require`, `optional`), mutual.
    fn section(&self, client_auth: Option<&str>) -> String {
        let mut section = format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.server.cert_file, self.server.key_file
        );
        if let Some(auth) = client_auth {
            section.push_str(&format!(
                "client_ca_file = {:?}\nclient_auth = \"{auth}\"\n",
                self.ca_file
            ));
        }
        section
    }

    /// A gRPC channel to `authd` over TLS with `identity`.
    fn channel(&self, authd: &AuthdProcess, identity: Option<&Leaf>) -> Result<Channel> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.pem()))
            .domain_name("localhost");
        if let Some(leaf) = identity {
            tls = tls.identity(leaf.identity());
        }
        Ok(Channel::from_shared(format!("https://{}", authd.addr))?
            .tls_config(tls)?
            .connect_lazy())
    }
}

fn verify_body(token: &str) -> Value {
    json!({ "token": token, "required_scopes": [] })
}

// === the tests ===

/// The generated code committed under tests/connect-clients is what
/// `buf generate` makes from proto/ today.
#[tokio::test]
async fn generated_code_is_current() -> Result<()> {
    for (dir, plugins) in [
        (node_dir(), node_dir().join("node_modules/.bin")),
        (python_dir(), workspace().join(".venv/bin")),
    ] {
        ensure!(
            plugins.exists(),
            "{} is missing: tests/run installs it",
            plugins.display()
        );
        let fresh = tempfile::tempdir()?;
        let out = run_in(
            &venv_tool("buf")?,
            &[
                "generate".to_owned(),
                "-o".to_owned(),
                fresh.path().display().to_string(),
            ],
            &dir,
            Some(&plugins),
        )
        .await?;
        ensure!(
            out.code == Some(0),
            "buf generate in {}: {out:?}",
            dir.display()
        );
        let committed = files(&dir.join("gen"))?;
        let generated = files(&fresh.path().join("gen"))?;
        ensure!(!generated.is_empty(), "buf generate wrote nothing");
        assert_eq!(
            committed.keys().collect::<Vec<_>>(),
            generated.keys().collect::<Vec<_>>(),
            "{}/gen: run `buf generate` there (its buf.gen.yaml says how) and commit",
            dir.display()
        );
        for (path, text) in &generated {
            assert!(
                committed.get(path) == Some(text),
                "{}/gen/{path} is not what buf generate makes: regenerate and commit",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Every file under `root` by its relative path (no `__pycache__`).
fn files(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "__pycache__") {
                    dirs.push(path);
                }
                continue;
            }
            let relative = path.strip_prefix(root)?.display().to_string();
            found.insert(relative, std::fs::read_to_string(&path)?);
        }
    }
    Ok(found)
}

/// `buf curl` in Connect, gRPC-Web and gRPC against one plaintext port:
/// the claims of a valid token, `unauthenticated` with authd's reason for
/// an expired and a malformed one.
#[tokio::test]
async fn buf_curl_in_connect_grpc_web_and_grpc_on_one_plaintext_port() -> Result<()> {
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(&issuer, "")).await?;
    let tls = Tls::plaintext();
    for protocol in ["connect", "grpcweb", "grpc"] {
        let valid = buf_curl(
            &authd,
            &tls,
            protocol,
            VERIFY,
            &verify_body(&tokens.valid),
            None,
        )
        .await?;
        assert_eq!(valid, Answer::ok(SUBJECT), "{protocol}");
        let expired = buf_curl(
            &authd,
            &tls,
            protocol,
            VERIFY,
            &verify_body(&tokens.expired),
            None,
        )
        .await?;
        assert!(
            expired.says(&Answer::refused("unauthenticated", "TOKEN_EXPIRED")),
            "{protocol}: {expired:?}"
        );
        assert!(expired.metadata.contains_key("expired_at"), "{expired:?}");
        let garbage = buf_curl(&authd, &tls, protocol, VERIFY, &verify_body(GARBAGE), None).await?;
        assert!(
            garbage.says(&Answer::refused("unauthenticated", "MALFORMED_TOKEN")),
            "{protocol}: {garbage:?}"
        );
    }
    Ok(())
}

/// The Connect client for Node.js in every protocol it speaks, over HTTP/1.1
/// and HTTP/2 (h2c): VerifyToken, then WatchRevocations to its first
/// heartbeat.
#[tokio::test]
async fn the_node_connect_client_in_every_protocol_over_plaintext() -> Result<()> {
    verify_and_watch_over_plaintext(&[
        client("node", "connect", "1.1"),
        client("node", "connect", "2"),
        client("node", "connect-proto", "1.1"),
        client("node", "connect-proto", "2"),
        client("node", "grpcweb", "1.1"),
        client("node", "grpcweb", "2"),
        client("node", "grpc", "2"),
    ])
    .await
}

/// Each of `clients` over plaintext against one authd: the valid, expired
/// and malformed tokens' answers, then WatchRevocations to its first
/// heartbeat.
async fn verify_and_watch_over_plaintext(clients: &[Client]) -> Result<()> {
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(&issuer, "")).await?;
    for &client in clients {
        let run = run_client(
            &authd,
            &Tls::plaintext(),
            client,
            &[&tokens.valid, &tokens.expired, GARBAGE],
            Some(&tokens.watcher),
            true,
            &[],
        )
        .await?;
        assert_verified(&run, &format!("{client:?}"));
        assert_heartbeat(&run, &format!("{client:?}"));
    }
    Ok(())
}

/// The three answers of [`tokens`]' valid, expired and malformed token.
fn assert_verified(run: &Run, what: &str) {
    assert_eq!(run.verify[0], Answer::ok(SUBJECT), "{what}");
    assert!(
        run.verify[1].says(&Answer::refused("unauthenticated", "TOKEN_EXPIRED")),
        "{what}: {:?}",
        run.verify[1]
    );
    if let Some(third) = run.verify.get(2) {
        assert!(
            third.says(&Answer::refused("unauthenticated", "MALFORMED_TOKEN")),
            "{what}: {third:?}"
        );
    }
}

/// The Connect client for Python (connectrpc) likewise: JSON and binary
/// Connect, gRPC-Web and gRPC, over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn the_python_connect_client_in_every_protocol_over_plaintext() -> Result<()> {
    verify_and_watch_over_plaintext(&[
        client("python", "connect", "1.1"),
        client("python", "connect", "2"),
        client("python", "connect-proto", "1.1"),
        client("python", "grpcweb", "1.1"),
        client("python", "grpc", "2"),
    ])
    .await
}

/// connectrpc compresses every request with gzip unless told otherwise:
/// authd reads gzip (bounded by the limit once decompressed), so the client
/// works as configured by default; an encoding authd does not read is
/// Connect's `unimplemented` naming it, and a body that is not gzip is a
/// malformed request — never a verdict on the token.
#[tokio::test]
async fn gzip_requests_are_read_and_other_encodings_refused_as_unimplemented() -> Result<()> {
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(&issuer, "")).await?;
    let run = run_client(
        &authd,
        &Tls::plaintext(),
        client("python", "connect", "1.1"),
        &[&tokens.valid],
        Some(&tokens.watcher),
        true,
        &["--gzip"],
    )
    .await?;
    assert_eq!(run.verify[0], Answer::ok(SUBJECT), "connectrpc with gzip");
    assert_heartbeat(&run, "connectrpc with gzip");
    let (status, _, body) = curl(
        &authd,
        &Tls::plaintext(),
        false,
        "application/json",
        VERIFY,
        "{}",
        &["content-encoding: br"],
    )
    .await?;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("content-encoding \\\"br\\\""), "{body}");
    let (status, _, body) = curl(
        &authd,
        &Tls::plaintext(),
        false,
        "application/json",
        VERIFY,
        "\u{1f}",
        &["content-encoding: gzip"],
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MALFORMED_REQUEST"), "{body}");
    Ok(())
}

/// curl (HTTP/1.1 and HTTP/2), grpcurl, buf curl in its three protocols and
/// both Connect clients against one port: the same refused token gets the
/// same code and reason from every protocol, and Connect's HTTP status is
/// the one of its code table.
#[tokio::test]
async fn every_protocol_on_the_port_gives_the_same_reason_for_the_same_token() -> Result<()> {
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(&issuer, "")).await?;
    let tls = Tls::plaintext();
    let body = verify_body(&tokens.expired);
    let mut answers: Vec<(String, Answer)> = Vec::new();

    for http2 in [false, true] {
        let (status, answer) = curl_connect(&authd, &tls, http2, VERIFY, &body, &[]).await?;
        assert_eq!(status, 401, "Connect's status for unauthenticated");
        answers.push((format!("curl http2={http2}"), answer));
    }
    // The binary form: the request message as protobuf, the error still JSON.
    let request = pb::VerifyTokenRequest {
        token: tokens.expired.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    let proto_file = tempfile::NamedTempFile::new()?;
    std::fs::write(proto_file.path(), &request)?;
    let (status, _, text) = curl(
        &authd,
        &tls,
        true,
        "application/proto",
        VERIFY,
        &format!("@{}", proto_file.path().display()),
        &["connect-protocol-version: 1"],
    )
    .await?;
    assert_eq!(status, 401, "{text}");
    answers.push((
        "curl application/proto".to_owned(),
        connect_error(&serde_json::from_str(&text)?)?,
    ));

    for protocol in ["connect", "grpcweb", "grpc"] {
        answers.push((
            format!("buf curl {protocol}"),
            buf_curl(&authd, &tls, protocol, VERIFY, &body, None).await?,
        ));
    }
    for client in [
        client("node", "connect", "1.1"),
        client("python", "connect", "2"),
    ] {
        let run = run_client(&authd, &tls, client, &[&tokens.expired], None, false, &[]).await?;
        answers.push((format!("{client:?}"), run.verify[0].clone()));
    }
    let grpc = Channel::from_shared(authd.uri())?.connect().await?;
    answers.push((
        "tonic".to_owned(),
        grpc_verify(&grpc, &tokens.expired, None).await?,
    ));

    let out = run_grpcurl(&[
        "-plaintext",
        "-d",
        &body.to_string(),
        &authd.addr.to_string(),
        "auth.v1.AuthService/VerifyToken",
    ])
    .await?;
    // grpcurl exits with 64 + the gRPC code: UNAUTHENTICATED (16) → 80.
    assert_eq!(out.code, Some(80), "{out:?}");
    assert!(
        out.stderr.contains(r#""reason":"TOKEN_EXPIRED""#),
        "{}",
        out.stderr
    );

    let expected = Answer::refused("unauthenticated", "TOKEN_EXPIRED");
    let (_, first) = &answers[0];
    for (who, answer) in &answers {
        assert!(answer.says(&expected), "{who}: {answer:?}");
        if !answer.metadata.is_empty() {
            assert_eq!(answer.metadata, first.metadata, "{who}");
        }
    }
    Ok(())
}

/// Over TLS (server certificate only): buf curl in Connect, gRPC-Web and
/// gRPC, curl over HTTP/1.1 and HTTP/2 (ALPN), the Node.js client in
/// Connect and gRPC-Web, and the Python client.
#[tokio::test]
async fn over_tls_buf_curl_curl_and_both_connect_clients() -> Result<()> {
    let pki = Pki::new()?;
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(&issuer, &pki.section(None))).await?;
    let tls = Tls::server(&pki.ca_file);

    for protocol in ["connect", "grpcweb", "grpc"] {
        let valid = buf_curl(
            &authd,
            &tls,
            protocol,
            VERIFY,
            &verify_body(&tokens.valid),
            None,
        )
        .await?;
        assert_eq!(valid, Answer::ok(SUBJECT), "{protocol}");
        let expired = buf_curl(
            &authd,
            &tls,
            protocol,
            VERIFY,
            &verify_body(&tokens.expired),
            None,
        )
        .await?;
        assert!(
            expired.says(&Answer::refused("unauthenticated", "TOKEN_EXPIRED")),
            "{protocol}: {expired:?}"
        );
    }
    for http2 in [false, true] {
        let (status, answer) = curl_connect(
            &authd,
            &tls,
            http2,
            VERIFY,
            &verify_body(&tokens.valid),
            &[],
        )
        .await?;
        assert_eq!(
            (status, answer),
            (200, Answer::ok(SUBJECT)),
            "http2={http2}"
        );
        let (status, answer) = curl_connect(
            &authd,
            &tls,
            http2,
            VERIFY,
            &verify_body(&tokens.expired),
            &[],
        )
        .await?;
        assert_eq!(status, 401);
        assert!(answer.says(&Answer::refused("unauthenticated", "TOKEN_EXPIRED")));
    }
    for client in [
        client("node", "connect", "1.1"),
        client("node", "connect", "2"),
        client("node", "grpcweb", "2"),
        client("python", "connect", "2"),
    ] {
        let run = run_client(
            &authd,
            &tls,
            client,
            &[&tokens.valid, &tokens.expired],
            Some(&tokens.watcher),
            true,
            &[],
        )
        .await?;
        assert_verified(&run, &format!("TLS {client:?}"));
        assert_heartbeat(&run, &format!("TLS {client:?}"));
    }
    // A plaintext Connect call to the TLS port gets no answer from authd.
    let plain = curl(
        &authd,
        &Tls::plaintext(),
        false,
        "application/json",
        VERIFY,
        &verify_body(&tokens.valid).to_string(),
        &[],
    )
    .await;
    assert!(
        plain.as_ref().map_or(true, |(status, _, _)| *status != 200),
        "{plain:?}"
    );
    Ok(())
}

/// Connect and gRPC-Web over HTTP/1.1 and TLS from clients that offer ALPN
/// `http/1.1` (curl, connectrpc's HTTP/1 transport), as an HTTP/1.1-only
/// proxy or client library does.
#[tokio::test]
async fn over_tls_a_client_offering_alpn_http1_1_is_served() -> Result<()> {
    let pki = Pki::new()?;
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(&issuer, &pki.section(None))).await?;
    let tls = Tls::server(&pki.ca_file);
    for content_type in ["application/json", "application/grpc-web-text"] {
        let out = run_in(
            Path::new("curl"),
            &strings(&[
                "-sS",
                "--http1.1",
                "--cacert",
                &pki.ca_file.display().to_string(),
                "-X",
                "POST",
                "-H",
                &format!("content-type: {content_type}"),
                "--data-binary",
                &verify_body(&tokens.valid).to_string(),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("https://{}{VERIFY}", authd.addr),
            ]),
            &workspace(),
            None,
        )
        .await?;
        assert_eq!(out.code, Some(0), "{content_type}: {out:?}");
        assert_ne!(out.stdout, "000", "{content_type}: {out:?}");
    }
    let run = run_client(
        &authd,
        &tls,
        client("python", "connect", "1.1"),
        &[&tokens.valid],
        None,
        false,
        &[],
    )
    .await?;
    assert_eq!(run.verify[0], Answer::ok(SUBJECT), "{run:?}");
    Ok(())
}

/// Mutual TLS with a `[[callers]]` policy: a Connect call presents its
/// client certificate as a gRPC call does, and the policy grants and
/// refuses it as it does gRPC — the same code, reason and metadata.
#[tokio::test]
async fn under_mutual_tls_the_callers_policy_answers_connect_as_it_answers_grpc() -> Result<()> {
    let pki = Pki::new()?;
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(
        &issuer,
        &format!(
            "{}\n[[callers]]\nidentities = [\"spiffe://prod.test/ns/support/\"]\n\
             rpcs = [\"/auth.v1.AuthService/GetProfile:user_id\"]\n",
            pki.section(Some("require"))
        ),
    ))
    .await?;
    let support = pki.client(
        "support",
        Names::spiffe("spiffe://prod.test/ns/support/sa/desk"),
    )?;
    let batch = pki.client("batch", Names::spiffe("spiffe://prod.test/ns/batch/sa/job"))?;
    let by_id = json!({ "user_id": "auth0|nobody" });

    // gRPC first: what every other protocol must match.
    let grpc = |leaf: &Leaf| -> Result<_> { pki.channel(&authd, Some(leaf)) };
    let profile = |channel: Channel| async move {
        AuthServiceClient::new(channel)
            .get_profile(pb::GetProfileRequest {
                subject: Some(get_profile_request::Subject::UserId(
                    "auth0|nobody".to_owned(),
                )),
            })
            .await
            .map(drop)
    };
    let granted = grpc_answer(&profile(grpc(&support)?).await.expect_err("no such user"));
    assert_eq!(granted.reason, "USER_NOT_FOUND", "{granted:?}");
    let refused = grpc_answer(&profile(grpc(&batch)?).await.expect_err("not listed"));
    assert_eq!(
        (refused.code.as_str(), refused.reason.as_str()),
        ("permission_denied", "CALLER_NOT_TRUSTED")
    );
    assert_eq!(
        refused.metadata.get("caller").map(String::as_str),
        Some("spiffe://prod.test/ns/batch/sa/job")
    );
    assert_eq!(
        refused.metadata.get("rpc").map(String::as_str),
        Some("/auth.v1.AuthService/GetProfile:user_id")
    );

    for http2 in [false, true] {
        let (status, answer) = curl_connect(
            &authd,
            &Tls::mutual(&pki.ca_file, &support),
            http2,
            GET_PROFILE,
            &by_id,
            &[],
        )
        .await?;
        assert_eq!((status, &answer), (404, &granted), "http2={http2}");
        let (status, answer) = curl_connect(
            &authd,
            &Tls::mutual(&pki.ca_file, &batch),
            http2,
            GET_PROFILE,
            &by_id,
            &[],
        )
        .await?;
        assert_eq!((status, &answer), (403, &refused), "http2={http2}");
    }
    for protocol in ["connect", "grpcweb", "grpc"] {
        let answer = buf_curl(
            &authd,
            &Tls::mutual(&pki.ca_file, &support),
            protocol,
            GET_PROFILE,
            &by_id,
            None,
        )
        .await?;
        assert_eq!(answer, granted, "{protocol}");
        let answer = buf_curl(
            &authd,
            &Tls::mutual(&pki.ca_file, &batch),
            protocol,
            GET_PROFILE,
            &by_id,
            None,
        )
        .await?;
        assert_eq!(answer, refused, "{protocol}");
    }
    // VerifyToken is open to any caller with a certificate, in any client.
    for client in [
        client("node", "connect", "2"),
        client("python", "connect-proto", "2"),
    ] {
        let run = run_client(
            &authd,
            &Tls::mutual(&pki.ca_file, &batch),
            client,
            &[&tokens.valid, &tokens.expired],
            None,
            false,
            &[],
        )
        .await?;
        assert_verified(&run, &format!("mTLS {client:?}"));
    }
    // Without a certificate the handshake is refused: no answer from authd.
    let out = run_in(
        &venv_tool("buf")?,
        &[
            "curl".to_owned(),
            "--schema".to_owned(),
            "proto".to_owned(),
            "--cacert".to_owned(),
            pki.ca_file.display().to_string(),
            "-d".to_owned(),
            verify_body(&tokens.valid).to_string(),
            format!("https://{}{VERIFY}", authd.addr),
        ],
        &workspace(),
        None,
    )
    .await?;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains(SUBJECT), "{out:?}");
    let run = run_client(
        &authd,
        &Tls::server(&pki.ca_file),
        client("node", "connect", "1.1"),
        &[&tokens.valid],
        None,
        false,
        &[],
    )
    .await?;
    assert_ne!(run.verify[0].code, "ok", "{run:?}");
    assert_eq!(run.verify[0].reason, "", "an answer from authd: {run:?}");
    Ok(())
}

/// A `[[callers]]` policy without client certificates: a Connect call
/// without the caller's service token is refused `permission_denied` (403)
/// with `CALLER_NOT_TRUSTED` and the metadata gRPC gives, and with the
/// token it passes, as over gRPC.
#[tokio::test]
async fn a_service_token_identifies_a_connect_caller_as_it_does_a_grpc_caller() -> Result<()> {
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let authd = AuthdProcess::start(&config(
        &issuer,
        "[[callers]]\nidentities = [\"token:svc-billing@clients\"]\n\
         rpcs = [\"/auth.v1.AuthService/RevokeSession:user_id\"]\n",
    ))
    .await?;
    let billing = issuer.token(&[("sub", "svc-billing@clients")]).await?;
    let tls = Tls::plaintext();
    let body = verify_body(&tokens.valid);

    let grpc = Channel::from_shared(authd.uri())?.connect().await?;
    let refused = grpc_verify(&grpc, &tokens.valid, None).await?;
    assert_eq!(
        (refused.code.as_str(), refused.reason.as_str()),
        ("permission_denied", "CALLER_NOT_TRUSTED"),
        "{refused:?}"
    );
    assert_eq!(
        refused.metadata.get("caller").map(String::as_str),
        Some("anonymous")
    );
    assert_eq!(
        refused.metadata.get("rpc").map(String::as_str),
        Some(VERIFY)
    );
    assert_eq!(
        grpc_verify(&grpc, &tokens.valid, Some(&billing)).await?,
        Answer::ok(SUBJECT)
    );

    let authorization = format!("authorization: Bearer {billing}");
    for http2 in [false, true] {
        let (status, answer) = curl_connect(&authd, &tls, http2, VERIFY, &body, &[]).await?;
        assert_eq!((status, &answer), (403, &refused), "http2={http2}");
        let (status, answer) =
            curl_connect(&authd, &tls, http2, VERIFY, &body, &[&authorization]).await?;
        assert_eq!(
            (status, answer),
            (200, Answer::ok(SUBJECT)),
            "http2={http2}"
        );
    }
    for protocol in ["connect", "grpcweb"] {
        assert_eq!(
            buf_curl(&authd, &tls, protocol, VERIFY, &body, None).await?,
            refused,
            "{protocol}"
        );
        assert_eq!(
            buf_curl(&authd, &tls, protocol, VERIFY, &body, Some(&billing)).await?,
            Answer::ok(SUBJECT),
            "{protocol}"
        );
    }
    for client in [
        client("node", "connect", "1.1"),
        client("python", "connect", "1.1"),
    ] {
        let run = run_client(&authd, &tls, client, &[&tokens.valid], None, false, &[]).await?;
        assert_eq!(run.verify[0], refused, "{client:?}");
        let run = run_client(
            &authd,
            &tls,
            client,
            &[&tokens.valid],
            Some(&billing),
            false,
            &[],
        )
        .await?;
        assert_eq!(run.verify[0], Answer::ok(SUBJECT), "{client:?}");
    }
    Ok(())
}

/// `[server] connect = false` and `grpc_web = false`: both get HTTP 415
/// from curl and fail in their clients, while gRPC on the same port works;
/// with only Connect off, gRPC-Web still works.
#[tokio::test]
async fn protocols_turned_off_answer_415_while_grpc_works() -> Result<()> {
    let issuer = Issuer::start().await?;
    let tokens = tokens(&issuer).await?;
    let connect_off = ("AUTHD_SERVER__CONNECT", "false".to_owned());
    let grpc_web_off = ("AUTHD_SERVER__GRPC_WEB", "false".to_owned());
    let authd =
        AuthdProcess::start_with_env(&config(&issuer, ""), &[connect_off.clone(), grpc_web_off])
            .await?;
    let tls = Tls::plaintext();
    let body = verify_body(&tokens.valid).to_string();

    // Empty bodies: authd refuses by the content type alone, and over
    // HTTP/2 a refusal sent while curl still sends a body sometimes ends
    // in a stream error instead of the 415 (reported apart).
    for http2 in [false, true] {
        for (content_type, rpc, says) in [
            ("application/json", VERIFY, "connect = false"),
            ("application/proto", VERIFY, "connect = false"),
            (
                "application/connect+json",
                "/auth.v1.AuthService/WatchRevocations",
                "connect = false",
            ),
            ("application/grpc-web+proto", VERIFY, "grpc_web = false"),
            ("application/grpc-web-text", VERIFY, "grpc_web = false"),
        ] {
            let (status, _, text) = curl(&authd, &tls, http2, content_type, rpc, "", &[]).await?;
            assert_eq!(status, 415, "{content_type} http2={http2}: {text}");
            assert!(text.contains(says), "{content_type}: {text}");
        }
    }
    for protocol in ["connect", "grpcweb"] {
        let out = run_in(
            &venv_tool("buf")?,
            &strings(&[
                "curl",
                "--schema",
                "proto",
                "--protocol",
                protocol,
                "-d",
                &body,
                &format!("http://{}{VERIFY}", authd.addr),
            ]),
            &workspace(),
            None,
        )
        .await?;
        assert_ne!(out.code, Some(0), "{protocol}: {out:?}");
        assert!(!out.stdout.contains(SUBJECT), "{protocol}: {out:?}");
    }
    for client in [
        client("node", "connect", "1.1"),
        client("node", "grpcweb", "2"),
    ] {
        let run = run_client(&authd, &tls, client, &[&tokens.valid], None, false, &[]).await?;
        assert_ne!(run.verify[0].code, "ok", "{client:?}: {run:?}");
    }
    // gRPC on the same port: buf curl, the Node.js client, grpcurl, tonic.
    assert_eq!(
        buf_curl(
            &authd,
            &tls,
            "grpc",
            VERIFY,
            &verify_body(&tokens.valid),
            None
        )
        .await?,
        Answer::ok(SUBJECT)
    );
    let run = run_client(
        &authd,
        &tls,
        client("node", "grpc", "2"),
        &[&tokens.valid, &tokens.expired],
        None,
        false,
        &[],
    )
    .await?;
    assert_verified(&run, "node grpc with Connect and gRPC-Web off");
    let out = run_grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &authd.addr.to_string(),
        "auth.v1.AuthService/VerifyToken",
    ])
    .await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    let grpc = Channel::from_shared(authd.uri())?.connect().await?;
    assert_eq!(
        grpc_verify(&grpc, &tokens.valid, None).await?,
        Answer::ok(SUBJECT)
    );

    // Only Connect off: gRPC-Web answers.
    let authd = AuthdProcess::start_with_env(&config(&issuer, ""), &[connect_off]).await?;
    assert_eq!(
        buf_curl(
            &authd,
            &tls,
            "grpcweb",
            VERIFY,
            &verify_body(&tokens.valid),
            None
        )
        .await?,
        Answer::ok(SUBJECT)
    );
    let (status, _, text) =
        curl(&authd, &tls, false, "application/json", VERIFY, &body, &[]).await?;
    assert_eq!(status, 415, "{text}");
    Ok(())
}

//! `authd openapi`: the OpenAPI 3.1 document of the Connect JSON surface,
//! built from the same descriptors the port serves: one `POST` path per
//! unary RPC, request and answer schemas from the messages (proto3 JSON
//! mapping), the Connect error body, and the HTTP statuses each answer can
//! carry with the authd reasons behind each. `proto/openapi.yaml` is this
//! document; a test keeps it current.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::errors::{code_name, http_status};
use crate::{error::Reason, grpc::status::code};

/// The services described: authd's own, and gRPC health (Envoy's Check is
/// for Envoy, and is served but not described).
const DESCRIBED: [&str; 2] = ["auth.v1.AuthService", "grpc.health.v1.Health"];

/// The document, as JSON.
pub fn document() -> Result<Value, String> {
    let pool = super::descriptors()?;
    let mut paths = Map::new();
    let mut messages = BTreeMap::new();
    let mut streaming = Vec::new();
    for name in DESCRIBED {
        let service = pool
            .get_service_by_name(name)
            .ok_or_else(|| format!("{name} is not in the descriptor set"))?;
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            if method.is_client_streaming() {
                continue;
            }
            if method.is_server_streaming() {
                streaming.push(path);
                continue;
            }
            collect(&method.input(), &mut messages);
            collect(&method.output(), &mut messages);
            paths.insert(
                path,
                json!({
                    "post": {
                        "operationId": format!("{}.{}", service.name(), method.name()),
                        "tags": [service.full_name()],
                        "summary": first_sentence(&comments(method.parent_file().file_descriptor_proto(), &method)),
                        "description": comments(method.parent_file().file_descriptor_proto(), &method),
                        "parameters": [
                            {"$ref": "#/components/parameters/ConnectProtocolVersion"},
                            {"$ref": "#/components/parameters/ConnectTimeoutMs"}
                        ],
                        "requestBody": {
                            "required": true,
                            "content": {"application/json": {"schema": reference(&method.input())}}
                        },
                        "responses": responses(&method.output()),
                    }
                }),
            );
        }
    }
    let mut schemas = Map::new();
    for (name, message) in &messages {
        schemas.insert(name.clone(), message_schema(message));
    }
    schemas.insert("ConnectError".into(), connect_error());
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "authd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The Connect protocol's JSON surface of authd (connectrpc.com/docs/protocol): \
                 every unary RPC is `POST /<service>/<method>` with `Content-Type: application/json` \
                 (the proto3 JSON mapping; unknown fields are refused) on the same port as gRPC, \
                 over HTTP/1.1 or HTTP/2. The same RPCs take `application/proto` bodies, gRPC and \
                 gRPC-Web. No RPC is served by GET: a token must never travel in a URL. \
                 Server-streaming RPCs ({}) take `application/connect+json` enveloped messages, \
                 which OpenAPI does not describe. Callers identify as over gRPC: a client certificate \
                 under mutual TLS, or a service token in `authorization`.",
                streaming.join(", ")
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{"url": "http://127.0.0.1:50051", "description": "authd dev"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {
                "ConnectProtocolVersion": {
                    "name": "Connect-Protocol-Version",
                    "in": "header",
                    "required": false,
                    "description": "The Connect protocol version; authd speaks 1 and refuses any other.",
                    "schema": {"type": "string", "enum": ["1"]}
                },
                "ConnectTimeoutMs": {
                    "name": "Connect-Timeout-Ms",
                    "in": "header",
                    "required": false,
                    "description": "The caller's deadline in milliseconds (a positive integer of at most 10 digits); authd applies the shorter of it and `limits.request_timeout_ms`.",
                    "schema": {"type": "string", "pattern": "^0*[1-9][0-9]{0,9}$", "maxLength": 10}
                }
            },
            "securitySchemes": {
                "serviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A caller's service token, where `[[callers]]` asks for one."
                }
            }
        }
    }))
}

/// The answers of one unary RPC: the message, and every error status with
/// the reasons that produce it.
fn responses(output: &MessageDescriptor) -> Value {
    let mut by_status: BTreeMap<u16, BTreeMap<&'static str, BTreeSet<&'static str>>> =
        BTreeMap::new();
    for reason in Reason::ALL {
        let code = code(reason);
        by_status
            .entry(http_status(code).as_u16())
            .or_default()
            .entry(code_name(code))
            .or_default()
            .insert(reason.as_str());
    }
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "The answer.",
            "content": {"application/json": {"schema": reference(output)}}
        }),
    );
    for (status, codes) in by_status {
        let why: Vec<String> = codes
            .into_iter()
            .map(|(code, reasons)| {
                format!(
                    "`{code}`: {}",
                    reasons.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("{}.", why.join("; ")),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConnectError"}}}
            }),
        );
    }
    for (status, why) in [
        (
            "405",
            "Not POST: no RPC is served by GET, so that a token never travels in a URL.",
        ),
        (
            "415",
            "A content type the RPC is not served in, or a protocol turned off in `[server]`.",
        ),
        (
            "501",
            "`unimplemented`: a `Content-Encoding` other than gzip or identity.",
        ),
    ] {
        responses.insert(
            status.into(),
            json!({"description": why, "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": {"$ref": "#/components/schemas/ConnectError"}}}}),
        );
    }
    Value::Object(responses)
}

/// The Connect error body.
fn connect_error() -> Value {
    let codes: Vec<&str> = [
        tonic::Code::Cancelled,
        tonic::Code::Unknown,
        tonic::Code::InvalidArgument,
        tonic::Code::DeadlineExceeded,
        tonic::Code::NotFound,
        tonic::Code::AlreadyExists,
        tonic::Code::PermissionDenied,
        tonic::Code::ResourceExhausted,
        tonic::Code::FailedPrecondition,
        tonic::Code::Aborted,
        tonic::Code::OutOfRange,
        tonic::Code::Unimplemented,
        tonic::Code::Internal,
        tonic::Code::Unavailable,
        tonic::Code::DataLoss,
        tonic::Code::Unauthenticated,
    ]
    .into_iter()
    .map(code_name)
    .collect();
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    json!({
        "type": "object",
        "description": "A Connect error. `details` carries authd's `google.rpc.ErrorInfo`: `value` is its protobuf encoding (base64), `debug` the same in JSON.",
        "required": ["code"],
        "additionalProperties": false,
        "properties": {
            "code": {"type": "string", "enum": codes},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "value"],
                    "additionalProperties": false,
                    "properties": {
                        "type": {"type": "string", "examples": ["google.rpc.ErrorInfo"]},
                        "value": {"type": "string", "contentEncoding": "base64"},
                        "debug": {
                            "type": "object",
                            "required": ["reason", "domain"],
                            "additionalProperties": false,
                            "properties": {
                                "reason": {"type": "string", "enum": reasons},
                                "domain": {"type": "string", "const": authd_proto::ERROR_DOMAIN},
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}
                            }
                        }
                    }
                }
            }
        }
    })
}

/// `message` and every message its fields reach, by full name, except the
/// well-known types (written inline).
fn collect(message: &MessageDescriptor, into: &mut BTreeMap<String, MessageDescriptor>) {
    if well_known(message).is_some() || into.contains_key(message.full_name()) {
        return;
    }
    into.insert(message.full_name().to_owned(), message.clone());
    for field in message.fields() {
        match field.kind() {
            Kind::Message(m) if m.is_map_entry() => {
                if let Kind::Message(value) = m.map_entry_value_field().kind() {
                    collect(&value, into);
                }
            }
            Kind::Message(m) => collect(&m, into),
            _ => {}
        }
    }
}

fn reference(message: &MessageDescriptor) -> Value {
    well_known(message)
        .unwrap_or_else(|| json!({"$ref": format!("#/components/schemas/{}", message.full_name())}))
}

/// The JSON schema of a well-known type, whose JSON mapping is special.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.Empty" => json!({"type": "object", "additionalProperties": false}),
        "google.protobuf.StringValue" => json!({"type": "string"}),
        "google.protobuf.BoolValue" => json!({"type": "boolean"}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({"type": "integer"})
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => int64(),
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => json!({"type": "number"}),
        "google.protobuf.BytesValue" => json!({"type": "string", "contentEncoding": "base64"}),
        _ => return None,
    })
}

fn int64() -> Value {
    json!({"type": "string", "pattern": "^-?[0-9]+$", "format": "int64"})
}

/// A message as a JSON object: its fields by JSON name, nothing else.
fn message_schema(message: &MessageDescriptor) -> Value {
    let file = message.parent_file();
    let file = file.file_descriptor_proto();
    let mut properties = Map::new();
    for field in message.fields() {
        let mut schema = field_schema(&field);
        let doc = field_comments(file, &field);
        if !doc.is_empty()
            && let Value::Object(map) = &mut schema
        {
            if map.contains_key("$ref") {
                schema = json!({"allOf": [schema], "description": doc});
            } else {
                map.insert("description".into(), json!(doc));
            }
        }
        properties.insert(field.json_name().to_owned(), schema);
    }
    let mut schema = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    });
    let doc = location_comments(file, message.path());
    if !doc.is_empty() {
        schema["description"] = json!(doc);
    }
    schema
}

fn field_schema(field: &FieldDescriptor) -> Value {
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        return json!({
            "type": "object",
            "additionalProperties": single(&entry.map_entry_value_field()),
        });
    }
    let one = single(field);
    if field.is_list() {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

/// The schema of one value of `field`.
fn single(field: &FieldDescriptor) -> Value {
    match field.kind() {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "int32", "minimum": 0})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => int64(),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(m) => reference(&m),
    }
}

fn comments(
    file: &prost_types::FileDescriptorProto,
    method: &prost_reflect::MethodDescriptor,
) -> String {
    location_comments(file, method.path())
}

fn field_comments(file: &prost_types::FileDescriptorProto, field: &FieldDescriptor) -> String {
    location_comments(file, field.path())
}

/// The leading comment of the element at `path`, from the source info.
fn location_comments(file: &prost_types::FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn first_sentence(text: &str) -> String {
    match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text.to_owned(),
    }
}

/// `value` as YAML: block style, every string double-quoted (JSON's string
/// escapes are YAML's), keys plain where YAML reads them back as the same
/// string.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(value, 0, &mut out);
    out
}

fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                out.push_str(&pad);
                out.push_str(&yaml_key(key));
                out.push(':');
                nested(v, indent, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                out.push_str(&pad);
                out.push('-');
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest below it.
                        let mut first = String::new();
                        write_yaml(v, indent + 2, &mut first);
                        out.push(' ');
                        out.push_str(first.trim_start());
                    }
                    _ => nested(v, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

/// A value after `key:` or `-`: inline when scalar or empty, else indented
/// on the lines below.
fn nested(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&other.to_string());
            out.push('\n');
        }
    }
}

fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./$".contains(&b))
        && key.as_bytes()[0].is_ascii_alphabetic()
        || key.starts_with('/')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./".contains(&b))
        || key == "$ref";
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unary_rpc_is_a_path_with_its_schemas() {
        let doc = document().expect("document");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/auth.v1.AuthService/VerifyToken"));
        assert!(paths.contains_key("/auth.v1.AuthService/StartDeviceLogin"));
        assert!(paths.contains_key("/grpc.health.v1.Health/Check"));
        assert!(!paths.contains_key("/auth.v1.AuthService/WatchRevocations"));
        let verify = &paths["/auth.v1.AuthService/VerifyToken"]["post"];
        assert_eq!(
            verify["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ConnectError"
        );
        assert!(
            verify["responses"]["401"]["description"]
                .as_str()
                .expect("text")
                .contains("TOKEN_EXPIRED")
        );
        let request = &doc["components"]["schemas"]["auth.v1.VerifyTokenRequest"];
        assert_eq!(request["properties"]["requiredScopes"]["type"], "array");
        assert_eq!(request["additionalProperties"], false);
        let answer = &doc["components"]["schemas"]["auth.v1.VerifyTokenResponse"];
        assert_eq!(answer["properties"]["expiresAt"]["format"], "date-time");
    }

    #[test]
    fn yaml_keeps_strings_and_keys_as_they_were() {
        let yaml = to_yaml(
            &json!({"a": {"200": "x: y", "/p.S/M": ["one", {"k": 1, "j": true}]}, "e": {}}),
        );
        assert_eq!(
            yaml,
            "a:\n  /p.S/M:\n    - \"one\"\n    - j: true\n      k: 1\n  \"200\": \"x: y\"\ne: {}\n"
        );
    }
}

// authd through the official Connect client for Node.js
// (@connectrpc/connect-node): VerifyToken for each token given, then
// optionally WatchRevocations until its first heartbeat. One JSON line per
// call on stdout, read by tests/tests/connect_clients.rs.
//
// Usage: node verify.mjs --base-url URL [--protocol connect|connect-proto|grpcweb|grpc]
//          [--http 1.1|2] [--ca FILE] [--cert FILE --key FILE]
//          [--authorization TOKEN] [--watch] [--timeout-ms N] TOKEN...
//
// Each VerifyToken line: {"call":"verify","token":i,"ok":true,"subject":…,
// "scopes":[…],"claims":{…}} or {"call":"verify","token":i,"ok":false,
// "code":"unauthenticated","reason":"TOKEN_EXPIRED","domain":"authd",
// "metadata":{…},"raw_details":[{"type":…}]}.
// The watch line: {"call":"watch","ok":true,"heartbeats":1,"revocations":N,
// "cursor":…,"interval_ms":…} or the same error fields.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { toJson } from "@bufbuild/protobuf";
import { AuthService, VerifyTokenResponseSchema } from "./gen/auth/v1/auth_pb.js";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "base-url": { type: "string" },
    protocol: { type: "string", default: "connect" },
    http: { type: "string", default: "1.1" },
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    authorization: { type: "string" },
    watch: { type: "boolean", default: false },
    "timeout-ms": { type: "string", default: "10000" },
  },
});

const baseUrl = values["base-url"];
if (!baseUrl) {
  console.error("--base-url is required");
  process.exit(2);
}
const httpVersion = values.http === "2" ? "2" : "1.1";
const nodeOptions = {};
if (values.ca) nodeOptions.ca = readFileSync(values.ca);
if (values.cert) nodeOptions.cert = readFileSync(values.cert);
if (values.key) nodeOptions.key = readFileSync(values.key);
const options = { baseUrl, httpVersion, nodeOptions };

let transport;
switch (values.protocol) {
  case "connect":
    transport = createConnectTransport({ ...options, useBinaryFormat: false });
    break;
  case "connect-proto":
    transport = createConnectTransport({ ...options, useBinaryFormat: true });
    break;
  case "grpcweb":
    transport = createGrpcWebTransport({ ...options, useBinaryFormat: true });
    break;
  case "grpc":
    transport = createGrpcTransport({ baseUrl, nodeOptions });
    break;
  default:
    console.error(`unknown --protocol ${values.protocol}`);
    process.exit(2);
}

const client = createClient(AuthService, transport);
const timeoutMs = Number(values["timeout-ms"]);
const headers = values.authorization ? { authorization: `Bearer ${values.authorization}` } : {};

/** Connect's name of a code: Code.PermissionDenied → "permission_denied". */
function codeName(code) {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** What an error says: its code, and authd's reason from its ErrorInfo. */
function failure(error) {
  const e = ConnectError.from(error);
  const [info] = e.findDetails(ErrorInfoSchema);
  return {
    ok: false,
    code: codeName(e.code),
    message: e.rawMessage,
    reason: info?.reason ?? null,
    domain: info?.domain ?? null,
    metadata: info?.metadata ?? {},
    raw_details: e.details.map((d) => ({ type: "type" in d ? d.type : d.desc.typeName })),
  };
}

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

for (const [i, token] of positionals.entries()) {
  try {
    const answer = await client.verifyToken({ token }, { headers, timeoutMs });
    const json = toJson(VerifyTokenResponseSchema, answer);
    print({
      call: "verify",
      token: i,
      ok: true,
      subject: answer.subject,
      issuer: answer.issuer,
      scopes: answer.scopes,
      claims: json.claims ?? {},
      expires_at: json.expiresAt ?? null,
    });
  } catch (error) {
    print({ call: "verify", token: i, ...failure(error) });
  }
}

if (values.watch) {
  const abort = new AbortController();
  const seen = { call: "watch", ok: true, heartbeats: 0, revocations: 0, cursor: "" };
  try {
    const stream = client.watchRevocations(
      { cursor: "" },
      { headers, timeoutMs, signal: abort.signal },
    );
    for await (const message of stream) {
      seen.cursor = message.cursor;
      if (message.event.case === "revocation") {
        seen.revocations += 1;
      } else if (message.event.case === "heartbeat") {
        seen.heartbeats += 1;
        seen.interval_ms = message.event.value.intervalMs;
        break;
      }
    }
    abort.abort();
    print(seen);
  } catch (error) {
    print({ ...seen, ...failure(error) });
  }
}

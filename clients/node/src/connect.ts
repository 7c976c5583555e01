/**
 * The Connect channel to one endpoint: each unary call one `POST
 * /<service>/<method>` with `content-type: application/proto` over
 * `node:http` (or `node:https`) keep-alive connections, and
 * WatchRevocations as a Connect server stream (`application/connect+proto`
 * envelopes). Errors become the same {@link AuthError} as over gRPC: the
 * code from the Connect code name, authd's reason and metadata from the
 * ErrorInfo in the error body; an answer without a Connect body (a proxy's
 * 502, a 415) by its HTTP status, as the protocol says.
 */
import { fromBinary } from "@bufbuild/protobuf";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";

import { AuthError, Code, ERROR_DOMAIN } from "./errors.js";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { Attempt, Channel, StreamCall, StreamHandlers, Target, TlsOptions } from "./transport.js";

/** Connect's code names, as gRPC codes. */
const CODES: Readonly<Record<string, Code>> = {
  canceled: Code.CANCELLED,
  unknown: Code.UNKNOWN,
  invalid_argument: Code.INVALID_ARGUMENT,
  deadline_exceeded: Code.DEADLINE_EXCEEDED,
  not_found: Code.NOT_FOUND,
  already_exists: Code.ALREADY_EXISTS,
  permission_denied: Code.PERMISSION_DENIED,
  resource_exhausted: Code.RESOURCE_EXHAUSTED,
  failed_precondition: Code.FAILED_PRECONDITION,
  aborted: Code.ABORTED,
  out_of_range: Code.OUT_OF_RANGE,
  unimplemented: Code.UNIMPLEMENTED,
  internal: Code.INTERNAL,
  unavailable: Code.UNAVAILABLE,
  data_loss: Code.DATA_LOSS,
  unauthenticated: Code.UNAUTHENTICATED,
};

/** The code of an HTTP answer that carries no Connect error (the protocol's table). */
export function codeOfHttpStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.INTERNAL;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.UNAVAILABLE;
    default:
      return Code.UNKNOWN;
  }
}

interface ConnectDetail {
  type?: unknown;
  value?: unknown;
  debug?: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const stringMap = (v: unknown): Record<string, string> =>
  isObject(v)
    ? Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === "string"))
    : {};

/** authd's ErrorInfo among a Connect error's details: from its `value`, else from its `debug` form. */
function errorInfo(details: unknown): { reason: string; metadata: Record<string, string> } | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const detail of details as ConnectDetail[]) {
    if (!isObject(detail)) continue;
    const type = typeof detail.type === "string" ? detail.type.replace(/^.*\//, "") : "";
    if (type !== "google.rpc.ErrorInfo") continue;
    if (typeof detail.value === "string") {
      try {
        const info = fromBinary(ErrorInfoSchema, Buffer.from(detail.value, "base64"));
        // ErrorInfo of another domain (a proxy, another service) says
        // nothing about authd's decision.
        if (info.domain === ERROR_DOMAIN) return { reason: info.reason, metadata: info.metadata };
      } catch {
        // Not protobuf: the debug form, if there is one.
      }
    }
    const debug = detail.debug;
    if (isObject(debug) && debug.domain === ERROR_DOMAIN && typeof debug.reason === "string") {
      return { reason: debug.reason, metadata: stringMap(debug.metadata) };
    }
  }
  return undefined;
}

/** A Connect error (`{"code", "message", "details"}`) as an AuthError; `undefined` when `json` is not one. */
export function fromConnectError(json: unknown, cause?: unknown): AuthError | undefined {
  if (!isObject(json) || typeof json.code !== "string") return undefined;
  const code = CODES[json.code] ?? Code.UNKNOWN;
  const message = typeof json.message === "string" ? json.message : json.code;
  const info = errorInfo(json.details);
  return new AuthError(code, message, info?.reason, info?.metadata, { cause });
}

/** The error of a unary answer that is not a message: its Connect error, else by its HTTP status. */
export function unaryError(status: number, contentType: string | undefined, body: Buffer): AuthError {
  if (/^application\/json\b/i.test(contentType ?? "")) {
    try {
      const error = fromConnectError(JSON.parse(body.toString("utf8")));
      if (error) return error;
    } catch {
      // Not JSON: by the status.
    }
  }
  const text = body.subarray(0, 200).toString("utf8").trim();
  return new AuthError(
    status === 200 ? Code.INTERNAL : codeOfHttpStatus(status),
    status === 200
      ? `authd answered content-type ${contentType ?? "(none)"}, not application/proto`
      : `HTTP ${status}${text ? `: ${text}` : ""}`,
  );
}

/** `application/proto` with parameters, in any case. */
const isProto = (type: string | undefined): boolean => /^application\/proto\s*(;|$)/i.test(type ?? "");

/** A failure of the connection itself (refused, reset, TLS): UNAVAILABLE, as grpc-js says it. */
const unavailable = (error: Error): AuthError =>
  new AuthError(Code.UNAVAILABLE, `authd could not be reached: ${error.message}`, undefined, {}, { cause: error });

/** HTTP/1.1 connections to one endpoint at most: authd's default `max_concurrent_streams` on one HTTP/2 connection. */
const MAX_CONNECTIONS = 100;

/** The flag of a stream's last envelope. */
const END_STREAM = 0x02;

/** What one HTTP exchange reports (either HTTP version). */
interface ExchangeHandlers {
  response(status: number, contentType: string | undefined): void;
  data(chunk: Buffer): void;
  end(): void;
  /** `unread`: authd never read the request (a connection closed as it went out), so sending it again is safe. */
  error(error: Error, unread: boolean): void;
}

/** One HTTP exchange in progress. */
interface Exchange {
  cancel(): void;
}

/** The way HTTP requests reach one endpoint: HTTP/2 (one connection, multiplexed) or HTTP/1.1 (a keep-alive pool). */
interface Http {
  exchange(path: string, headers: Record<string, string | number>, body: Uint8Array, on: ExchangeHandlers): Exchange;
  close(): void;
}

/** How long a connection may sit idle before the client closes it (authd's own idle timeout is 300 s by default). */
const IDLE_MS = 30_000;

/** HTTP/2: one connection (h2c, or TLS with ALPN `h2`), made at the first call and again after it closes. */
class Http2 implements Http {
  readonly #origin: string;
  readonly #options: http2.SecureClientSessionOptions;
  #session: { connection: http2.ClientHttp2Session; open: number } | undefined;
  #closed = false;

  constructor(target: Target, tls: TlsOptions | undefined) {
    this.#origin = `${target.secure ? "https" : "http"}://${target.authority}`;
    this.#options = target.secure
      ? { ca: tls?.ca, cert: tls?.cert, key: tls?.key, servername: tls?.servername, ALPNProtocols: ["h2"] }
      : {};
  }

  /** The connection, made now if there is none; `open` counts the streams on it. */
  #connected(): { connection: http2.ClientHttp2Session; open: number } {
    const current = this.#session;
    if (current && !current.connection.closed && !current.connection.destroyed) return current;
    const connection = http2.connect(this.#origin, this.#options);
    const session = { connection, open: 0 };
    // Its failures reach each stream on it, as their errors.
    connection.on("error", () => undefined);
    const forget = (): void => {
      if (this.#session === session) this.#session = undefined;
    };
    connection.once("close", forget);
    connection.once("goaway", forget);
    connection.setTimeout(IDLE_MS, () => connection.close());
    connection.unref();
    this.#session = session;
    return session;
  }

  exchange(path: string, headers: Record<string, string | number>, body: Uint8Array, on: ExchangeHandlers): Exchange {
    if (this.#closed) throw new AuthError(Code.CANCELLED, "the AuthClient is closed");
    const session = this.#connected();
    const stream = session.connection.request({ ":method": "POST", ":path": path, ...headers });
    // The connection keeps the process alive while a call is open on it, not when idle.
    if (session.open++ === 0) session.connection.ref();
    stream.once("close", () => {
      if (--session.open === 0) session.connection.unref();
    });
    let responded = false;
    let over = false;
    stream.on("response", (h) => {
      responded = true;
      const type = h["content-type"] as string | string[] | undefined;
      on.response(Number(h[":status"]), Array.isArray(type) ? type[0] : type);
    });
    stream.on("data", (chunk: Buffer) => on.data(chunk));
    stream.on("end", () => {
      over = true;
      on.end();
    });
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (over) return;
      over = true;
      const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
      on.error(e, !responded && (refused || e.code === "ERR_HTTP2_GOAWAY_SESSION"));
    });
    stream.on("close", () => {
      if (over) return;
      over = true;
      const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
      on.error(new Error(`the HTTP/2 stream was closed (code ${stream.rstCode})`), !responded && refused);
    });
    stream.end(body);
    return {
      cancel: () => {
        over = true;
        stream.close(http2.constants.NGHTTP2_CANCEL);
      },
    };
  }

  close(): void {
    this.#closed = true;
    this.#session?.connection.destroy();
    this.#session = undefined;
  }
}

/** The first value of header `name` (lowercase) in a `rawHeaders` list: no headers object made. */
function rawHeader(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) return raw[i + 1];
  return undefined;
}

/** HTTP/1.1: a keep-alive pool of at most MAX_CONNECTIONS (one exchange at a time each). */
class Http1 implements Http {
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  readonly #host: string;
  readonly #port: number;
  readonly #authority: string;

  constructor(target: Target, tls: TlsOptions | undefined) {
    this.#host = target.host;
    this.#port = target.port;
    this.#authority = target.authority;
    // Idle connections are closed by the client, before authd's idle
    // timeout closes them under a request. At most MAX_CONNECTIONS to one
    // endpoint: a burst of calls waits for one (under its deadline) rather
    // than opening a connection each, as HTTP/2 waits within authd's
    // max_concurrent_streams.
    const common = {
      keepAlive: true,
      timeout: IDLE_MS,
      scheduling: "lifo" as const,
      maxSockets: MAX_CONNECTIONS,
      maxFreeSockets: MAX_CONNECTIONS,
    };
    if (target.secure) {
      this.#agent = new https.Agent({
        ...common,
        ca: tls?.ca,
        cert: tls?.cert,
        key: tls?.key,
        servername: tls?.servername,
        ALPNProtocols: ["http/1.1"],
      });
      this.#request = https.request;
    } else {
      this.#agent = new http.Agent(common);
      this.#request = http.request;
    }
  }

  exchange(path: string, headers: Record<string, string | number>, body: Uint8Array, on: ExchangeHandlers): Exchange {
    // Headers as a flat list (`rawHeaders`' form): node checks and writes
    // each one without keeping a headers object for the request.
    const list = ["host", this.#authority];
    for (const name in headers) list.push(name, String(headers[name]));
    const req = this.#request({
      agent: this.#agent,
      host: this.#host,
      port: this.#port,
      method: "POST",
      path,
      headers: list,
    });
    let responded = false;
    req.on("response", (res) => {
      responded = true;
      on.response(res.statusCode ?? 0, rawHeader(res.rawHeaders, "content-type"));
      res.on("data", (chunk: Buffer) => on.data(chunk));
      res.on("end", () => on.end());
      res.on("error", (e) => on.error(e, false));
    });
    req.on("error", (e: NodeJS.ErrnoException) => {
      const stale = req.reusedSocket && !responded && (e.code === "ECONNRESET" || e.code === "EPIPE");
      on.error(e, stale);
    });
    req.end(body);
    return { cancel: () => req.destroy() };
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Which HTTP a Connect channel speaks. */
export type HttpVersion = "2" | "1.1";

export class ConnectChannel implements Channel {
  readonly #http: Http;

  constructor(target: Target, tls: TlsOptions | undefined, version: HttpVersion = "2") {
    this.#http = version === "2" ? new Http2(target, tls) : new Http1(target, tls);
  }

  #headers(contentType: string, length: number, serviceToken: string | undefined): Record<string, string | number> {
    const headers: Record<string, string | number> = {
      "content-type": contentType,
      "content-length": length,
      "connect-protocol-version": "1",
      "user-agent": "authd-client-node",
    };
    if (serviceToken !== undefined) headers.authorization = `Bearer ${serviceToken}`;
    return headers;
  }

  unary(path: string, request: Uint8Array, attempt: Attempt): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const headers = this.#headers("application/proto", request.byteLength, attempt.serviceToken);
      if (attempt.timeoutMs !== undefined) {
        // A positive integer of at most 10 digits, as the protocol has it.
        headers["connect-timeout-ms"] = Math.min(9_999_999_999, Math.max(1, Math.ceil(attempt.timeoutMs)));
      }
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let current: Exchange | undefined;
      const signal = attempt.signal;
      const finish = (error: AuthError | undefined, answer?: Uint8Array): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (error) reject(error);
        else resolve(answer!);
      };
      const send = (resent: boolean): void => {
        const chunks: Buffer[] = [];
        let status = 0;
        let type: string | undefined;
        try {
          current = this.#http.exchange(path, headers, request, {
            response: (s, t) => ((status = s), (type = t)),
            data: (chunk) => chunks.push(chunk),
            end: () => {
              if (done) return;
              const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
              if (status === 200 && (type === "application/proto" || isProto(type))) finish(undefined, body);
              else finish(unaryError(status, type, body));
            },
            error: (e, unread) => {
              if (done) return;
              // A connection authd closed as this request went out: authd
              // never read it, so it is sent again, once, on a new one.
              if (unread && !resent) send(true);
              else finish(unavailable(e));
            },
          });
        } catch (error) {
          finish(error instanceof AuthError ? error : unavailable(error as Error));
        }
      };
      const onAbort = (): void => {
        current?.cancel();
        finish(new AuthError(Code.CANCELLED, "the call was cancelled"));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      if (attempt.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          current?.cancel();
          finish(new AuthError(Code.DEADLINE_EXCEEDED, `no answer from authd within ${attempt.timeoutMs} ms`));
        }, attempt.timeoutMs);
      }
      send(false);
    });
  }

  serverStream(
    path: string,
    request: Uint8Array,
    serviceToken: string | undefined,
    handlers: StreamHandlers,
  ): StreamCall {
    const envelope = Buffer.allocUnsafe(5 + request.byteLength);
    envelope[0] = 0;
    envelope.writeUInt32BE(request.byteLength, 1);
    envelope.set(request, 5);
    let ended = false;
    let exchange: Exchange | undefined;
    const end = (error: AuthError | undefined): void => {
      if (ended) return;
      ended = true;
      handlers.end(error);
      exchange?.cancel();
    };
    let streaming = false;
    let status = 0;
    let type: string | undefined;
    let opened = false;
    let buffered: Buffer = Buffer.alloc(0);
    const errorBody: Buffer[] = [];
    try {
      exchange = this.#http.exchange(
        path,
        this.#headers("application/connect+proto", envelope.byteLength, serviceToken),
        envelope,
        {
          response: (s, t) => {
            status = s;
            type = t;
            streaming = s === 200 && t === "application/connect+proto";
          },
          data: (chunk) => {
            if (!streaming) {
              errorBody.push(chunk);
              return;
            }
            buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
            while (!ended && buffered.length >= 5) {
              const length = buffered.readUInt32BE(1);
              if (buffered.length < 5 + length) break;
              const flags = buffered[0]!;
              const message = buffered.subarray(5, 5 + length);
              buffered = buffered.subarray(5 + length);
              if (flags === END_STREAM) {
                end(endOfStream(message));
              } else if (flags === 0) {
                if (!opened) {
                  opened = true;
                  handlers.open();
                }
                handlers.message(message);
              } else {
                end(new AuthError(Code.INTERNAL, `unexpected envelope flags ${flags} on a stream message`));
              }
            }
          },
          end: () =>
            end(
              streaming
                ? new AuthError(Code.UNAVAILABLE, "the stream ended without its end-of-stream message")
                : unaryError(status, type, Buffer.concat(errorBody)),
            ),
          error: (e) => end(unavailable(e)),
        },
      );
    } catch (error) {
      queueMicrotask(() => end(error instanceof AuthError ? error : unavailable(error as Error)));
    }
    return { cancel: () => end(new AuthError(Code.CANCELLED, "the stream was cancelled")) };
  }

  close(): void {
    this.#http.close();
  }
}

/** The status in a stream's end-of-stream message (`{"error"?, "metadata"?}`). */
function endOfStream(json: Buffer): AuthError | undefined {
  let end: unknown;
  try {
    end = JSON.parse(json.toString("utf8"));
  } catch {
    return new AuthError(Code.INTERNAL, "the end-of-stream message is not JSON");
  }
  if (!isObject(end) || end.error === undefined || end.error === null) return undefined;
  return (
    fromConnectError(end.error) ?? new AuthError(Code.UNKNOWN, "the end-of-stream message has an unreadable error")
  );
}

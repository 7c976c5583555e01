/**
 * The way to authd: one channel per endpoint (the Connect protocol over
 * `node:http`, or grpc-js), a call balanced over them (power of two choices
 * on calls in flight), a deadline per attempt, and retries of idempotent
 * calls on `UNAVAILABLE` only, on another endpoint when there is one.
 * Messages are encoded and decoded here, once, whatever the protocol.
 */
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";

import { ConnectChannel, type HttpVersion } from "./connect.js";
import { AuthError, Code } from "./errors.js";

/** TLS to authd: PEM contents (read them with `fs.readFileSync`). */
export interface TlsOptions {
  /** The CA certificates that sign authd's certificate; default: Node's roots. */
  ca?: string | Buffer;
  /** The client certificate chain, for mutual TLS. */
  cert?: string | Buffer;
  /** The client certificate's key, for mutual TLS. */
  key?: string | Buffer;
  /** The name authd's certificate must carry, when it differs from the endpoint's host. */
  servername?: string;
}

/** Retries of idempotent calls that failed with `UNAVAILABLE`; no other code is ever retried. */
export interface RetryOptions {
  /** Attempts in all, the first included; 1 disables retries. Defaults to 3. */
  maxAttempts?: number;
  /** The wait before the first retry, doubled each time. Defaults to 50 ms. */
  initialBackoffMs?: number;
  /** The longest wait between attempts. Defaults to 1 000 ms. */
  maxBackoffMs?: number;
}

/**
 * How the client speaks to authd: `"connect"` (the Connect protocol,
 * binary protobuf over `node:http2`, or HTTP/1.1 keep-alive connections)
 * or `"grpc"` (gRPC over HTTP/2, grpc-js).
 */
export type Protocol = "connect" | "grpc";

export interface TransportOptions {
  endpoints: string[];
  protocol: Protocol;
  httpVersion: HttpVersion;
  tls?: TlsOptions;
  timeoutMs: number | undefined;
  retry: Required<RetryOptions>;
}

/** What one call may add. */
export interface CallOptions {
  /** A service token sent as `authorization: Bearer …` (trusted calls). */
  serviceToken?: string;
  /** This call's deadline per attempt; overrides the client's `timeoutMs`. */
  timeoutMs?: number;
  /** Cancels the call (it fails with `CANCELLED`). */
  signal?: AbortSignal;
}

/** One attempt of a unary call, as a channel sees it. */
export interface Attempt {
  serviceToken: string | undefined;
  /** Milliseconds this attempt may take; `undefined`: no deadline. */
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
}

/** What a server stream reports to its reader. */
export interface StreamHandlers {
  /** The stream is open: authd answered and sent its first message (at most once, before that message). */
  open(): void;
  /** One message, encoded. */
  message(bytes: Uint8Array): void;
  /** The stream ended: `undefined` when it ended well. Called once; nothing follows. */
  end(error: AuthError | undefined): void;
}

/** A server stream in progress. */
export interface StreamCall {
  /** Ends it; `end` is called with `CANCELLED` if it has not ended yet. */
  cancel(): void;
}

/** A connection (or pool of them) to one endpoint, in one protocol. */
export interface Channel {
  unary(path: string, request: Uint8Array, attempt: Attempt): Promise<Uint8Array>;
  serverStream(
    path: string,
    request: Uint8Array,
    serviceToken: string | undefined,
    handlers: StreamHandlers,
  ): StreamCall;
  close(): void;
}

/** The wait before retry number `retry` (1-based): exponential, capped, jittered into its upper half. */
export function backoff(retry: Required<RetryOptions>, n: number): number {
  const full = Math.min(retry.initialBackoffMs * 2 ** (n - 1), retry.maxBackoffMs);
  return full / 2 + (Math.random() * full) / 2;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });

interface Endpoint {
  target: string;
  channel: Channel;
  inFlight: number;
}

/** Where an endpoint is: `host:port`, and whether it takes TLS. */
export interface Target {
  host: string;
  port: number;
  /** `host:port` (an IPv6 host in brackets). */
  authority: string;
  secure: boolean;
}

/** `http://h:p` (plaintext), `https://h:p` (TLS) or `h:p` (TLS when `tls` is given). */
export function parseEndpoint(uri: string, tls: TlsOptions | undefined): Target {
  const url = /^(https?):\/\/([^/]+)\/?$/.exec(uri);
  const authority = url ? url[2]! : /^[^/]+:\d+$/.test(uri) ? uri : undefined;
  const secure = url ? url[1] === "https" : tls !== undefined;
  const parts = authority === undefined ? null : /^(\[[^\]]+\]|[^:[\]]+)(?::(\d+))?$/.exec(authority);
  const port = parts ? Number(parts[2] ?? (secure ? 443 : 80)) : 0;
  if (!parts || !(port > 0 && port < 65_536)) {
    throw new AuthError(
      Code.INVALID_ARGUMENT,
      `not an authd endpoint: ${uri} (expected http://host:port or https://host:port)`,
    );
  }
  return { host: parts[1]!.replace(/^\[(.*)\]$/, "$1"), port, authority: `${parts[1]}:${port}`, secure };
}

/** `./grpc.js` and `@grpc/grpc-js` under it, loaded at the first gRPC call: a client speaking Connect never loads them. */
let grpcModule: Promise<typeof import("./grpc.js")> | undefined;

/** A gRPC channel made when its first call is: until then, grpc-js is not loaded. */
class LazyGrpcChannel implements Channel {
  readonly #target: Target;
  readonly #tls: TlsOptions | undefined;
  #channel: Promise<Channel> | undefined;
  #closed = false;

  constructor(target: Target, tls: TlsOptions | undefined) {
    this.#target = target;
    this.#tls = tls;
  }

  #made(): Promise<Channel> {
    if (this.#closed) return Promise.reject(new AuthError(Code.CANCELLED, "the AuthClient is closed"));
    this.#channel ??= (grpcModule ??= import("./grpc.js")).then(
      ({ GrpcChannel }) => new GrpcChannel(this.#target, this.#tls),
      (error: Error) => {
        grpcModule = undefined;
        this.#channel = undefined;
        throw new AuthError(Code.INTERNAL, `@grpc/grpc-js could not be loaded: ${error.message}`);
      },
    );
    return this.#channel;
  }

  unary(path: string, request: Uint8Array, attempt: Attempt): Promise<Uint8Array> {
    return this.#made().then((channel) => channel.unary(path, request, attempt));
  }

  serverStream(
    path: string,
    request: Uint8Array,
    serviceToken: string | undefined,
    handlers: StreamHandlers,
  ): StreamCall {
    let call: StreamCall | undefined;
    let ended = false;
    const end = (error: AuthError): void => {
      if (ended) return;
      ended = true;
      handlers.end(error);
    };
    this.#made().then(
      (channel) => {
        if (!ended) call = channel.serverStream(path, request, serviceToken, handlers);
      },
      (error: AuthError) => end(error),
    );
    return {
      cancel: () => (call ? call.cancel() : end(new AuthError(Code.CANCELLED, "the stream was cancelled"))),
    };
  }

  close(): void {
    this.#closed = true;
    this.#channel?.then(
      (channel) => channel.close(),
      () => undefined,
    );
  }
}

/** A method's HTTP path, `/<service>/<method>`, made once per method. */
const paths = new WeakMap<object, string>();
function pathOf(method: { parent: { typeName: string }; name: string }): string {
  let path = paths.get(method);
  if (path === undefined) paths.set(method, (path = `/${method.parent.typeName}/${method.name}`));
  return path;
}

export class Transport {
  readonly #endpoints: Endpoint[];
  readonly #timeoutMs: number | undefined;
  readonly #retry: Required<RetryOptions>;
  readonly protocol: Protocol;

  constructor(options: TransportOptions) {
    if (options.endpoints.length === 0) throw new AuthError(Code.INVALID_ARGUMENT, "no authd endpoint");
    if (options.protocol !== "connect" && options.protocol !== "grpc") {
      throw new AuthError(Code.INVALID_ARGUMENT, `protocol: "connect" or "grpc", not ${String(options.protocol)}`);
    }
    if (options.httpVersion !== "2" && options.httpVersion !== "1.1") {
      throw new AuthError(Code.INVALID_ARGUMENT, `httpVersion: "2" or "1.1", not ${String(options.httpVersion)}`);
    }
    this.protocol = options.protocol;
    this.#timeoutMs = options.timeoutMs;
    this.#retry = options.retry;
    const targets = options.endpoints.map((uri) => parseEndpoint(uri, options.tls));
    this.#endpoints = targets.map((target) => ({
      target: target.authority,
      channel:
        options.protocol === "connect"
          ? new ConnectChannel(target, options.tls, options.httpVersion)
          : new LazyGrpcChannel(target, options.tls),
      inFlight: 0,
    }));
  }

  /** Two endpoints at random, the one with fewer calls in flight; avoids `not` when it can. */
  #pick(not?: Endpoint): Endpoint {
    const list = this.#endpoints.length > 1 && not ? this.#endpoints.filter((e) => e !== not) : this.#endpoints;
    const a = list[Math.floor(Math.random() * list.length)]!;
    if (list.length === 1) return a;
    const b = list[Math.floor(Math.random() * list.length)]!;
    return b.inFlight < a.inFlight ? b : a;
  }

  /** An endpoint for a long-lived stream: each reconnection takes the next one. */
  #streamTurn = 0;
  #streamEndpoint(): Endpoint {
    const e = this.#endpoints[this.#streamTurn % this.#endpoints.length]!;
    this.#streamTurn += 1;
    return e;
  }

  /** One unary call; retried on `UNAVAILABLE` when `idempotent`. */
  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    idempotent: boolean,
    options: CallOptions = {},
  ): Promise<MessageShape<O>> {
    const path = pathOf(method);
    const bytes = toBinary(method.input, create(method.input, request));
    const attempts = idempotent ? Math.max(1, this.#retry.maxAttempts) : 1;
    const attempt: Attempt = {
      serviceToken: options.serviceToken,
      timeoutMs: options.timeoutMs ?? this.#timeoutMs,
      signal: options.signal,
    };
    let endpoint: Endpoint | undefined;
    for (let n = 1; ; n += 1) {
      if (this.#closed) throw new AuthError(Code.CANCELLED, "the AuthClient is closed");
      if (options.signal?.aborted) throw new AuthError(Code.CANCELLED, "the call was cancelled");
      endpoint = this.#pick(endpoint);
      const chosen = endpoint;
      chosen.inFlight += 1;
      let answer: Uint8Array;
      try {
        answer = await chosen.channel.unary(path, bytes, attempt);
      } catch (error) {
        if (!(error instanceof AuthError) || error.code !== Code.UNAVAILABLE || n >= attempts) throw error;
        if (options.signal?.aborted) throw error;
        await sleep(backoff(this.#retry, n), options.signal);
        continue;
      } finally {
        chosen.inFlight -= 1;
      }
      try {
        return fromBinary(method.output, answer);
      } catch (error) {
        throw new AuthError(
          Code.INTERNAL,
          `authd's answer does not decode: ${String(error)}`,
          undefined,
          {},
          {
            cause: error,
          },
        );
      }
    }
  }

  /**
   * A server stream on the next endpoint: `onMessage` gets each message
   * decoded. A message that does not decode ends the stream (`INTERNAL`).
   */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    serviceToken: string | undefined,
    handlers: { open(): void; message(m: MessageShape<O>): void; end(error: AuthError | undefined): void },
  ): StreamCall {
    const path = pathOf(method);
    if (this.#closed) {
      queueMicrotask(() => handlers.end(new AuthError(Code.CANCELLED, "the AuthClient is closed")));
      return { cancel: () => undefined };
    }
    let ended = false;
    const end = (error: AuthError | undefined): void => {
      if (ended) return;
      ended = true;
      handlers.end(error);
    };
    const call: StreamCall = this.#streamEndpoint().channel.serverStream(
      path,
      toBinary(method.input, create(method.input, request)),
      serviceToken,
      {
        open: () => !ended && handlers.open(),
        message: (bytes) => {
          if (ended) return;
          let message: MessageShape<O>;
          try {
            message = fromBinary(method.output, bytes);
          } catch (error) {
            end(new AuthError(Code.INTERNAL, `a stream message does not decode: ${String(error)}`));
            call.cancel();
            return;
          }
          handlers.message(message);
        },
        end,
      },
    );
    return call;
  }

  #closed = false;

  close(): void {
    this.#closed = true;
    for (const e of this.#endpoints) e.channel.close();
  }
}

/**
 * The way to authd: one grpc-js channel per endpoint, a call balanced over
 * them (power of two choices on calls in flight), a deadline per attempt,
 * and retries of idempotent calls on `UNAVAILABLE` only, on another
 * endpoint when there is one.
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
import * as grpc from "@grpc/grpc-js";

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

export interface TransportOptions {
  endpoints: string[];
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

const bufferOf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

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
  client: grpc.Client;
  inFlight: number;
}

/** `http://h:p` (plaintext), `https://h:p` (TLS) or `h:p` (TLS when `tls` is given). */
function parseEndpoint(uri: string, tls: TlsOptions | undefined): { target: string; secure: boolean } {
  const match = /^(https?):\/\/([^/]+)\/?$/.exec(uri);
  if (match) return { target: match[2]!, secure: match[1] === "https" };
  if (/^[^/]+:\d+$/.test(uri)) return { target: uri, secure: tls !== undefined };
  throw new AuthError(
    Code.INVALID_ARGUMENT,
    `not an authd endpoint: ${uri} (expected http://host:port or https://host:port)`,
  );
}

export class Transport {
  readonly #endpoints: Endpoint[];
  readonly #timeoutMs: number | undefined;
  readonly #retry: Required<RetryOptions>;

  constructor(options: TransportOptions) {
    if (options.endpoints.length === 0) throw new AuthError(Code.INVALID_ARGUMENT, "no authd endpoint");
    this.#timeoutMs = options.timeoutMs;
    this.#retry = options.retry;
    this.#endpoints = options.endpoints.map((uri) => {
      const { target, secure } = parseEndpoint(uri, options.tls);
      const tls = options.tls ?? {};
      const credentials = secure
        ? grpc.credentials.createSsl(
            tls.ca === undefined ? null : Buffer.from(tls.ca),
            tls.key === undefined ? null : Buffer.from(tls.key),
            tls.cert === undefined ? null : Buffer.from(tls.cert),
          )
        : grpc.credentials.createInsecure();
      const channelOptions: grpc.ChannelOptions = { "grpc.primary_user_agent": "authd-client-node" };
      if (secure && tls.servername) channelOptions["grpc.ssl_target_name_override"] = tls.servername;
      return { target, client: new grpc.Client(target, credentials, channelOptions), inFlight: 0 };
    });
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
  streamEndpoint(): Endpoint {
    const e = this.#endpoints[this.#streamTurn % this.#endpoints.length]!;
    this.#streamTurn += 1;
    return e;
  }

  #metadata(options: CallOptions): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (options.serviceToken !== undefined) metadata.set("authorization", `Bearer ${options.serviceToken}`);
    return metadata;
  }

  /** One unary call; retried on `UNAVAILABLE` when `idempotent`. */
  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    idempotent: boolean,
    options: CallOptions = {},
  ): Promise<MessageShape<O>> {
    const path = `/${method.parent.typeName}/${method.name}`;
    const message = create(method.input, request);
    const serialize = (m: MessageShape<I>): Buffer => bufferOf(toBinary(method.input, m));
    const deserialize = (b: Buffer): MessageShape<O> => fromBinary(method.output, b);
    const attempts = idempotent ? Math.max(1, this.#retry.maxAttempts) : 1;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    let endpoint: Endpoint | undefined;
    for (let attempt = 1; ; attempt += 1) {
      endpoint = this.#pick(endpoint);
      const chosen = endpoint;
      chosen.inFlight += 1;
      try {
        return await new Promise<MessageShape<O>>((resolve, reject) => {
          const callOptions: grpc.CallOptions = {};
          if (timeoutMs !== undefined) callOptions.deadline = Date.now() + timeoutMs;
          if (this.#closed) {
            reject(new AuthError(Code.CANCELLED, "the AuthClient is closed"));
            return;
          }
          const call = chosen.client.makeUnaryRequest(
            path,
            serialize,
            deserialize,
            message,
            this.#metadata(options),
            callOptions,
            (error, answer) => (error ? reject(AuthError.fromGrpc(error)) : resolve(answer!)),
          );
          if (options.signal?.aborted) call.cancel();
          else options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
        });
      } catch (error) {
        if (!(error instanceof AuthError) || error.code !== Code.UNAVAILABLE || attempt >= attempts) throw error;
        if (options.signal?.aborted) throw error;
      } finally {
        chosen.inFlight -= 1;
      }
      await sleep(backoff(this.#retry, attempt), options.signal);
    }
  }

  /** A server stream on `endpoint`. */
  serverStream<I extends DescMessage, O extends DescMessage>(
    endpoint: Endpoint,
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    options: CallOptions = {},
  ): grpc.ClientReadableStream<MessageShape<O>> {
    const path = `/${method.parent.typeName}/${method.name}`;
    return endpoint.client.makeServerStreamRequest(
      path,
      (m: MessageShape<I>) => bufferOf(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, request),
      this.#metadata(options),
      {},
    );
  }

  #closed = false;

  close(): void {
    this.#closed = true;
    for (const e of this.#endpoints) e.client.close();
  }
}

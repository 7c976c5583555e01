/**
 * The gRPC channel to one endpoint: a grpc-js client over HTTP/2 (h2c or
 * TLS), messages passed through already encoded.
 */
import * as grpc from "@grpc/grpc-js";

import { AuthError } from "./errors.js";
import type { Attempt, Channel, StreamCall, StreamHandlers, Target, TlsOptions } from "./transport.js";

const bufferOf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const same = (b: Buffer): Buffer => b;

export class GrpcChannel implements Channel {
  readonly #client: grpc.Client;

  constructor(target: Target, tls: TlsOptions | undefined) {
    const t = tls ?? {};
    const credentials = target.secure
      ? grpc.credentials.createSsl(
          t.ca === undefined ? null : Buffer.from(t.ca),
          t.key === undefined ? null : Buffer.from(t.key),
          t.cert === undefined ? null : Buffer.from(t.cert),
        )
      : grpc.credentials.createInsecure();
    const channelOptions: grpc.ChannelOptions = { "grpc.primary_user_agent": "authd-client-node" };
    if (target.secure && t.servername) channelOptions["grpc.ssl_target_name_override"] = t.servername;
    this.#client = new grpc.Client(target.authority, credentials, channelOptions);
  }

  #metadata(serviceToken: string | undefined): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (serviceToken !== undefined) metadata.set("authorization", `Bearer ${serviceToken}`);
    return metadata;
  }

  unary(path: string, request: Uint8Array, attempt: Attempt): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const callOptions: grpc.CallOptions = {};
      if (attempt.timeoutMs !== undefined) callOptions.deadline = Date.now() + attempt.timeoutMs;
      const call = this.#client.makeUnaryRequest(
        path,
        same,
        same,
        bufferOf(request),
        this.#metadata(attempt.serviceToken),
        callOptions,
        (error, answer) => (error ? reject(AuthError.fromGrpc(error)) : resolve(answer!)),
      );
      if (attempt.signal?.aborted) call.cancel();
      else attempt.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  serverStream(
    path: string,
    request: Uint8Array,
    serviceToken: string | undefined,
    handlers: StreamHandlers,
  ): StreamCall {
    const call = this.#client.makeServerStreamRequest(
      path,
      same,
      same,
      bufferOf(request),
      this.#metadata(serviceToken),
      {},
    );
    let opened = false;
    call.on("metadata", () => {
      if (!opened) {
        opened = true;
        handlers.open();
      }
    });
    call.on("data", (message: Buffer) => {
      if (!opened) {
        opened = true;
        handlers.open();
      }
      handlers.message(message);
    });
    // Errors arrive again, with their trailers, as the status.
    call.on("error", () => undefined);
    call.on("status", (status) =>
      handlers.end(status.code === grpc.status.OK ? undefined : AuthError.fromGrpc(status)),
    );
    return { cancel: () => call.cancel() };
  }

  close(): void {
    this.#client.close();
  }
}

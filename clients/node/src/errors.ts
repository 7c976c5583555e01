/**
 * {@link AuthError}: what went wrong, with authd's reason decoded from the
 * `google.rpc.ErrorInfo` in the `grpc-status-details-bin` trailer.
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { Metadata } from "@grpc/grpc-js";

import { ErrorReason, ErrorReasonSchema } from "./gen/auth/v1/auth_pb.js";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";

/**
 * The gRPC status codes, whatever the transport (a Connect error's code
 * name maps to one). The same names and numbers as grpc-js's `status`, which
 * is not imported here: a client speaking Connect never loads grpc-js.
 */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** The `domain` of every ErrorInfo authd sends. */
export const ERROR_DOMAIN = "authd";

const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";

/**
 * A reason authd sends: an `auth.v1.ErrorReason` value's name without its
 * `ERROR_REASON_` prefix, e.g. `"TOKEN_EXPIRED"`. Derived from the generated
 * enum, so it follows the protocol.
 */
export type Reason = Exclude<keyof typeof ErrorReason, "UNSPECIFIED">;

/**
 * Every reason of the protocol, as `Reasons.TOKEN_EXPIRED === "TOKEN_EXPIRED"`:
 * compare `err.reason` with these rather than with string literals.
 */
export const Reasons: Readonly<{ [R in Reason]: R }> = Object.freeze(
  Object.fromEntries(
    ErrorReasonSchema.values
      .filter((v) => v.number !== (ErrorReason.UNSPECIFIED as number))
      .map((v) => [v.localName, v.localName]),
  ) as { [R in Reason]: R },
);

/**
 * An error from authd, or from the way to it.
 *
 * `code` is the gRPC status code (`Code.UNAUTHENTICATED`, ...); `reason` is
 * authd's reason from ErrorInfo (`undefined` when the error did not come
 * from authd: a connection failure, a local deadline). A newer authd may
 * send a reason this package does not know yet: it arrives as the string
 * sent.
 */
export class AuthError extends Error {
  override readonly name = "AuthError";
  /** The gRPC status code. */
  readonly code: Code;
  /** authd's reason; `undefined` when the error did not come from authd. */
  readonly reason: Reason | (string & {}) | undefined;
  /** ErrorInfo's metadata, e.g. `missing` for INSUFFICIENT_SCOPE. */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(
    code: Code,
    message: string,
    reason?: string,
    metadata: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.reason = reason;
    this.metadata = Object.freeze({ ...metadata });
  }

  /** The code's name, e.g. `"UNAUTHENTICATED"`. */
  get codeName(): string {
    return Code[this.code] ?? String(this.code);
  }

  /**
   * Whether authd could not be reached or could not decide in time: a
   * caller must refuse (fail closed), never let the request through.
   */
  get isUnavailable(): boolean {
    return this.code === Code.UNAVAILABLE || this.code === Code.DEADLINE_EXCEEDED;
  }

  /** Decodes a grpc-js error: code, message, and ErrorInfo when authd sent one. */
  static fromGrpc(error: { code?: number; details?: string; message?: string; metadata?: Metadata }): AuthError {
    const code = typeof error.code === "number" ? (error.code as Code) : Code.UNKNOWN;
    const message = error.details ?? error.message ?? "";
    const info = errorInfo(error.metadata);
    return new AuthError(code, message, info?.reason, info?.metadata, { cause: error });
  }
}

/** The ErrorInfo of authd's domain in a status trailer, if there is one. */
function errorInfo(metadata: Metadata | undefined): { reason: string; metadata: Record<string, string> } | undefined {
  const bin = metadata?.get("grpc-status-details-bin")[0];
  if (!(bin instanceof Uint8Array)) return undefined;
  try {
    const status = fromBinary(StatusSchema, bin);
    for (const detail of status.details) {
      if (detail.typeUrl !== ERROR_INFO_TYPE) continue;
      const info = fromBinary(ErrorInfoSchema, detail.value);
      // ErrorInfo of another domain (a proxy, another service) says nothing
      // about authd's decision.
      if (info.domain === ERROR_DOMAIN) return { reason: info.reason, metadata: info.metadata };
    }
  } catch {
    // A trailer that does not decode is no reason.
  }
  return undefined;
}

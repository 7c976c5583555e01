/** The device login helper (RFC 8628): start, show the code, poll until an answer. */
import type { AuthClient } from "./client.js";
import type { CallOptions } from "./transport.js";
import type { DeviceCode, NewSession } from "./types.js";

/** What {@link AuthClient.deviceLogin} needs. */
export interface DeviceLoginOptions {
  /** The scopes to ask for (`openid` and `offline_access` are added by authd). */
  scopes?: readonly string[];
  /** The API audience; defaults to the issuer's first. */
  audience?: string;
  /** The configured issuer; may be left out when authd has one. */
  issuer?: string;
  /** Shows the user where to go and what to type (or a QR code of `verificationUriComplete`). */
  onCode: (code: Omit<DeviceCode, "deviceCode">) => void | Promise<void>;
  /** Gives up: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Per-call options for each RPC (deadline). */
  call?: Pick<CallOptions, "timeoutMs">;
}

/** The user refused (`denied`) or the code expired (`expired`): start again. */
export class DeviceLoginError extends Error {
  override readonly name = "DeviceLoginError";
  constructor(readonly state: "denied" | "expired") {
    super(state === "denied" ? "the user refused the device login" : "the device code expired");
  }
}

/** Why `signal` aborted, as an Error (its reason, when that is one). */
const aborted = (signal: AbortSignal): Error =>
  signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));

const wait = (seconds: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(aborted(signal));
      return;
    }
    const timer = setTimeout(resolve, seconds * 1000);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(aborted(signal));
      },
      { once: true },
    );
  });

export async function deviceLogin(client: AuthClient, options: DeviceLoginOptions): Promise<NewSession> {
  const { signal } = options;
  const call = { ...options.call, signal };
  const code = await client.startDeviceLogin(options, call);
  const { deviceCode, ...shown } = code;
  await options.onCode(shown);
  // The device code's own life bounds the loop, whatever authd answers.
  const deadline = Date.now() + code.expiresIn * 1000;
  // RFC 8628 §3.2: 5 s when the server gives none.
  let interval = code.interval > 0 ? code.interval : 5;
  for (;;) {
    await wait(interval, signal);
    if (Date.now() > deadline) throw new DeviceLoginError("expired");
    const poll = await client.pollDeviceLogin(deviceCode, { interval, issuer: options.issuer }, call);
    switch (poll.state) {
      case "approved":
        return poll.session;
      case "denied":
      case "expired":
        throw new DeviceLoginError(poll.state);
      case "slow_down":
        // §3.5: at least 5 s more from now on; authd's answer carries it.
        interval = Math.max(poll.interval, interval + 5);
        break;
      case "pending":
        if (poll.interval > 0) interval = poll.interval;
        break;
    }
  }
}

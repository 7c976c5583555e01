/**
 * The task that holds the cache's WatchRevocations stream — authd-client's
 * `watch.rs`: it reconnects with back-off, resumes from the last cursor
 * received (nothing is missed across a reconnection), and hands every
 * revocation and heartbeat to the cache. While authd refuses this caller
 * the stream (`PERMISSION_DENIED`, or an authd without it) the cache is off,
 * said once, and the stream is asked for again every minute.
 */
import type { VerifyCache } from "./cache.js";
import { AuthError, Code } from "./errors.js";
import { AuthService, type WatchRevocationsResponse } from "./gen/auth/v1/auth_pb.js";
import { expose, type SecretLike } from "./secret.js";
import type { StreamCall, Transport } from "./transport.js";

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;
/** How often a refused caller asks again. */
const REFUSED_RETRY_MS = 60_000;

/** Where the watch's service token comes from, asked at every connection. */
export type TokenSource = () => SecretLike | undefined | Promise<SecretLike | undefined>;

/** What the watch reports, for `AuthClient.cacheStats()`. */
export interface WatchStats {
  /** Streams opened so far (the first included). */
  connections: number;
  /** The cursor of the last message received (opaque). */
  cursor: string;
  /** The cursor the current stream was opened with ("" for the first). */
  resumedFrom: string;
}

export class Watcher {
  readonly #transport: Transport;
  readonly #cache: VerifyCache;
  readonly #token: TokenSource | undefined;
  readonly #warn: (message: string) => void;
  #running = false;
  #stopped = false;
  #call: StreamCall | undefined;
  #wake: (() => void) | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  /** When the current stream last spoke (or was asked for). */
  #lastData = 0;
  readonly stats: WatchStats = { connections: 0, cursor: "", resumedFrom: "" };

  constructor(transport: Transport, cache: VerifyCache, token: TokenSource | undefined, warn: (m: string) => void) {
    this.#transport = transport;
    this.#cache = cache;
    this.#token = token;
    this.#warn = warn;
  }

  start(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    // A stream gone quiet without an error (a partition that sent no RST)
    // is ended and opened again; meanwhile the cache does not answer.
    this.#watchdog = setInterval(() => {
      if (this.#call && performance.now() - this.#lastData > 2 * this.#cache.silenceMs) this.#call.cancel();
    }, 1_000).unref();
    void this.#loop();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    this.#call?.cancel();
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms).unref();
      this.#wake = () => (clearTimeout(timer), resolve());
    });
  }

  async #loop(): Promise<void> {
    let backoff = FIRST_BACKOFF_MS;
    let refusedSaid = false;
    while (!this.#stopped) {
      let token: string | undefined;
      try {
        const source = await this.#token?.();
        token = source === undefined ? undefined : expose(source);
      } catch (error) {
        this.#warn(`authd-client: the watch token could not be had (${String(error)}); retrying`);
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        continue;
      }
      const error = await this.#stream(token, () => (backoff = FIRST_BACKOFF_MS));
      if (this.#stopped) return;
      if (error && (error.code === Code.PERMISSION_DENIED || error.code === Code.UNIMPLEMENTED)) {
        if (this.#cache.turnOff() && !refusedSaid) {
          refusedSaid = true;
          this.#warn(
            `authd-client: authd does not stream revocations to this client (${error.codeName}: ${error.message}); ` +
              "running without the verification cache (give the client a watchToken with revocations:watch, or a certificate [[callers]] allows)",
          );
        }
        await this.#sleep(REFUSED_RETRY_MS);
        continue;
      }
      await this.#sleep(backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** One stream, until it ends; its error, if any. */
  #stream(token: string | undefined, heardOne: () => void): Promise<AuthError | undefined> {
    return new Promise((resolve) => {
      const cursor = this.stats.cursor;
      this.#lastData = performance.now();
      let opened = false;
      const open = (): void => {
        if (opened) return;
        opened = true;
        this.stats.connections += 1;
        this.stats.resumedFrom = cursor;
        this.#cache.streamOpened();
      };
      this.#call = this.#transport.serverStream(AuthService.method.watchRevocations, { cursor }, token, {
        open,
        message: (message: WatchRevocationsResponse) => {
          open();
          heardOne();
          this.#lastData = performance.now();
          if (this.#heard(message) && message.cursor !== "") this.stats.cursor = message.cursor;
        },
        end: (error) => {
          this.#call = undefined;
          resolve(error);
        },
      });
    });
  }

  /** Hands `message` to the cache; `false` when it was not understood (its cursor is then not taken). */
  #heard(message: WatchRevocationsResponse): boolean {
    switch (message.event.case) {
      case "revocation":
        if (!this.#cache.revoked(message.event.value)) {
          this.#warn("authd-client: authd sent a revocation this client cannot match; the cache was emptied");
        }
        return true;
      case "heartbeat":
        this.#cache.heartbeat(message.event.value.intervalMs);
        return true;
      default:
        return false;
    }
  }
}

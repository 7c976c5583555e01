import { inspect } from "node:util";

/**
 * A secret (session handle, refresh token, device code, service token) that
 * does not print itself: `String(secret)`, `JSON.stringify` and
 * `console.log` show `Secret(…)`. Call {@link Secret.expose} where the value
 * is really needed.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The secret value itself. */
  expose(): string {
    return this.#value;
  }

  toString(): string {
    return "Secret(…)";
  }

  toJSON(): string {
    return "Secret(…)";
  }

  [inspect.custom](): string {
    return "Secret(…)";
  }
}

/** A secret given as a string or a {@link Secret}. */
export type SecretLike = string | Secret;

export const expose = (s: SecretLike): string => (typeof s === "string" ? s : s.expose());

// Signing keys.
//
// The private keys live in oauth2-mock-server's own JWKStore (issuer.keys),
// which signs the tokens. That store has no way to remove a key and hands keys
// out round-robin, so this small registry on top of it remembers which key is
// the current signing key (the newest) and which keys are published in the
// JWKS (all of them, unless a rotation dropped the old ones).

import { randomId } from './state.js';

/** Algorithms oauth2-mock-server's JWKStore can generate. */
export const SUPPORTED_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

export class KeyRing {
  #store; // oauth2-mock-server JWKStore
  #keys = []; // { kid, alg, published, createdAt }, oldest first

  constructor(jwkStore) {
    this.#store = jwkStore;
  }

  /**
   * Generates a key and makes it the signing key.
   * With dropOld, every older key disappears from the JWKS. Dropped keys stay
   * usable through the `kid` token knob, to mint tokens signed by a key the
   * JWKS does not publish.
   */
  async generate(alg, { dropOld = false } = {}) {
    if (!SUPPORTED_ALGS.includes(alg)) throw new Error(`alg must be one of ${SUPPORTED_ALGS.join(', ')}`);
    const kid = randomId(16);
    await this.#store.generate(alg, { kid });
    if (dropOld) for (const key of this.#keys) key.published = false;
    this.#keys.push({ kid, alg, published: true, createdAt: Date.now() });
    return { kid, alg };
  }

  get signingKid() {
    return this.#keys.at(-1).kid;
  }

  has(kid) {
    return this.#keys.some((key) => key.kid === kid);
  }

  /** Newest key of the given algorithm, if any. */
  newestWithAlg(alg) {
    return this.#keys.findLast((key) => key.alg === alg)?.kid;
  }

  /** Public JWKs of the published keys (private fields stripped by the mock's store). */
  publicJwks() {
    const byKid = new Map(this.#store.toJSON(false).map((jwk) => [jwk.kid, jwk]));
    return this.#keys.filter((key) => key.published).map((key) => ({ ...byKid.get(key.kid), use: 'sig' }));
  }

  /** Debug listing for GET /__control/keys. */
  list() {
    const signing = this.signingKid;
    return this.#keys.map((key) => ({
      kid: key.kid,
      alg: key.alg,
      published: key.published,
      signing: key.kid === signing,
      created_at: new Date(key.createdAt).toISOString(),
    }));
  }
}

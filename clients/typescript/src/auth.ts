// Bearer tokens: a fixed string, or a function the application supplies that
// returns a (fresh) token. A function's token is kept and reused until it is
// close to its expiry (the JWT's `exp`, read without verifying the
// signature: that is the server's job), or until a caller forces a new one
// (after a 401, or a WebSocket closed with 4001 "Token expired").

/** A token, or a function returning one (called again whenever a fresh one is needed). */
export type TokenSource = string | (() => string | Promise<string>);

/**
 * The `exp` claim of a JWT in unix seconds, or undefined when the token is
 * not a JWT or has no numeric `exp`.
 */
export function jwtExpiry(token: string): number | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims === "object" && claims !== null && "exp" in claims && typeof claims.exp === "number") {
      return claims.exp;
    }
  } catch {
    // Not a JWT: nothing to schedule.
  }
  return undefined;
}

/** Caches the token of a TokenSource; `get(true)` asks the function for a new one. */
export class TokenManager {
  readonly #source: TokenSource;
  /** A cached token counts as stale this long before its `exp`. */
  readonly #marginMs: number;
  #current: string | undefined;
  #pending: Promise<string> | undefined;

  constructor(source: TokenSource, marginMs = 30_000) {
    this.#source = source;
    this.#marginMs = marginMs;
  }

  /** Whether the source can produce a new token (a function), as opposed to a fixed string. */
  get refreshable(): boolean {
    return typeof this.#source === "function";
  }

  /** The current token, asking the source for a new one when forced or when the cached one is about to expire. */
  async get(force = false): Promise<string> {
    const source = this.#source;
    if (typeof source === "string") return source;
    if (!force && this.#current !== undefined && !this.#stale(this.#current)) return this.#current;
    // Concurrent callers share one call of the application's function.
    if (!this.#pending) {
      this.#pending = (async () => {
        try {
          const token = await source();
          if (typeof token !== "string" || token === "") {
            throw new Error("the token function returned no token");
          }
          this.#current = token;
          return token;
        } finally {
          this.#pending = undefined;
        }
      })();
    }
    return this.#pending;
  }

  #stale(token: string): boolean {
    const exp = jwtExpiry(token);
    return exp !== undefined && exp * 1000 - this.#marginMs <= Date.now();
  }
}

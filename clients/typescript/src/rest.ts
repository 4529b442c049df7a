// The REST operations the datafeed uses, through openapi-fetch over the
// types generated from specs/openapi.yaml. Every call carries
// `Authorization: Bearer <token>` when a token is configured; a 401 with a
// token function is retried once with a fresh token.

import createClient from "openapi-fetch";

import { TokenManager, type TokenSource } from "./auth.js";
import type { components, paths } from "./generated/openapi.js";

export type Bar = components["schemas"]["Bar"];
export type BarsResponse = components["schemas"]["BarsResponse"];
export type DatafeedConfiguration = components["schemas"]["DatafeedConfiguration"];
export type SymbolInfo = components["schemas"]["SymbolInfo"];
export type SymbolSearchResult = components["schemas"]["SymbolSearchResult"];
export type QuoteData = components["schemas"]["QuoteData"];
export type Resolution = components["schemas"]["Resolution"];
export type ErrorBody = components["schemas"]["Error"];

/** The most bars one `GET /api/v1/datafeed/bars` returns (and the most `count_back` may ask for). */
export const MAX_BARS_PER_REQUEST = 5000;

const RESOLUTIONS = ["1", "5", "15", "30", "60", "240", "D", "W", "M", "1D", "1W", "1M"] as const satisfies readonly Resolution[];
type MissingResolution = Exclude<Resolution, (typeof RESOLUTIONS)[number]>;
const resolutionsComplete: [MissingResolution] extends [never] ? true : never = true;
void resolutionsComplete;

/** Whether the server knows this resolution (it may still not serve it for a symbol). */
export function isResolution(value: string): value is Resolution {
  return (RESOLUTIONS as readonly string[]).includes(value);
}

/** A failed REST call: the HTTP status and the server's error body when there was one. */
export class TradingProError extends Error {
  readonly status: number | undefined;
  readonly errorCode: string | undefined;
  readonly requestId: string | undefined;

  constructor(message: string, options: { status?: number; body?: ErrorBody; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TradingProError";
    this.status = options.status;
    this.errorCode = options.body?.error_code;
    this.requestId = options.body?.request_id;
  }
}

export interface RestClientOptions {
  /** Where the server is, e.g. `https://md.example.com` (a path prefix is kept). */
  baseUrl: string;
  token?: TokenSource | TokenManager | undefined;
  /** A fetch to use instead of globalThis.fetch. */
  fetch?: ((input: Request) => Promise<Response>) | undefined;
}

export interface GetBarsParams {
  symbol: string;
  resolution: string;
  /** Unix seconds, inclusive. */
  from: number;
  /** Unix seconds, exclusive. */
  to: number;
  /** Bars ending before `to` (1 to 5000). */
  countBack?: number | undefined;
}

export interface SearchParams {
  userInput: string;
  exchange?: string | undefined;
  symbolType?: string | undefined;
  maxResults?: number | undefined;
}

type Outcome<T> =
  | { data: T; error?: never; response: Response }
  | { data?: never; error: unknown; response: Response };

/**
 * What to say of a request the browser could not complete: from a page of
 * another origin than the server's, the likeliest cause is the server's
 * CORS policy, which the browser enforces by hiding the answer (the page
 * only sees "Failed to fetch" while the server answered 200). Empty
 * outside a browser, or for a page of the server's own origin.
 */
export function corsHint(baseUrl: string): string {
  const page = (globalThis as { location?: { origin?: string } }).location?.origin;
  if (typeof page !== "string" || page === "null" || page === "") return "";
  let server: string;
  try {
    server = new URL(baseUrl, page).origin;
  } catch {
    return "";
  }
  if (server === page) return "";
  return (
    ` (if the server at ${server} is running, its CORS policy may refuse this page's origin ${page}:` +
    ` start it with --cors-origin ${page}; giving any --cors-origin replaces the default, and the` +
    ` server logs a warning naming each origin it refuses)`
  );
}

function errorMessage(operation: string, response: Response, error: unknown): string {
  const body = error as Partial<ErrorBody> | undefined;
  const detail = typeof body?.message === "string" ? body.message : JSON.stringify(error);
  return `${operation}: HTTP ${response.status}: ${detail}`;
}

/** Typed calls of the datafeed operations. */
export class RestClient {
  readonly #client: ReturnType<typeof createClient<paths>>;
  readonly #tokens: TokenManager | undefined;
  readonly #baseUrl: string;

  constructor(options: RestClientOptions) {
    const baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#baseUrl = baseUrl;
    this.#client = createClient<paths>(options.fetch ? { baseUrl, fetch: options.fetch } : { baseUrl });
    const token = options.token;
    this.#tokens = token === undefined ? undefined : token instanceof TokenManager ? token : new TokenManager(token);
  }

  async #call<T>(operation: string, send: (headers: Record<string, string>) => Promise<Outcome<T>>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = {};
      if (this.#tokens) headers.Authorization = `Bearer ${await this.#tokens.get(attempt > 0)}`;
      let outcome: Outcome<T>;
      try {
        outcome = await send(headers);
      } catch (err) {
        const reason = err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ""}` : String(err);
        // fetch rejects with a TypeError when no answer came (or the
        // browser hid it).
        const hint = err instanceof TypeError ? corsHint(this.#baseUrl) : "";
        throw new TradingProError(`${operation}: request failed: ${reason}${hint}`, { cause: err });
      }
      const { data, error, response } = outcome;
      if (error === undefined && data !== undefined) return data;
      if (response.status === 401 && attempt === 0 && this.#tokens?.refreshable) continue;
      const init: { status: number; body?: ErrorBody } = { status: response.status };
      if (typeof error === "object" && error !== null && "message" in error) init.body = error as ErrorBody;
      throw new TradingProError(errorMessage(operation, response, error), init);
    }
  }

  getConfig(): Promise<DatafeedConfiguration> {
    return this.#call("getConfig", (headers) => this.#client.GET("/api/v1/datafeed/config", { headers }));
  }

  searchSymbols(params: SearchParams): Promise<SymbolSearchResult[]> {
    const query: paths["/api/v1/datafeed/search"]["get"]["parameters"]["query"] = { user_input: params.userInput };
    if (params.exchange) query.exchange = params.exchange;
    if (params.symbolType) query.symbol_type = params.symbolType;
    if (params.maxResults !== undefined) query.max_results = params.maxResults;
    return this.#call("searchSymbols", (headers) =>
      this.#client.GET("/api/v1/datafeed/search", { params: { query }, headers }),
    );
  }

  resolveSymbol(symbol: string): Promise<SymbolInfo> {
    return this.#call(`resolveSymbol ${symbol}`, (headers) =>
      this.#client.GET("/api/v1/datafeed/resolve/{symbol}", { params: { path: { symbol } }, headers }),
    );
  }

  getBars(params: GetBarsParams): Promise<BarsResponse> {
    const { symbol, resolution } = params;
    const operation = `getBars ${symbol} ${resolution}`;
    if (!isResolution(resolution)) {
      return Promise.reject(new TradingProError(`${operation}: unsupported resolution`));
    }
    const query: paths["/api/v1/datafeed/bars"]["get"]["parameters"]["query"] = {
      symbol,
      resolution,
      from_time: Math.floor(Math.min(params.from, params.to)),
      to_time: Math.floor(params.to),
    };
    if (params.countBack !== undefined && params.countBack > 0) {
      query.count_back = Math.min(Math.ceil(params.countBack), MAX_BARS_PER_REQUEST);
    }
    return this.#call(operation, (headers) => this.#client.GET("/api/v1/datafeed/bars", { params: { query }, headers }));
  }

  getQuotes(symbols: string[]): Promise<QuoteData[]> {
    return this.#call("getQuotes", (headers) =>
      this.#client.POST("/api/v1/datafeed/quotes", { body: { symbols }, headers }),
    );
  }

  /** The server's clock, unix seconds (the market clock of a synthetic server). */
  getServerTime(): Promise<number> {
    return this.#call("getServerTime", (headers) => this.#client.GET("/api/v1/datafeed/time", { headers }));
  }
}

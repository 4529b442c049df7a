// A TradingView Charting Library datafeed (IBasicDataFeed and
// IDatafeedQuotesApi) backed by a trading-pro server: history, symbols and
// quote snapshots over REST, live bars and live quotes over one shared
// WebSocket.
//
//   const datafeed = createDatafeed({ baseUrl: "https://md.example.com", token: getToken });
//   new TradingView.widget({ datafeed, symbol: "AAPL", interval: "1", ... });

import { TokenManager, type TokenSource } from "./auth.js";
import {
  BarsChannel,
  LiveSocket,
  websocketUrl,
  type ConnectionEvent,
  type ConnectionState,
  type ReconnectOptions,
  type WebSocketFactory,
} from "./live.js";
import { QuotesChannel, type QuoteData as ServerQuote } from "./quotes.js";
import { canonicalResolution, tickerOf } from "./resolution.js";
import { RestClient, type Bar as ServerBar, type SymbolInfo } from "./rest.js";
import type {
  Bar,
  DatafeedConfiguration,
  DatafeedErrorCallback,
  HistoryCallback,
  IBasicDataFeed,
  IDatafeedQuotesApi,
  LibrarySymbolInfo,
  OnReadyCallback,
  PeriodParams,
  QuoteData,
  QuotesCallback,
  QuotesErrorCallback,
  ResolutionString,
  ResolveCallback,
  SearchSymbolResultItem,
  SearchSymbolsCallback,
  ServerTimeCallback,
  SubscribeBarsCallback,
} from "./tradingview.js";

export interface DatafeedOptions {
  /** The server, e.g. `https://md.example.com` (a path prefix is kept). */
  baseUrl: string;
  /**
   * With authentication on: a token, or a function returning a fresh one
   * (called when the cached one nears its `exp`, after a 401 and after a
   * 4001 close). REST sends it as `Authorization: Bearer`, the WebSocket as
   * `?access_token=`, and the socket refreshes it with `auth.refresh`.
   */
  token?: TokenSource | undefined;
  /** The WebSocket URL; default `baseUrl` with ws(s) and `/api/v1/ws`. */
  websocketUrl?: string | undefined;
  /** How to open the WebSocket; default the browser's WebSocket, or `ws` in Node.js. */
  webSocket?: WebSocketFactory | undefined;
  /** A fetch to use instead of globalThis.fetch. */
  fetch?: ((input: Request) => Promise<Response>) | undefined;
  /** Reconnect backoff (full jitter): default 500 ms doubling up to 30 s. */
  reconnect?: ReconnectOptions | undefined;
  /** A WebSocket request not answered within this long (ms) fails. Default 10000. */
  requestTimeoutMs?: number | undefined;
  /** Called with what went wrong; without it (or an onError listener) errors go to console.warn. */
  onError?: ((error: Error) => void) | undefined;
}

/** The datafeed: the library's contract plus connection state for the UI. */
export interface TradingProDatafeed extends IBasicDataFeed, IDatafeedQuotesApi {
  getServerTime(callback: ServerTimeCallback): void;
  /** The live connection's state (`idle` until the first subscribeBars or subscribeQuotes). */
  readonly connectionState: ConnectionState;
  /** Calls `listener` on every connection state change (connecting, open, reconnecting with delay and close code, closed). */
  onConnectionChange(listener: (event: ConnectionEvent) => void): () => void;
  /** Calls `listener` with errors (REST failures, refused subscriptions, failed token refreshes, ...). */
  onError(listener: (error: Error) => void): () => void;
  /** The REST client the datafeed uses (config, search, resolve, bars, quotes, time). */
  readonly rest: RestClient;
  /** Closes the WebSocket and drops every subscription. */
  destroy(): void;
}

/** The most symbols one POST /quotes takes. */
const QUOTES_PER_REQUEST = 100;

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Our SymbolInfo (already TradingView-shaped) as the library's LibrarySymbolInfo. */
export function toLibrarySymbolInfo(info: SymbolInfo): LibrarySymbolInfo {
  const symbolInfo: LibrarySymbolInfo = {
    name: info.name,
    ticker: info.ticker,
    full_name: `${info.exchange}:${info.name}`,
    description: info.description,
    type: info.type,
    session: info.session,
    timezone: info.timezone,
    exchange: info.exchange,
    listed_exchange: info.listed_exchange,
    format: info.format,
    pricescale: info.pricescale,
    minmov: info.minmov,
    has_intraday: info.has_intraday,
    has_daily: info.has_daily,
    has_weekly_and_monthly: info.has_weekly_and_monthly,
    has_empty_bars: false,
    supported_resolutions: [...info.supported_resolutions],
    intraday_multipliers: [...info.intraday_multipliers],
    volume_precision: info.volume_precision,
    data_status: info.data_status,
    currency_code: info.currency_code,
    visible_plots_set: "ohlcv",
  };
  // The server builds D, W and M bars itself; the library derives 2D, 2W, ... from them.
  if (info.has_daily) symbolInfo.daily_multipliers = ["1"];
  if (info.has_weekly_and_monthly) {
    symbolInfo.weekly_multipliers = ["1"];
    symbolInfo.monthly_multipliers = ["1"];
  }
  return symbolInfo;
}

/** A server quote (REST or `quotes.update`) as the library's QuoteData. */
function toQuoteData(q: ServerQuote): QuoteData {
  if (q.s === "ok") return { s: "ok", n: q.n, v: { ...q.v } };
  const failed: QuoteData = { s: "error", n: q.n, v: {} };
  if (q.errmsg !== undefined) failed.errmsg = q.errmsg;
  return failed;
}

function toBar(bar: ServerBar): Bar {
  return { time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close, volume: bar.volume };
}

/** Creates a datafeed for the Charting Library's `datafeed` option. */
export function createDatafeed(options: DatafeedOptions): TradingProDatafeed {
  const tokens = options.token === undefined ? undefined : new TokenManager(options.token);
  const rest = new RestClient({ baseUrl: options.baseUrl, token: tokens, fetch: options.fetch });
  const socket = new LiveSocket({
    url: options.websocketUrl ?? websocketUrl(options.baseUrl),
    token: tokens,
    webSocket: options.webSocket,
    reconnect: options.reconnect,
    requestTimeoutMs: options.requestTimeoutMs,
  });
  const bars = new BarsChannel(socket, rest);
  const quotes = new QuotesChannel(socket);

  const errorListeners = new Set<(error: Error) => void>();
  if (options.onError) errorListeners.add(options.onError);
  const emitError = (err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    if (errorListeners.size === 0) {
      console.warn(`trading-pro datafeed: ${error.message}`);
      return;
    }
    for (const listener of [...errorListeners]) {
      try {
        listener(error);
      } catch {
        // Nowhere to report to.
      }
    }
  };
  socket.onError(emitError);
  bars.onError(emitError);
  quotes.onError(emitError);

  /** The newest bar of each symbol/resolution's first getBars: where its live stream continues. */
  const newestBars = new Map<string, ServerBar>();
  const subscriptions = new Map<string, () => void>();
  const quoteSubscriptions = new Map<string, () => void>();
  let destroyed = false;

  let config: Promise<DatafeedConfiguration> | undefined;
  const loadConfig = (): Promise<DatafeedConfiguration> => {
    // onReady has no error callback: keep trying (with backoff) until the server answers.
    config ??= (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const c = await rest.getConfig();
          return {
            supported_resolutions: [...c.supported_resolutions],
            supports_marks: c.supports_marks,
            supports_timescale_marks: c.supports_timescale_marks,
            supports_time: c.supports_time,
            exchanges: c.exchanges.map((e) => ({ value: e.value, name: e.name, desc: e.desc })),
            symbols_types: c.symbols_types.map((t) => ({ name: t.name, value: t.value })),
          };
        } catch (err) {
          if (destroyed) throw err;
          emitError(err);
          await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 1000 * 2 ** attempt)));
        }
      }
    })();
    return config;
  };

  const symbolOf = (symbolInfo: LibrarySymbolInfo) => symbolInfo.ticker ?? symbolInfo.name;
  const keyOf = (symbol: string, resolution: string) => `${tickerOf(symbol)}:${canonicalResolution(resolution)}`;

  const datafeed: TradingProDatafeed = {
    rest,

    get connectionState() {
      return socket.state;
    },

    onConnectionChange(listener) {
      return socket.onStateChange(listener);
    },

    onError(listener) {
      errorListeners.add(listener);
      return () => errorListeners.delete(listener);
    },

    onReady(callback: OnReadyCallback) {
      loadConfig().then(
        (c) => callback(c),
        () => {},
      );
    },

    searchSymbols(userInput: string, exchange: string, symbolType: string, onResult: SearchSymbolsCallback) {
      rest.searchSymbols({ userInput, exchange, symbolType }).then(
        (found) =>
          onResult(
            found.map(
              (s): SearchSymbolResultItem => ({
                symbol: s.symbol,
                full_name: s.full_name,
                description: s.description,
                exchange: s.exchange,
                ticker: s.ticker,
                type: s.type,
              }),
            ),
          ),
        (err) => {
          emitError(err);
          onResult([]);
        },
      );
    },

    resolveSymbol(symbolName: string, onResolve: ResolveCallback, onError: DatafeedErrorCallback) {
      rest.resolveSymbol(symbolName).then(
        (info) => onResolve(toLibrarySymbolInfo(info)),
        (err) => onError(describe(err)),
      );
    },

    getBars(
      symbolInfo: LibrarySymbolInfo,
      resolution: ResolutionString,
      periodParams: PeriodParams,
      onResult: HistoryCallback,
      onError: DatafeedErrorCallback,
    ) {
      const symbol = symbolOf(symbolInfo);
      const canonical = canonicalResolution(resolution);
      rest
        .getBars({
          symbol,
          resolution: canonical,
          from: periodParams.from,
          to: periodParams.to,
          countBack: periodParams.countBack,
        })
        .then(
          (response) => {
            const result = response.bars.map(toBar);
            const newest = response.bars[response.bars.length - 1];
            if (periodParams.firstDataRequest && newest) newestBars.set(keyOf(symbol, canonical), newest);
            if (result.length > 0) {
              onResult(result, { noData: false });
            } else if (response.next_time !== undefined) {
              // Nothing in this range, but older bars exist: tell the library where.
              onResult([], { noData: true, nextTime: response.next_time });
            } else {
              onResult([], { noData: true });
            }
          },
          (err) => onError(describe(err)),
        );
    },

    subscribeBars(
      symbolInfo: LibrarySymbolInfo,
      resolution: ResolutionString,
      onTick: SubscribeBarsCallback,
      listenerGuid: string,
      onResetCacheNeededCallback: () => void,
    ) {
      if (destroyed) return;
      subscriptions.get(listenerGuid)?.();
      const symbol = symbolOf(symbolInfo);
      const stop = bars.subscribe(
        symbol,
        resolution,
        {
          onBar: onTick,
          onResetCache: onResetCacheNeededCallback,
          onError: (message) => emitError(new Error(`subscribeBars ${symbol} ${resolution}: ${message}`)),
        },
        { lastBar: newestBars.get(keyOf(symbol, resolution)) },
      );
      subscriptions.set(listenerGuid, stop);
    },

    unsubscribeBars(listenerGuid: string) {
      const stop = subscriptions.get(listenerGuid);
      subscriptions.delete(listenerGuid);
      stop?.();
    },

    getQuotes(symbols: string[], onDataCallback: QuotesCallback, onErrorCallback: QuotesErrorCallback) {
      const chunks: string[][] = [];
      for (let i = 0; i < symbols.length; i += QUOTES_PER_REQUEST) {
        chunks.push(symbols.slice(i, i + QUOTES_PER_REQUEST));
      }
      Promise.all(chunks.map((chunk) => rest.getQuotes(chunk))).then(
        (answers) => onDataCallback(answers.flat().map(toQuoteData)),
        (err) => onErrorCallback(describe(err)),
      );
    },

    subscribeQuotes(symbols: string[], fastSymbols: string[], onRealtimeCallback: QuotesCallback, listenerGUID: string) {
      if (destroyed) return;
      quoteSubscriptions.get(listenerGUID)?.();
      // Refused symbols come to the callback as error quotes; onError has the server's message.
      const stop = quotes.subscribe(symbols, fastSymbols, {
        onQuotes: (data) => onRealtimeCallback(data.map(toQuoteData)),
      });
      quoteSubscriptions.set(listenerGUID, stop);
    },

    unsubscribeQuotes(listenerGUID: string) {
      const stop = quoteSubscriptions.get(listenerGUID);
      quoteSubscriptions.delete(listenerGUID);
      stop?.();
    },

    getServerTime(callback: ServerTimeCallback) {
      rest.getServerTime().then(callback, emitError);
    },

    destroy() {
      destroyed = true;
      for (const stop of subscriptions.values()) stop();
      subscriptions.clear();
      for (const stop of quoteSubscriptions.values()) stop();
      quoteSubscriptions.clear();
      socket.close();
    },
  };
  return datafeed;
}

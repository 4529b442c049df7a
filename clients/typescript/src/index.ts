// trading-pro-datafeed: a TradingView Charting Library datafeed for a
// trading-pro server, the live socket it is built on, and the REST client.
// The lightweight-charts adapter is its own entry point,
// `trading-pro-datafeed/lightweight`, so that TradingView users do not load
// lightweight-charts.

export { createDatafeed, toLibrarySymbolInfo, type DatafeedOptions, type TradingProDatafeed } from "./datafeed.js";
export {
  BarsChannel,
  CloseCode,
  LiveSocket,
  defaultWebSocketFactory,
  websocketUrl,
  type BarsListener,
  type BarsSubscribeOptions,
  type ConnectionEvent,
  type ConnectionState,
  type LiveChannel,
  type LiveSocketOptions,
  type ReconnectOptions,
  type WebSocketFactory,
  type WebSocketLike,
} from "./live.js";
export { QuotesChannel, type QuotesListener } from "./quotes.js";
export { jwtExpiry, TokenManager, type TokenSource } from "./auth.js";
export { canonicalResolution, resolutionSeconds, tickerOf } from "./resolution.js";
export {
  MAX_BARS_PER_REQUEST,
  RestClient,
  TradingProError,
  isResolution,
  type BarsResponse,
  type GetBarsParams,
  type RestClientOptions,
  type SearchParams,
  type SymbolInfo,
  type SymbolSearchResult,
} from "./rest.js";
export type * from "./tradingview.js";

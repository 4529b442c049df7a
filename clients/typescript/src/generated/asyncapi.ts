/**
 * This file was generated from specs/asyncapi.yaml (Trading Pro WebSocket API 1.0.0).
 * Generator: clients/typescript/scripts/gen-asyncapi.mjs (json-schema-to-typescript).
 * Do not edit it by hand: change the spec and run scripts/generate.
 */

/**
 * Optional request id, echoed in the reply.
 */
export type FrameId = string;

export interface BarsSubscribeFrame {
  type: "bars.subscribe";
  id?: FrameId;
  payload: BarsSubscriptionRequest;
}

export interface BarsUnsubscribeFrame {
  type: "bars.unsubscribe";
  id?: FrameId;
  payload: BarsSubscriptionRequest;
}

export interface BarsSubscribeResponseFrame {
  type: "bars.subscribe.response";
  id?: FrameId;
  payload: SubscriptionResponse;
}

export interface BarsUnsubscribeResponseFrame {
  type: "bars.unsubscribe.response";
  id?: FrameId;
  payload: SubscriptionResponse;
}

export interface BarsUpdateFrame {
  type: "bars.update";
  payload: BarUpdate;
}

export interface AuthRefreshFrame {
  type: "auth.refresh";
  id?: FrameId;
  payload: AuthRefreshRequest;
}

export interface AuthRefreshResponseFrame {
  type: "auth.refresh.response";
  id?: FrameId;
  payload: AuthRefreshResponse;
}

export interface AuthRefreshRequest {
  /**
   * A JSON Web Token for the same `sub` as the connection's, signed with the server's key.
   */
  token: string;
}

export interface AuthRefreshResponse {
  status: SubscriptionStatus;
  /**
   * What happened, or why the token was not taken (the connection keeps its current one).
   */
  message: string;
  /**
   * With `ok`, the new token's `exp` (unix seconds); the connection is closed with 4001 this long after it (plus the leeway) unless refreshed again.
   */
  expires_at?: number;
}

export interface QuotesSubscribeFrame {
  type: "quotes.subscribe";
  id?: FrameId;
  payload: QuotesSubscriptionRequest;
}

export interface QuotesUnsubscribeFrame {
  type: "quotes.unsubscribe";
  id?: FrameId;
  payload: QuotesSubscriptionRequest;
}

export interface QuotesSubscribeResponseFrame {
  type: "quotes.subscribe.response";
  id?: FrameId;
  payload: QuotesSubscriptionResponse;
}

export interface QuotesUnsubscribeResponseFrame {
  type: "quotes.unsubscribe.response";
  id?: FrameId;
  payload: QuotesSubscriptionResponse;
}

export interface QuotesUpdateFrame {
  type: "quotes.update";
  payload: QuoteData;
}

export interface QuotesSubscriptionRequest {
  /**
   * Symbols (case-insensitive, `EXCHANGE:SYMBOL` accepted) whose quotes come at most once a second.
   */
  symbols?: string[];
  /**
   * Symbols whose quotes come every broadcast interval (for the symbol on the chart or in the order ticket).
   */
  fast_symbols?: string[];
}

export interface QuotesSubscriptionResponse {
  status: SubscriptionStatus;
  /**
   * What happened, or what was wrong (naming the symbol).
   */
  message: string;
  /**
   * The tickers this request subscribed (or unsubscribed) at the slow rate; empty on an error.
   */
  symbols: string[];
  /**
   * The tickers this request subscribed (or unsubscribed) at the fast rate; empty on an error.
   */
  fast_symbols: string[];
}

export type QuoteStatus = "ok" | "error";

/**
 * One symbol's quote, exactly as in `POST /api/v1/datafeed/quotes` (the same schema).
 */
export interface QuoteData {
  s: QuoteStatus;
  /**
   * The symbol's ticker.
   */
  n: string;
  /**
   * Why the quote failed (only when `s` is `error`).
   */
  errmsg?: string;
  v: QuoteValues;
}

/**
 * TradingView quote values; empty when the quote failed.
 */
export interface QuoteValues {
  /**
   * Last price.
   */
  lp?: number;
  ask?: number;
  bid?: number;
  spread?: number;
  open_price?: number;
  high_price?: number;
  low_price?: number;
  prev_close_price?: number;
  volume?: number;
  /**
   * Change against the previous daily close.
   */
  ch?: number;
  /**
   * Change in percent.
   */
  chp?: number;
  short_name?: string;
  exchange?: string;
  description?: string;
  /**
   * `EXCHANGE:SYMBOL`.
   */
  original_name?: string;
}

export interface BarsSubscriptionRequest {
  /**
   * Symbol, case-insensitive (`EXCHANGE:SYMBOL` accepted).
   */
  symbol: string;
  /**
   * One of 1, 5, 15, 30, 60, 240, D, W, M (aliases 1D, 1W, 1M) that the symbol serves (its `supported_resolutions`); default 1.
   */
  resolution?: string;
}

export type SubscriptionStatus = "ok" | "error";

export interface SubscriptionResponse {
  status: SubscriptionStatus;
  /**
   * The symbol as requested.
   */
  symbol: string;
  /**
   * What happened, or what was wrong.
   */
  message: string;
  /**
   * The topic, `bars:{SYMBOL}:{RESOLUTION}` (canonical); empty when the request named no valid topic.
   */
  topic: string;
}

/**
 * A bar (as in `GET /api/v1/datafeed/bars`) with the topic it belongs to.
 */
export interface BarUpdate {
  symbol: string;
  /**
   * Canonical resolution.
   */
  resolution: string;
  topic: string;
  /**
   * Start of the bar, unix milliseconds.
   */
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  /**
   * When the server published this state, unix microseconds. Every subscriber gets the same value, so `now - published_us` is the delivery lag a client sees (useful to spot a stale feed).
   */
  published_us: number;
}

/**
 * Every frame a client sends (the `publish` messages of the channels).
 */
export type ClientMessage =
  | BarsSubscribeFrame
  | BarsUnsubscribeFrame
  | AuthRefreshFrame
  | QuotesSubscribeFrame
  | QuotesUnsubscribeFrame;

/**
 * Every frame the server sends (the `subscribe` messages of the channels).
 */
export type ServerMessage =
  | BarsSubscribeResponseFrame
  | BarsUnsubscribeResponseFrame
  | BarsUpdateFrame
  | AuthRefreshResponseFrame
  | QuotesSubscribeResponseFrame
  | QuotesUnsubscribeResponseFrame
  | QuotesUpdateFrame;

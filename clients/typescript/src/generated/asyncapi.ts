/**
 * This file was generated from specs/asyncapi.yaml (Trading Pro WebSocket API 1.0.0).
 * Generator: clients/typescript/scripts/gen-asyncapi.mjs (json-schema-to-typescript).
 * Do not edit it by hand: change the spec and run scripts/generate.
 */

/**
 * TradingView's `Side`: 1 buy, -1 sell.
 */
export type Side = 1 | -1;

/**
 * TradingView's `OrderType`: 1 limit, 2 market, 3 stop, 4 stop-limit.
 */
export type OrderType = 1 | 2 | 3 | 4;

/**
 * TradingView's `OrderStatus`: 1 canceled, 2 filled, 3 inactive (a bracket waiting for its parent), 4 placing, 5 rejected, 6 working. Filled, canceled and rejected are final.
 */
export type OrderStatus = 1 | 2 | 3 | 4 | 5 | 6;

/**
 * TradingView's `ParentType`: 1 an order (the bracket waits for it to fill), 2 a position.
 */
export type ParentType = 1 | 2;

/**
 * Time in force: `GTC` good till cancelled, `DAY` until the close of the session it was placed in, `IOC` fill at once or cancel, `FOK` fill whole at once or cancel (orders fill whole, so IOC and FOK behave alike).
 */
export type DurationType = "GTC" | "DAY" | "IOC" | "FOK";

export interface OrderDuration {
  type: DurationType;
}

export interface OrderMessage {
  /**
   * `info` (why an order ended as it did: expired, cancelled with its parent or its position) or `error`.
   */
  type: "info" | "error";
  text: string;
}

/**
 * TradingView's `Order`.
 */
export interface Order {
  id: string;
  symbol: string;
  type: OrderType;
  side: Side;
  qty: number;
  status: OrderStatus;
  limitPrice?: number;
  stopPrice?: number;
  takeProfit?: number;
  stopLoss?: number;
  trailingStopPips?: number;
  duration: OrderDuration;
  /**
   * When a DAY order expires (the close of its session), unix milliseconds.
   */
  expiresAt?: number;
  filledQty: number;
  /**
   * The price it filled at.
   */
  avgPrice?: number;
  /**
   * A stop-limit whose stop the market touched (it now works as a limit).
   */
  triggered?: boolean;
  /**
   * A bracket's parent (an order id, or a position id).
   */
  parentId?: string;
  parentType?: ParentType;
  message?: OrderMessage;
}

/**
 * TradingView's `Position`, one per symbol (netted).
 */
export interface Position {
  /**
   * The position's id, its symbol.
   */
  id: string;
  symbol: string;
  /**
   * Positive; `side` says long or short. 0 when the position closed (in `positions.update`).
   */
  qty: number;
  side: Side;
  avgPrice: number;
  /**
   * The market price it is marked at (absent before the market printed).
   */
  last?: number;
  unrealizedPl: number;
  /**
   * The position's take-profit, when it has one.
   */
  takeProfit?: number;
  stopLoss?: number;
}

/**
 * TradingView's `Execution`, linked to its order.
 */
export interface Execution {
  /**
   * Its order's id and the fill's number (orders fill whole, so one each).
   */
  id: string;
  orderId: string;
  symbol: string;
  /**
   * A price the market printed.
   */
  price: number;
  qty: number;
  side: Side;
  /**
   * Unix milliseconds.
   */
  time: number;
  commission: number;
  /**
   * What the fill moved the cash by (negative for a buy), commission included.
   */
  netAmount: number;
}

/**
 * Nothing to choose; the account is the connection's.
 */
export interface PrivateSubscriptionRequest {}

export interface PrivateUnsubscribeResponse {
  status: SubscriptionStatus;
  message: string;
}

/**
 * The account's figures, as `GET /api/v1/broker/account` gives them (the `equity` route of the original).
 */
export interface EquityValues {
  equity: number;
  balance: number;
  unrealizedPl: number;
  realizedPl: number;
  marginUsed: number;
  buyingPower: number;
}

export interface Notification {
  /**
   * `canceled` (an order ended without filling: expired, its other bracket filled, its position closed, the account reset), `rejected`, or `resync` (updates were missed: read the state again over REST).
   */
  kind: "canceled" | "rejected" | "resync";
  text: string;
  orderId?: string;
}

export interface OrdersSubscribeFrame {
  type: "orders.subscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface OrdersUnsubscribeFrame {
  type: "orders.unsubscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface OrdersSubscribeResponseFrame {
  type: "orders.subscribe.response";
  id?: FrameId;
  payload: OrdersSnapshot;
}

export interface OrdersUnsubscribeResponseFrame {
  type: "orders.unsubscribe.response";
  id?: FrameId;
  payload: PrivateUnsubscribeResponse;
}

export interface OrdersUpdateFrame {
  type: "orders.update";
  payload: OrdersChange;
}

export interface OrdersSnapshot {
  status: SubscriptionStatus;
  /**
   * What happened, or why not (the broker is not served here).
   */
  message: string;
  /**
   * The account's sequence number this state is as of; updates follow with higher numbers.
   */
  seq: number;
  /**
   * The account's open orders now (placing, inactive, working), oldest first.
   */
  orders: Order[];
}

export interface OrdersChange {
  /**
   * The account's sequence number of this change.
   */
  seq: number;
  order: Order;
}

export interface PositionsSubscribeFrame {
  type: "positions.subscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface PositionsUnsubscribeFrame {
  type: "positions.unsubscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface PositionsSubscribeResponseFrame {
  type: "positions.subscribe.response";
  id?: FrameId;
  payload: PositionsSnapshot;
}

export interface PositionsUnsubscribeResponseFrame {
  type: "positions.unsubscribe.response";
  id?: FrameId;
  payload: PrivateUnsubscribeResponse;
}

export interface PositionsUpdateFrame {
  type: "positions.update";
  payload: PositionsChange;
}

export interface PositionsSnapshot {
  status: SubscriptionStatus;
  /**
   * What happened, or why not (the broker is not served here).
   */
  message: string;
  /**
   * The account's sequence number this state is as of; updates follow with higher numbers.
   */
  seq: number;
  /**
   * The account's open positions now.
   */
  positions: Position[];
}

export interface PositionsChange {
  /**
   * The account's sequence number of this change.
   */
  seq: number;
  position: Position;
}

export interface ExecutionsSubscribeFrame {
  type: "executions.subscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface ExecutionsUnsubscribeFrame {
  type: "executions.unsubscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface ExecutionsSubscribeResponseFrame {
  type: "executions.subscribe.response";
  id?: FrameId;
  payload: ExecutionsSnapshot;
}

export interface ExecutionsUnsubscribeResponseFrame {
  type: "executions.unsubscribe.response";
  id?: FrameId;
  payload: PrivateUnsubscribeResponse;
}

export interface ExecutionsUpdateFrame {
  type: "executions.update";
  payload: ExecutionsChange;
}

export interface ExecutionsSnapshot {
  status: SubscriptionStatus;
  /**
   * What happened, or why not (the broker is not served here).
   */
  message: string;
  /**
   * The account's sequence number this state is as of; updates follow with higher numbers.
   */
  seq: number;
  /**
   * The account's latest fills (up to 100), oldest first.
   */
  executions: Execution[];
}

export interface ExecutionsChange {
  /**
   * The account's sequence number of this change.
   */
  seq: number;
  execution: Execution;
}

export interface EquitySubscribeFrame {
  type: "equity.subscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface EquityUnsubscribeFrame {
  type: "equity.unsubscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface EquitySubscribeResponseFrame {
  type: "equity.subscribe.response";
  id?: FrameId;
  payload: EquitySnapshot;
}

export interface EquityUnsubscribeResponseFrame {
  type: "equity.unsubscribe.response";
  id?: FrameId;
  payload: PrivateUnsubscribeResponse;
}

export interface EquityUpdateFrame {
  type: "equity.update";
  payload: EquityChange;
}

export interface EquitySnapshot {
  status: SubscriptionStatus;
  /**
   * What happened, or why not (the broker is not served here).
   */
  message: string;
  /**
   * The account's sequence number this state is as of; updates follow with higher numbers.
   */
  seq: number;
  equity?: EquityValues;
}

export interface EquityChange {
  /**
   * The account's sequence number of this change.
   */
  seq: number;
  equity: EquityValues;
}

export interface NotificationsSubscribeFrame {
  type: "notifications.subscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface NotificationsUnsubscribeFrame {
  type: "notifications.unsubscribe";
  id?: FrameId;
  payload?: PrivateSubscriptionRequest;
}

export interface NotificationsSubscribeResponseFrame {
  type: "notifications.subscribe.response";
  id?: FrameId;
  payload: NotificationsSnapshot;
}

export interface NotificationsUnsubscribeResponseFrame {
  type: "notifications.unsubscribe.response";
  id?: FrameId;
  payload: PrivateUnsubscribeResponse;
}

export interface NotificationsUpdateFrame {
  type: "notifications.update";
  payload: NotificationsChange;
}

export interface NotificationsSnapshot {
  status: SubscriptionStatus;
  /**
   * What happened, or why not (the broker is not served here).
   */
  message: string;
  /**
   * The account's sequence number this state is as of; updates follow with higher numbers.
   */
  seq: number;
}

export interface NotificationsChange {
  /**
   * The account's sequence number of this change.
   */
  seq: number;
  notification: Notification;
}

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
  | QuotesUnsubscribeFrame
  | OrdersSubscribeFrame
  | OrdersUnsubscribeFrame
  | PositionsSubscribeFrame
  | PositionsUnsubscribeFrame
  | ExecutionsSubscribeFrame
  | ExecutionsUnsubscribeFrame
  | EquitySubscribeFrame
  | EquityUnsubscribeFrame
  | NotificationsSubscribeFrame
  | NotificationsUnsubscribeFrame;

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
  | QuotesUpdateFrame
  | OrdersSubscribeResponseFrame
  | OrdersUnsubscribeResponseFrame
  | OrdersUpdateFrame
  | PositionsSubscribeResponseFrame
  | PositionsUnsubscribeResponseFrame
  | PositionsUpdateFrame
  | ExecutionsSubscribeResponseFrame
  | ExecutionsUnsubscribeResponseFrame
  | ExecutionsUpdateFrame
  | EquitySubscribeResponseFrame
  | EquityUnsubscribeResponseFrame
  | EquityUpdateFrame
  | NotificationsSubscribeResponseFrame
  | NotificationsUnsubscribeResponseFrame
  | NotificationsUpdateFrame;

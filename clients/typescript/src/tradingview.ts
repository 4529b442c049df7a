// The part of TradingView's Charting Library datafeed contract ("JS API")
// that this package implements, written from the library's public
// documentation (IExternalDatafeed, IDatafeedChartApi, IDatafeedQuotesApi
// and the types they use). Only what a datafeed needs is declared; every
// optional field the library knows but we never set is left out.
//
// These are structural types: an object built by createDatafeed() can be
// passed as the widget's `datafeed` whatever copy of the library's own
// typings the application uses. `ResolutionString` is a branded string in
// the library; here it is a plain string (a branded value is still a
// string, so the library's calls type-check against ours).

/** A resolution as the library names it: "1", "5", "60", "D", "1D", "W", "M", ... */
export type ResolutionString = string;

/** An exchange in the configuration, `value` is passed back to searchSymbols. */
export interface Exchange {
  value: string;
  name: string;
  desc: string;
}

/** A symbol type filter in the configuration, `value` is passed back to searchSymbols. */
export interface DatafeedSymbolType {
  name: string;
  value: string;
}

/** What `onReady` hands the library. */
export interface DatafeedConfiguration {
  exchanges?: Exchange[];
  supported_resolutions?: ResolutionString[];
  supports_marks?: boolean;
  supports_time?: boolean;
  supports_timescale_marks?: boolean;
  symbols_types?: DatafeedSymbolType[];
}

export type OnReadyCallback = (configuration: DatafeedConfiguration) => void;

/** One entry of the symbol search dialog. */
export interface SearchSymbolResultItem {
  symbol: string;
  full_name: string;
  description: string;
  exchange: string;
  ticker?: string;
  type: string;
}

export type SearchSymbolsCallback = (items: SearchSymbolResultItem[]) => void;

export type SeriesFormat = "price" | "volume";

export type DataStatus = "streaming" | "endofday" | "delayed_streaming";

/** The library's description of a symbol (the fields this datafeed fills). */
export interface LibrarySymbolInfo {
  /** Symbol name as shown on the chart, e.g. "AAPL". */
  name: string;
  /** `EXCHANGE:NAME`. */
  full_name?: string;
  /** Unique id the library passes back in getBars / subscribeBars / quotes. */
  ticker?: string;
  description: string;
  type: string;
  /** Trading hours in the library's session format, in `timezone`. */
  session: string;
  exchange: string;
  listed_exchange: string;
  /** IANA time zone name (the library accepts "Etc/UTC" and the zones it lists). */
  timezone: string;
  format: SeriesFormat;
  /** Price tick is minmov / pricescale. */
  pricescale: number;
  minmov: number;
  has_intraday?: boolean;
  has_daily?: boolean;
  has_weekly_and_monthly?: boolean;
  has_empty_bars?: boolean;
  supported_resolutions?: ResolutionString[];
  /** Intraday resolutions the datafeed provides itself (no client-side aggregation). */
  intraday_multipliers?: string[];
  daily_multipliers?: string[];
  weekly_multipliers?: string[];
  monthly_multipliers?: string[];
  volume_precision?: number;
  data_status?: DataStatus;
  currency_code?: string;
  visible_plots_set?: "ohlcv" | "ohlc" | "c";
}

export type ResolveCallback = (symbolInfo: LibrarySymbolInfo) => void;

/** The error callbacks take a text message. */
export type DatafeedErrorCallback = (reason: string) => void;

/** How much history getBars should return. */
export interface PeriodParams {
  /** Leftmost requested bar time, unix seconds (inclusive). */
  from: number;
  /** Rightmost requested bar time, unix seconds (exclusive). */
  to: number;
  /** How many bars the library wants ending before `to`; takes precedence over `from`. */
  countBack: number;
  /** True for the first request of a symbol/resolution (the newest data). */
  firstDataRequest: boolean;
}

/** One bar; `time` is unix milliseconds. */
export interface Bar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume?: number;
}

export interface HistoryMetadata {
  /** True when there is no more history for this request's range and before it. */
  noData?: boolean;
  /** With `noData`: time (ms) of the newest older bar, where the library should look next. */
  nextTime?: number | null;
}

export type HistoryCallback = (bars: Bar[], meta?: HistoryMetadata) => void;

export type SubscribeBarsCallback = (bar: Bar) => void;

export type ServerTimeCallback = (serverTime: number) => void;

/** Quote values (the library's DatafeedQuoteValues). */
export interface DatafeedQuoteValues {
  ch?: number;
  chp?: number;
  short_name?: string;
  exchange?: string;
  description?: string;
  lp?: number;
  ask?: number;
  bid?: number;
  spread?: number;
  open_price?: number;
  high_price?: number;
  low_price?: number;
  prev_close_price?: number;
  volume?: number;
  original_name?: string;
}

export interface QuoteOkData {
  s: "ok";
  n: string;
  v: DatafeedQuoteValues;
}

export interface QuoteErrorData {
  s: "error";
  n: string;
  v: object;
  errmsg?: string;
}

export type QuoteData = QuoteOkData | QuoteErrorData;

export type QuotesCallback = (data: QuoteData[]) => void;

export type QuotesErrorCallback = (reason: string) => void;

/** `onReady`: the datafeed's configuration. */
export interface IExternalDatafeed {
  onReady(callback: OnReadyCallback): void;
}

/** Symbols, history and live bars. */
export interface IDatafeedChartApi {
  searchSymbols(
    userInput: string,
    exchange: string,
    symbolType: string,
    onResult: SearchSymbolsCallback,
  ): void;
  resolveSymbol(symbolName: string, onResolve: ResolveCallback, onError: DatafeedErrorCallback): void;
  getBars(
    symbolInfo: LibrarySymbolInfo,
    resolution: ResolutionString,
    periodParams: PeriodParams,
    onResult: HistoryCallback,
    onError: DatafeedErrorCallback,
  ): void;
  subscribeBars(
    symbolInfo: LibrarySymbolInfo,
    resolution: ResolutionString,
    onTick: SubscribeBarsCallback,
    listenerGuid: string,
    onResetCacheNeededCallback: () => void,
  ): void;
  unsubscribeBars(listenerGuid: string): void;
  getServerTime?(callback: ServerTimeCallback): void;
}

/** What the library's `datafeed` widget option takes. */
export type IBasicDataFeed = IDatafeedChartApi & IExternalDatafeed;

/** Quotes for the watchlist, details and order ticket widgets (Trading Platform). */
export interface IDatafeedQuotesApi {
  getQuotes(symbols: string[], onDataCallback: QuotesCallback, onErrorCallback: QuotesErrorCallback): void;
  subscribeQuotes(
    symbols: string[],
    fastSymbols: string[],
    onRealtimeCallback: QuotesCallback,
    listenerGUID: string,
  ): void;
  unsubscribeQuotes(listenerGUID: string): void;
}

// Feeds a lightweight-charts chart (https://tradingview.github.io/lightweight-charts/)
// from the datafeed: loads history with getBars, pages further back when the
// user scrolls near the left edge, keeps the last bar live with subscribeBars,
// and starts over when the symbol or resolution changes.
//
//   import { createChart } from "lightweight-charts";
//   import { connectLightweightChart } from "trading-pro-datafeed/lightweight";
//
//   const chart = createChart(element);
//   const feed = connectLightweightChart({ chart, baseUrl: "https://md.example.com", symbol: "AAPL", resolution: "1" });
//   await feed.ready;
//   await feed.setSymbol("MSFT", "D");
//   feed.destroy();
//
// What the adapter does to the chart is small on purpose: setData and
// update on the candlestick series (and the volume histogram, when there is
// one), and the visible logical range subscription of the time scale. Bar
// times are unix milliseconds in the datafeed, UTCTimestamp seconds here.

import {
  CandlestickSeries,
  HistogramSeries,
  type CandlestickData,
  type HistogramData,
  type IChartApi,
  type LogicalRange,
  type LogicalRangeChangeEventHandler,
  type UTCTimestamp,
} from "lightweight-charts";

import type { TokenSource } from "./auth.js";
import { createDatafeed, type TradingProDatafeed } from "./datafeed.js";
import { canonicalResolution, resolutionSeconds } from "./resolution.js";
import type { Bar, HistoryMetadata, IDatafeedChartApi, LibrarySymbolInfo, PeriodParams } from "./tradingview.js";

/** The candlestick series methods the adapter calls. */
export interface CandleSeriesLike {
  setData(data: CandlestickData<UTCTimestamp>[]): void;
  update(bar: CandlestickData<UTCTimestamp>): void;
}

/** The histogram series methods the adapter calls. */
export interface VolumeSeriesLike {
  setData(data: HistogramData<UTCTimestamp>[]): void;
  update(bar: HistogramData<UTCTimestamp>): void;
}

/** The time scale methods the adapter calls. */
export interface TimeScaleLike {
  subscribeVisibleLogicalRangeChange(handler: LogicalRangeChangeEventHandler): void;
  unsubscribeVisibleLogicalRangeChange(handler: LogicalRangeChangeEventHandler): void;
}

/** What the adapter needs of a datafeed (createDatafeed's, or any IBasicDataFeed). */
export type BarsSource = Pick<IDatafeedChartApi, "resolveSymbol" | "getBars" | "subscribeBars" | "unsubscribeBars" | "getServerTime">;

export interface LightweightChartOptions {
  /** The chart: a candlestick series and a volume histogram (on its own overlay scale) are added to it. */
  chart?: IChartApi | undefined;
  /** Or your own candlestick series (then `timeScale`, or `chart` for its time scale, is needed too). */
  candles?: CandleSeriesLike | undefined;
  /** Your own volume series; `null` for none. Default: one is added to `chart` when the adapter adds the candles. */
  volume?: VolumeSeriesLike | null | undefined;
  /** The time scale to watch for scrolling; default `chart.timeScale()`. */
  timeScale?: TimeScaleLike | undefined;

  /** The datafeed to read from; or give `baseUrl` (and `token`) and the adapter makes one (closed by destroy()). */
  datafeed?: BarsSource | undefined;
  baseUrl?: string | undefined;
  token?: TokenSource | undefined;

  symbol: string;
  resolution: string;
  /** Bars loaded first. Default 300. */
  initialBars?: number | undefined;
  /** Bars per page when scrolling back. Default 300. */
  pageBars?: number | undefined;
  /** Load older bars when fewer than this many are left of the visible range. Default 20. */
  edgeBars?: number | undefined;
  /** Volume column colours for rising and falling bars. */
  upColor?: string | undefined;
  downColor?: string | undefined;
  /** What went wrong (a failed load, a refused subscription); default console.warn. */
  onError?: ((error: Error) => void) | undefined;
}

export interface LightweightChartFeed {
  /** Settles when the current symbol's first history is on the chart (rejects when it could not be loaded). */
  readonly ready: Promise<void>;
  readonly symbol: string;
  readonly resolution: string;
  /** The bars on the chart, oldest first, times in unix ms. */
  readonly bars: readonly Bar[];
  /** True once the datafeed said there is nothing older. */
  readonly historyExhausted: boolean;
  /** Shows another symbol and/or resolution (dropping the current one's data and subscription). */
  setSymbol(symbol: string, resolution?: string): Promise<void>;
  /** Loads one page of older bars now; resolves with how many were added. */
  loadOlder(): Promise<number>;
  /** Unsubscribes everything (and closes the datafeed the adapter made). */
  destroy(): void;
}

/** Unix ms (datafeed) to UTCTimestamp seconds (lightweight-charts). */
export function toChartTime(ms: number): UTCTimestamp {
  return Math.floor(ms / 1000) as UTCTimestamp;
}

export function toCandle(bar: Bar): CandlestickData<UTCTimestamp> {
  return { time: toChartTime(bar.time), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
}

export function toVolume(bar: Bar, upColor: string, downColor: string): HistogramData<UTCTimestamp> {
  return { time: toChartTime(bar.time), value: bar.volume ?? 0, color: bar.close >= bar.open ? upColor : downColor };
}

/**
 * Adds a candlestick series to a chart and, unless `withVolume` is false, a
 * volume histogram below it (on an overlay price scale).
 */
export function addBarSeries(
  chart: IChartApi,
  withVolume = true,
): { candles: CandleSeriesLike; volume: VolumeSeriesLike | undefined } {
  const candles = chart.addSeries(CandlestickSeries);
  if (!withVolume) return { candles, volume: undefined };
  const volume = chart.addSeries(HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.1, bottom: 0.25 } });
  return { candles, volume };
}

function resolveSymbol(datafeed: BarsSource, symbol: string): Promise<LibrarySymbolInfo> {
  return new Promise((resolve, reject) =>
    datafeed.resolveSymbol(symbol, resolve, (reason) => reject(new Error(`resolveSymbol ${symbol}: ${reason}`))),
  );
}

function getBars(
  datafeed: BarsSource,
  symbolInfo: LibrarySymbolInfo,
  resolution: string,
  periodParams: PeriodParams,
): Promise<{ bars: Bar[]; meta: HistoryMetadata }> {
  return new Promise((resolve, reject) =>
    datafeed.getBars(
      symbolInfo,
      resolution,
      periodParams,
      (bars, meta) => resolve({ bars, meta: meta ?? {} }),
      (reason) => reject(new Error(`getBars ${symbolInfo.ticker ?? symbolInfo.name} ${resolution}: ${reason}`)),
    ),
  );
}

/** The server's clock through getServerTime when the datafeed has it (falling back to this machine's after 5 s). */
function serverNow(datafeed: BarsSource): Promise<number> {
  const local = () => Math.floor(Date.now() / 1000);
  const getServerTime = datafeed.getServerTime?.bind(datafeed);
  if (!getServerTime) return Promise.resolve(local());
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(local()), 5000);
    getServerTime((time) => {
      clearTimeout(timer);
      resolve(time);
    });
  });
}

let nextListener = 0;

/** Connects a chart to the datafeed; see the module comment. */
export function connectLightweightChart(options: LightweightChartOptions): LightweightChartFeed {
  let candles = options.candles;
  let volume = options.volume ?? undefined;
  if (!candles) {
    if (!options.chart) throw new Error("connectLightweightChart: give `chart` or `candles`");
    const added = addBarSeries(options.chart, options.volume === undefined);
    candles = added.candles;
    volume = options.volume ?? added.volume;
  }
  const timeScale = options.timeScale ?? options.chart?.timeScale();
  if (!timeScale) throw new Error("connectLightweightChart: give `chart` or `timeScale`");
  let ownDatafeed: TradingProDatafeed | undefined;
  let datafeed = options.datafeed;
  if (!datafeed) {
    if (!options.baseUrl) throw new Error("connectLightweightChart: give `datafeed` or `baseUrl`");
    ownDatafeed = createDatafeed({ baseUrl: options.baseUrl, token: options.token, onError: options.onError });
    datafeed = ownDatafeed;
  }
  const source: BarsSource = datafeed;
  const candleSeries: CandleSeriesLike = candles;
  const volumeSeries: VolumeSeriesLike | undefined = volume;
  const initialBars = options.initialBars ?? 300;
  const pageBars = options.pageBars ?? 300;
  const edgeBars = options.edgeBars ?? 20;
  const upColor = options.upColor ?? "rgba(38, 166, 154, 0.5)";
  const downColor = options.downColor ?? "rgba(239, 83, 80, 0.5)";
  const reportError = (err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    if (options.onError) options.onError(error);
    else console.warn(`trading-pro lightweight-charts adapter: ${error.message}`);
  };

  let symbol = options.symbol;
  let resolution = canonicalResolution(options.resolution);
  /** Bumped on every symbol change, reset and destroy: older async work stops. */
  let generation = 0;
  let symbolInfo: LibrarySymbolInfo | undefined;
  let bars: Bar[] = [];
  let exhausted = false;
  let listenerGuid: string | undefined;
  let loadingOlder: Promise<number> | undefined;
  let lastRange: LogicalRange | null = null;
  let rangeChangedWhileLoading = false;
  let destroyed = false;
  let ready: Promise<void>;

  const nearLeftEdge = (range: LogicalRange | null) => range !== null && range.from < edgeBars;

  const setAll = () => {
    candleSeries.setData(bars.map(toCandle));
    volumeSeries?.setData(bars.map((b) => toVolume(b, upColor, downColor)));
  };

  const unsubscribe = () => {
    if (listenerGuid !== undefined) source.unsubscribeBars(listenerGuid);
    listenerGuid = undefined;
  };

  const onTick = (g: number) => (bar: Bar) => {
    if (g !== generation) return;
    const last = bars[bars.length - 1];
    if (last && bar.time < last.time) return;
    if (last && bar.time === last.time) bars[bars.length - 1] = bar;
    else bars.push(bar);
    candleSeries.update(toCandle(bar));
    volumeSeries?.update(toVolume(bar, upColor, downColor));
  };

  const load = async (g: number): Promise<void> => {
    const info = await resolveSymbol(source, symbol);
    if (g !== generation) return;
    symbolInfo = info;
    const period = resolutionSeconds(resolution);
    // `to` is exclusive: one period past now takes in the bar in progress.
    const to = (await serverNow(source)) + period;
    if (g !== generation) return;
    const { bars: history, meta } = await getBars(source, info, resolution, {
      from: to - initialBars * period,
      to,
      countBack: initialBars,
      firstDataRequest: true,
    });
    if (g !== generation) return;
    bars = history.slice();
    exhausted = history.length === 0 && meta.noData === true && meta.nextTime == null;
    setAll();
    listenerGuid = `lightweight-${++nextListener}`;
    source.subscribeBars(info, resolution, onTick(g), listenerGuid, () => {
      // Too much was missed: load again from scratch.
      if (g === generation) void start(symbol, resolution);
    });
  };

  const start = (newSymbol: string, newResolution: string): Promise<void> => {
    generation++;
    unsubscribe();
    symbol = newSymbol;
    resolution = canonicalResolution(newResolution);
    symbolInfo = undefined;
    bars = [];
    exhausted = false;
    loadingOlder = undefined;
    rangeChangedWhileLoading = false;
    setAll();
    ready = load(generation);
    ready.catch(reportError);
    return ready;
  };

  const loadOlder = (): Promise<number> => {
    if (loadingOlder) return loadingOlder;
    const info = symbolInfo;
    const oldest = bars[0];
    if (destroyed || exhausted || !info || !oldest) return Promise.resolve(0);
    const g = generation;
    const period = resolutionSeconds(resolution);
    const run = async (): Promise<number> => {
      let to = Math.floor(oldest.time / 1000);
      // A second try only when the datafeed points past a hole (nextTime).
      for (let attempt = 0; attempt < 2; attempt++) {
        const { bars: page, meta } = await getBars(source, info, resolution, {
          from: to - pageBars * period,
          to,
          countBack: pageBars,
          firstDataRequest: false,
        });
        if (g !== generation) return 0;
        const first = bars[0];
        const older = first ? page.filter((b) => b.time < first.time) : page;
        if (older.length > 0) {
          bars = [...older, ...bars];
          setAll();
          return older.length;
        }
        if (meta.nextTime != null && meta.nextTime < oldest.time && attempt === 0) {
          to = Math.floor(meta.nextTime / 1000) + 1;
          continue;
        }
        break;
      }
      exhausted = true;
      return 0;
    };
    const promise = run().finally(() => {
      if (loadingOlder !== promise) return;
      loadingOlder = undefined;
      // The user kept scrolling while the page loaded: check where the view is now.
      if (rangeChangedWhileLoading) {
        rangeChangedWhileLoading = false;
        if (g === generation && nearLeftEdge(lastRange)) void loadOlder().catch(reportError);
      }
    });
    loadingOlder = promise;
    return promise;
  };

  const onRange: LogicalRangeChangeEventHandler = (range) => {
    lastRange = range;
    if (destroyed) return;
    if (loadingOlder) {
      rangeChangedWhileLoading = true;
      return;
    }
    if (nearLeftEdge(range)) void loadOlder().catch(reportError);
  };

  timeScale.subscribeVisibleLogicalRangeChange(onRange);
  ready = Promise.resolve();
  void start(symbol, resolution);

  return {
    get ready() {
      return ready;
    },
    get symbol() {
      return symbol;
    },
    get resolution() {
      return resolution;
    },
    get bars() {
      return bars;
    },
    get historyExhausted() {
      return exhausted;
    },
    setSymbol(newSymbol: string, newResolution?: string) {
      if (destroyed) return Promise.reject(new Error("the chart feed was destroyed"));
      return start(newSymbol, newResolution ?? resolution);
    },
    loadOlder,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      generation++;
      unsubscribe();
      timeScale.unsubscribeVisibleLogicalRangeChange(onRange);
      ownDatafeed?.destroy();
    },
  };
}

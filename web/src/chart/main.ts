// The chart page served at /chart: candlesticks and volume from the
// trading-pro datafeed (clients/typescript) drawn with lightweight-charts,
// a symbol search, a resolution switcher, a watchlist of live quotes and
// the state of the live connection.
//
//   /chart?symbol=BTCUSD&resolution=1
//
// Everything goes through the package: history, paging back and the live
// last bar through its lightweight-charts adapter, search and resolve
// through the datafeed's REST calls, quotes through subscribeQuotes, all
// live data over its one shared WebSocket. The page only draws.
//
// window.tradingPro is a small hook for the browser tests (web/test): it
// reads back what the series hold, so a test can compare what is drawn
// with the REST API without reading pixels.

import {
  CandlestickSeries,
  ColorType,
  HistogramSeries,
  createChart,
  type CandlestickData,
  type HistogramData,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import {
  createDatafeed,
  type Bar,
  type ConnectionEvent,
  type ConnectionState,
  type DatafeedQuoteValues,
  type LibrarySymbolInfo,
  type QuoteData,
  type SearchSymbolResultItem,
} from "trading-pro-datafeed";
import { connectLightweightChart, type LightweightChartFeed } from "trading-pro-datafeed/lightweight";

const DEFAULT_SYMBOL = "BTCUSD";
const DEFAULT_RESOLUTION = "1";
/** The watchlist takes this many symbols of each type (stock, crypto, ...) the server lists, unless `?watch=A,B,C` names them. */
const WATCHLIST_PER_TYPE = 3;
const UP = "#26a69a";
const DOWN = "#ef5350";

/** A bar as the chart shows it: the datafeed's bar (unix ms), its volume always there. */
export type ShownBar = Required<Bar>;

/** The hook the browser tests read. */
export interface TradingProPage {
  chart: IChartApi;
  series: { candles: ISeriesApi<"Candlestick">; volume: ISeriesApi<"Histogram"> };
  readonly symbol: string;
  readonly resolution: string;
  /** True once the current symbol and resolution's first history is drawn. */
  readonly loaded: boolean;
  readonly connection: ConnectionState;
  /** Every connection state change since the page loaded. */
  readonly connectionEvents: readonly ConnectionEvent[];
  readonly watchlist: readonly string[];
  /** What the candlestick and volume series hold, oldest first. */
  barsShown(): ShownBar[];
  /** The latest quote values per symbol (error quotes as `{ error }`). */
  quotes(): Record<string, DatafeedQuoteValues | { error: string }>;
}

declare global {
  interface Window {
    tradingPro: TradingProPage;
  }
}

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

const params = new URLSearchParams(location.search);
let symbol = (params.get("symbol") ?? DEFAULT_SYMBOL).trim() || DEFAULT_SYMBOL;
let resolution = (params.get("resolution") ?? DEFAULT_RESOLUTION).trim() || DEFAULT_RESOLUTION;
let symbolInfo: LibrarySymbolInfo | undefined;
let loaded = false;
let watchlist: string[] = [];
const quotes = new Map<string, QuoteData>();
/** Decimals per ticker, from the symbols' price scales. */
const precisions = new Map<string, number>();
const connectionEvents: ConnectionEvent[] = [];

const ui = {
  chart: element("chart"),
  search: element<HTMLInputElement>("search"),
  results: element<HTMLUListElement>("search-results"),
  name: element("symbol-name"),
  description: element("symbol-description"),
  price: element("symbol-price"),
  resolutions: element("resolutions"),
  status: element("status"),
  statusText: element("status-text"),
  watchlist: element<HTMLTableSectionElement>("watchlist"),
  message: element("message"),
};

function showMessage(text: string): void {
  ui.message.textContent = text;
  ui.message.hidden = text === "";
}

// Same origin: the page is served by the server it charts.
const datafeed = createDatafeed({
  baseUrl: location.origin,
  onError: (error) => {
    console.warn(`trading-pro: ${error.message}`);
    showMessage(error.message);
  },
});

const chart = createChart(ui.chart, {
  autoSize: true,
  layout: {
    background: { type: ColorType.Solid, color: "#131722" },
    textColor: "#d1d4dc",
    panes: { separatorColor: "#2a2e39" },
  },
  grid: { vertLines: { color: "#1f2430" }, horzLines: { color: "#1f2430" } },
  rightPriceScale: { borderColor: "#2a2e39" },
  timeScale: { borderColor: "#2a2e39", timeVisible: true, secondsVisible: false, rightOffset: 4 },
});
const candles = chart.addSeries(CandlestickSeries, {
  upColor: UP,
  downColor: DOWN,
  borderVisible: false,
  wickUpColor: UP,
  wickDownColor: DOWN,
});
// The volume gets a pane of its own below the candles.
const volume = chart.addSeries(HistogramSeries, { priceFormat: { type: "volume" } }, 1);
chart.panes()[1]?.setStretchFactor(0.25);

/** Made by the first show(), once the symbol is known to exist. */
let feed: LightweightChartFeed | undefined;

function resolveSymbol(name: string): Promise<LibrarySymbolInfo> {
  return new Promise((resolve, reject) => datafeed.resolveSymbol(name, resolve, (reason) => reject(new Error(reason))));
}

function searchSymbols(input: string): Promise<SearchSymbolResultItem[]> {
  return new Promise((resolve) => datafeed.searchSymbols(input, "", "", resolve));
}

/** Digits after the point for a symbol's prices (pricescale 100 -> 2). */
function precisionOf(info: LibrarySymbolInfo | undefined): number {
  if (!info) return 2;
  return Math.max(0, Math.round(Math.log10(info.pricescale)));
}

function formatPrice(value: number | undefined, digits: number): string {
  return value === undefined ? "—" : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function formatChange(value: number | undefined, digits: number, suffix = ""): string {
  if (value === undefined) return "—";
  const sign = value > 0 ? "+" : "";
  return `${sign}${value.toFixed(digits)}${suffix}`;
}

/** Puts the symbol and resolution in the address bar, so a reload (or a shared link) shows the same chart. */
function updateUrl(): void {
  const url = new URL(location.href);
  url.searchParams.set("symbol", symbol);
  url.searchParams.set("resolution", resolution);
  history.replaceState(null, "", url);
}

function renderResolutions(): void {
  const supported = symbolInfo?.supported_resolutions ?? [resolution];
  ui.resolutions.replaceChildren(
    ...supported.map((r) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = r;
      button.dataset.resolution = r;
      button.setAttribute("aria-pressed", String(r === resolution));
      button.addEventListener("click", () => void show(symbol, r));
      return button;
    }),
  );
}

function renderHeader(): void {
  ui.name.textContent = symbolInfo?.name ?? symbol;
  ui.description.textContent = symbolInfo ? `${symbolInfo.description} · ${symbolInfo.exchange}` : "";
  const quote = quotes.get(symbolInfo?.ticker ?? symbol);
  const digits = precisionOf(symbolInfo);
  if (quote?.s === "ok") {
    ui.price.textContent = `${formatPrice(quote.v.lp, digits)}  ${formatChange(quote.v.chp, 2, "%")}`;
    ui.price.style.color = (quote.v.ch ?? 0) >= 0 ? UP : DOWN;
  } else {
    ui.price.textContent = "";
  }
  document.title = `${symbolInfo?.name ?? symbol} ${resolution} · trading-pro`;
}

/** Shows `newSymbol` at `newResolution` (or the symbol's first resolution when it does not serve that one). */
async function show(newSymbol: string, newResolution: string): Promise<void> {
  loaded = false;
  let info: LibrarySymbolInfo;
  try {
    info = await resolveSymbol(newSymbol);
  } catch (err) {
    showMessage(`${newSymbol}: ${err instanceof Error ? err.message : String(err)}`);
    loaded = true;
    return;
  }
  const supported = info.supported_resolutions ?? [];
  symbol = info.ticker ?? info.name;
  resolution = supported.includes(newResolution) || supported.length === 0 ? newResolution : supported[0]!;
  symbolInfo = info;
  precisions.set(symbol, precisionOf(info));
  const digits = precisionOf(info);
  candles.applyOptions({ priceFormat: { type: "price", precision: digits, minMove: info.minmov / info.pricescale } });
  updateUrl();
  renderResolutions();
  renderHeader();
  renderWatchlist();
  subscribeQuotes();
  showMessage("");
  const target = `${symbol}:${resolution}`;
  try {
    if (feed) {
      await feed.setSymbol(symbol, resolution);
    } else {
      feed = connectLightweightChart({
        candles,
        volume,
        timeScale: chart.timeScale(),
        datafeed,
        symbol,
        resolution,
        upColor: "rgba(38, 166, 154, 0.5)",
        downColor: "rgba(239, 83, 80, 0.5)",
        onError: (error) => showMessage(error.message),
      });
      await feed.ready;
    }
  } catch {
    // The adapter reported it through onError.
  }
  // A later switch may have started meanwhile; only the current one counts.
  if (`${symbol}:${resolution}` === target) loaded = true;
}

// --- Watchlist ------------------------------------------------------------

function renderWatchlist(): void {
  ui.watchlist.replaceChildren(
    ...watchlist.map((name) => {
      const row = document.createElement("tr");
      row.dataset.symbol = name;
      if (name === symbol) row.className = "current";
      const quote = quotes.get(name);
      const cells: [string, string][] = [];
      if (quote?.s === "ok") {
        const digits = precisions.get(quote.n) ?? 2;
        const direction = (quote.v.ch ?? 0) >= 0 ? "num up" : "num down";
        cells.push(
          [quote.v.short_name ?? name, ""],
          [formatPrice(quote.v.lp, digits), "num"],
          [formatChange(quote.v.ch, digits), direction],
          [formatChange(quote.v.chp, 2, "%"), direction],
        );
      } else if (quote?.s === "error") {
        cells.push([name, ""], [quote.errmsg ?? "unavailable", "error"]);
      } else {
        cells.push([name, ""], ["…", "num"], ["", "num"], ["", "num"]);
      }
      for (const [text, className] of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (className) cell.className = className;
        if (className === "error") cell.colSpan = 3;
        row.append(cell);
      }
      row.addEventListener("click", () => void show(name, resolution));
      return row;
    }),
  );
}

let quotesListener: string | undefined;
let quotesListeners = 0;

/**
 * (Re)subscribes the watchlist's quotes, the chart's symbol at the fast
 * rate. The new listener comes before the old one goes, so the symbols both
 * follow stay subscribed (the datafeed counts listeners per symbol).
 */
function subscribeQuotes(): void {
  const previous = quotesListener;
  quotesListener = `page-${++quotesListeners}`;
  datafeed.subscribeQuotes(
    watchlist,
    [symbol],
    (data) => {
      for (const quote of data) quotes.set(quote.n, quote);
      renderWatchlist();
      renderHeader();
    },
    quotesListener,
  );
  if (previous !== undefined) datafeed.unsubscribeQuotes(previous);
}

async function loadWatchlist(): Promise<void> {
  const named = params.get("watch");
  if (named) {
    watchlist = named.split(",").map((s) => s.trim().toUpperCase()).filter(Boolean);
  } else {
    // Every symbol the server has (an empty search), a few of each type.
    const found = await searchSymbols("");
    const perType = new Map<string, number>();
    watchlist = [];
    for (const item of found) {
      const taken = perType.get(item.type) ?? 0;
      if (taken >= WATCHLIST_PER_TYPE) continue;
      perType.set(item.type, taken + 1);
      watchlist.push(item.ticker ?? item.symbol);
    }
  }
  renderWatchlist();
  subscribeQuotes();
  // Each symbol's price scale, for the number of decimals.
  await Promise.all(
    watchlist.map(async (name) => {
      try {
        precisions.set(name, precisionOf(await resolveSymbol(name)));
      } catch {
        // Unknown: its quote says so.
      }
    }),
  );
  renderWatchlist();
}

// --- Symbol search ----------------------------------------------------------

let searchTimer: ReturnType<typeof setTimeout> | undefined;
let searchRun = 0;
let results: SearchSymbolResultItem[] = [];
let selected = 0;

function closeResults(): void {
  ui.results.hidden = true;
  results = [];
}

function renderResults(): void {
  ui.results.replaceChildren(
    ...(results.length === 0
      ? [Object.assign(document.createElement("li"), { className: "empty", textContent: "No symbols found" })]
      : results.map((item, i) => {
          const li = document.createElement("li");
          li.setAttribute("role", "option");
          li.setAttribute("aria-selected", String(i === selected));
          li.dataset.symbol = item.ticker ?? item.symbol;
          const parts: [string, string][] = [
            [item.symbol, "ticker"],
            [item.description, "description"],
            [item.exchange, "exchange"],
          ];
          for (const [text, className] of parts) {
            li.append(Object.assign(document.createElement("span"), { className, textContent: text }));
          }
          // mousedown, not click: it comes before the input's blur closes the list.
          li.addEventListener("mousedown", (event) => {
            event.preventDefault();
            pick(item);
          });
          return li;
        })),
  );
  ui.results.hidden = false;
}

function pick(item: SearchSymbolResultItem): void {
  closeResults();
  ui.search.value = "";
  ui.search.blur();
  void show(item.ticker ?? item.symbol, resolution);
}

ui.search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  const input = ui.search.value.trim();
  if (input === "") {
    closeResults();
    return;
  }
  searchTimer = setTimeout(async () => {
    const run = ++searchRun;
    const found = await searchSymbols(input);
    // A newer search (or a pick) came meanwhile.
    if (run !== searchRun || ui.search.value.trim() === "") return;
    results = found.slice(0, 30);
    selected = 0;
    renderResults();
  }, 150);
});

ui.search.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    closeResults();
    ui.search.blur();
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    if (results.length === 0) return;
    event.preventDefault();
    selected = (selected + (event.key === "ArrowDown" ? 1 : results.length - 1)) % results.length;
    renderResults();
  } else if (event.key === "Enter") {
    const item = results[selected];
    if (item) pick(item);
    else if (ui.search.value.trim()) {
      // Enter before the results came: take the input as a symbol name.
      const name = ui.search.value.trim();
      closeResults();
      ui.search.value = "";
      void show(name, resolution);
    }
  }
});

ui.search.addEventListener("blur", () => {
  searchRun++;
  closeResults();
});

// --- Connection state --------------------------------------------------------

let countdown: ReturnType<typeof setInterval> | undefined;

function renderConnection(event: ConnectionEvent): void {
  clearInterval(countdown);
  ui.status.dataset.state = event.state;
  switch (event.state) {
    case "open":
      ui.statusText.textContent = "Live";
      break;
    case "connecting":
      ui.statusText.textContent = event.attempt > 0 ? "Reconnecting…" : "Connecting…";
      break;
    case "reconnecting": {
      const at = Date.now() + (event.delayMs ?? 0);
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((at - Date.now()) / 1000));
        ui.statusText.textContent = seconds > 0 ? `Reconnecting in ${seconds} s` : "Reconnecting…";
      };
      tick();
      countdown = setInterval(tick, 500);
      ui.status.title = `Connection lost (${event.code ?? "no close code"}${event.reason ? `: ${event.reason}` : ""})`;
      break;
    }
    case "closed":
      ui.statusText.textContent = "Disconnected";
      break;
    default:
      ui.statusText.textContent = "Idle";
  }
  if (event.state === "open") ui.status.title = "Live data connected";
}

datafeed.onConnectionChange((event) => {
  connectionEvents.push(event);
  renderConnection(event);
});

// --- Test hook and start -------------------------------------------------------

window.tradingPro = {
  chart,
  series: { candles, volume },
  get symbol() {
    return symbol;
  },
  get resolution() {
    return resolution;
  },
  get loaded() {
    return loaded;
  },
  get connection() {
    return datafeed.connectionState;
  },
  connectionEvents,
  get watchlist() {
    return watchlist;
  },
  barsShown() {
    const volumes = new Map<number, number>();
    for (const v of volume.data() as HistogramData<UTCTimestamp>[]) volumes.set(v.time, v.value);
    return (candles.data() as CandlestickData<UTCTimestamp>[]).map((c) => ({
      time: c.time * 1000,
      open: c.open,
      high: c.high,
      low: c.low,
      close: c.close,
      volume: volumes.get(c.time) ?? 0,
    }));
  },
  quotes() {
    const out: Record<string, DatafeedQuoteValues | { error: string }> = {};
    for (const [name, quote] of quotes) out[name] = quote.s === "ok" ? { ...quote.v } : { error: quote.errmsg ?? "error" };
    return out;
  },
};

renderConnection({ state: datafeed.connectionState, attempt: 0 });
void show(symbol, resolution);
void loadWatchlist();

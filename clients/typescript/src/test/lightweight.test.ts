// The lightweight-charts adapter against a real server. lightweight-charts
// needs a DOM, so the series and the time scale are small recording objects
// implementing exactly what the adapter calls (setData, update, and the
// visible logical range subscription); update() refuses an older bar, as
// lightweight-charts does.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { LogicalRange, LogicalRangeChangeEventHandler, UTCTimestamp } from "lightweight-charts";

import { createDatafeed, type TradingProDatafeed } from "../datafeed.js";
import {
  connectLightweightChart,
  type BarsSource,
  type CandleSeriesLike,
  type TimeScaleLike,
  type VolumeSeriesLike,
} from "../lightweight.js";
import type { PeriodParams } from "../tradingview.js";
import { CLOCK_START, distinctTimes, rawBars, startServer, waitFor, type ServerProcess } from "./helpers.js";

class RecordingSeries<T extends { time: UTCTimestamp }> {
  data: T[] = [];
  setDataCalls = 0;
  updates: T[] = [];

  setData(data: T[]): void {
    for (let i = 1; i < data.length; i++) {
      assert.ok(data[i]!.time > data[i - 1]!.time, `setData: times not strictly ascending at ${i}`);
    }
    this.data = data.slice();
    this.setDataCalls++;
  }

  update(bar: T): void {
    const last = this.data[this.data.length - 1];
    if (last && bar.time < last.time) throw new Error(`Cannot update oldest data, last time=${last.time}, new time=${bar.time}`);
    if (last && bar.time === last.time) this.data[this.data.length - 1] = bar;
    else this.data.push(bar);
    this.updates.push(bar);
  }
}

class RecordingTimeScale implements TimeScaleLike {
  readonly handlers = new Set<LogicalRangeChangeEventHandler>();
  subscribeVisibleLogicalRangeChange(handler: LogicalRangeChangeEventHandler): void {
    this.handlers.add(handler);
  }
  unsubscribeVisibleLogicalRangeChange(handler: LogicalRangeChangeEventHandler): void {
    this.handlers.delete(handler);
  }
  /** What the chart does when the user scrolls. */
  scrollTo(from: number, to: number): void {
    for (const handler of this.handlers) handler({ from, to } as LogicalRange);
  }
}

type Candle = Parameters<CandleSeriesLike["update"]>[0];
type Volume = Parameters<VolumeSeriesLike["update"]>[0];

/** The real datafeed, with its getBars / subscribeBars / unsubscribeBars calls recorded. */
function recorded(datafeed: TradingProDatafeed) {
  const calls = {
    getBars: [] as PeriodParams[],
    subscribeBars: [] as { symbol: string; resolution: string; guid: string }[],
    unsubscribeBars: [] as string[],
  };
  const source: BarsSource = {
    resolveSymbol: (...args) => datafeed.resolveSymbol(...args),
    getServerTime: (callback) => datafeed.getServerTime(callback),
    getBars: (symbolInfo, resolution, periodParams, onResult, onError) => {
      calls.getBars.push(periodParams);
      datafeed.getBars(symbolInfo, resolution, periodParams, onResult, onError);
    },
    subscribeBars: (symbolInfo, resolution, onTick, guid, onReset) => {
      calls.subscribeBars.push({ symbol: symbolInfo.name, resolution, guid });
      datafeed.subscribeBars(symbolInfo, resolution, onTick, guid, onReset);
    },
    unsubscribeBars: (guid) => {
      calls.unsubscribeBars.push(guid);
      datafeed.unsubscribeBars(guid);
    },
  };
  return { source, calls };
}

function setup(datafeed: TradingProDatafeed, symbol: string, resolution: string, bars: number) {
  const candles = new RecordingSeries<Candle>();
  const volume = new RecordingSeries<Volume>();
  const timeScale = new RecordingTimeScale();
  const { source, calls } = recorded(datafeed);
  const feed = connectLightweightChart({
    candles,
    volume,
    timeScale,
    datafeed: source,
    symbol,
    resolution,
    initialBars: bars,
    pageBars: bars,
    onError: (e) => assert.fail(e),
  });
  return { candles, volume, timeScale, calls, feed };
}

const seconds = (bars: { time: number }[]) => bars.map((b) => b.time / 1000);

describe("lightweight-charts adapter", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;

  before(async () => {
    server = await startServer([
      "--seed", "3",
      "--clock-start", String(CLOCK_START),
      "--clock-speed", "60",
      "--broadcast-interval-ms", "200",
    ]);
    datafeed = createDatafeed({ baseUrl: server.baseUrl });
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("loads history, pages back near the left edge, keeps the last bar live", async () => {
    const { candles, volume, timeScale, calls, feed } = setup(datafeed, "BTCUSD", "1", 50);
    await feed.ready;
    assert.equal(candles.setDataCalls, 2, "cleared, then the history");
    assert.equal(candles.data.length, 50);
    assert.equal(calls.getBars.length, 1);
    assert.equal(calls.getBars[0]!.firstDataRequest, true);

    // The history is REST's: seconds for times, the same prices, volume alongside.
    const loaded = candles.data.slice();
    const rest = await rawBars(server.baseUrl, {
      symbol: "BTCUSD",
      resolution: "1",
      from_time: loaded[0]!.time,
      to_time: loaded[loaded.length - 1]!.time,
    });
    assert.deepEqual(
      loaded.slice(0, -1),
      rest.bars.map((b) => ({ time: b.time / 1000, open: b.open, high: b.high, low: b.low, close: b.close })),
    );
    assert.deepEqual(volume.data.slice(0, 49).map((v) => v.value), rest.bars.map((b) => b.volume));
    assert.deepEqual(volume.data.map((v) => v.time), loaded.map((c) => c.time));

    // Scrolling in the middle loads nothing; near the left edge one page.
    timeScale.scrollTo(30, 45);
    assert.equal(calls.getBars.length, 1);
    timeScale.scrollTo(5, 40);
    await waitFor("a page of older bars", () => candles.data.length >= 100);
    assert.equal(calls.getBars.length, 2);
    assert.equal(calls.getBars[1]!.to, loaded[0]!.time, "the page ends where the history began");
    const older = await rawBars(server.baseUrl, {
      symbol: "BTCUSD",
      resolution: "1",
      from_time: loaded[0]!.time - 60,
      to_time: loaded[0]!.time,
      count_back: 50,
    });
    assert.deepEqual(seconds(older.bars), candles.data.slice(0, 50).map((c) => c.time));
    assert.equal(volume.data.length, candles.data.length);
    assert.equal(feed.bars.length, candles.data.length);

    // Live: the last bar updates and new minutes follow on, none missing.
    const lastLoaded = loaded[loaded.length - 1]!.time;
    await waitFor("3 new live minutes", () => candles.data[candles.data.length - 1]!.time >= lastLoaded + 180, 30_000);
    assert.ok(candles.updates.length > 0);
    for (const bar of candles.updates) assert.ok(bar.time >= lastLoaded, `a live update at ${bar.time} is older than the history`);
    const times = distinctTimes(candles.data);
    for (let i = 1; i < times.length; i++) assert.equal(times[i]! - times[i - 1]!, 60, `minute missing after ${times[i - 1]}`);
    assert.equal(volume.data[volume.data.length - 1]!.time, candles.data[candles.data.length - 1]!.time);

    feed.destroy();
    assert.equal(timeScale.handlers.size, 0, "destroy unsubscribes from the time scale");
    assert.deepEqual(calls.unsubscribeBars, [calls.subscribeBars[0]!.guid]);
    timeScale.scrollTo(0, 10);
    assert.equal(calls.getBars.length, 2, "no request after destroy");
  });

  test("stops paging once the datafeed has no older history", async () => {
    const { candles, timeScale, calls, feed } = setup(datafeed, "AAPL", "D", 500);
    await feed.ready;
    assert.equal(candles.data.length, 500);
    let added: number;
    do {
      added = await feed.loadOlder();
    } while (added > 0);
    assert.equal(feed.historyExhausted, true);
    const all = await rawBars(server.baseUrl, {
      symbol: "AAPL",
      resolution: "D",
      from_time: 0,
      to_time: candles.data[candles.data.length - 1]!.time + 1,
      count_back: 5000,
    });
    assert.deepEqual(candles.data.map((c) => c.time), seconds(all.bars), "every daily bar, once, in order");
    const requests = calls.getBars.length;
    timeScale.scrollTo(0, 30);
    assert.equal(calls.getBars.length, requests, "no request after the history ran out");
    feed.destroy();
  });

  test("switching symbol and resolution drops the old subscription and data", async () => {
    const { candles, volume, calls, feed } = setup(datafeed, "BTCUSD", "1", 30);
    await feed.ready;
    const btcGuid = calls.subscribeBars[0]!.guid;
    await waitFor("a live BTCUSD update", () => candles.updates.length > 0);

    await feed.setSymbol("ETHUSD", "5");
    assert.deepEqual(calls.unsubscribeBars, [btcGuid]);
    assert.equal(calls.subscribeBars.length, 2);
    assert.deepEqual(
      { symbol: calls.subscribeBars[1]!.symbol, resolution: calls.subscribeBars[1]!.resolution },
      { symbol: "ETHUSD", resolution: "5" },
    );
    assert.equal(feed.symbol, "ETHUSD");
    assert.equal(candles.data.length, 30);
    for (const c of candles.data) assert.equal(c.time % 300, 0, `a ${c.time} bar is not on the 5-minute grid`);
    const eth = await rawBars(server.baseUrl, {
      symbol: "ETHUSD",
      resolution: "5",
      from_time: candles.data[0]!.time,
      to_time: candles.data[candles.data.length - 1]!.time,
    });
    assert.deepEqual(candles.data.slice(0, -1).map((c) => c.close), eth.bars.map((b) => b.close));

    const updatesAtSwitch = candles.updates.length;
    await waitFor("live ETHUSD updates", () => candles.updates.length >= updatesAtSwitch + 3);
    for (const bar of candles.updates.slice(updatesAtSwitch)) assert.equal(bar.time % 300, 0, "an update from the old subscription");
    assert.equal(volume.data.length, candles.data.length);
    feed.destroy();
  });
});

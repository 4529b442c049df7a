// Live bars through subscribeBars against a real server whose market clock
// runs a minute per second (--clock-speed 60), so a new one-minute bar
// starts every second.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createDatafeed, type TradingProDatafeed } from "../datafeed.js";
import type { Bar } from "../tradingview.js";
import {
  CLOCK_START,
  countingWebSocket,
  distinctTimes,
  finalStates,
  rawBars,
  resolveSymbol,
  startServer,
  waitFor,
  type ServerProcess,
} from "./helpers.js";

const MINUTE = 60_000;

function assertNonDecreasing(bars: readonly Bar[], what: string): void {
  for (let i = 1; i < bars.length; i++) {
    assert.ok(bars[i]!.time >= bars[i - 1]!.time, `${what}: bar ${i} at ${bars[i]!.time} is before ${bars[i - 1]!.time}`);
  }
}

function assertConsecutive(times: readonly number[], step: number, what: string): void {
  for (let i = 1; i < times.length; i++) {
    assert.equal(times[i]! - times[i - 1]!, step, `${what}: gap between ${times[i - 1]} and ${times[i]}`);
  }
}

describe("subscribeBars", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;
  const sockets = countingWebSocket();
  const errors: Error[] = [];

  before(async () => {
    server = await startServer([
      "--seed", "5",
      "--clock-start", String(CLOCK_START),
      "--clock-speed", "60",
      "--broadcast-interval-ms", "200",
    ]);
    datafeed = createDatafeed({ baseUrl: server.baseUrl, webSocket: sockets.factory, onError: (e) => errors.push(e) });
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("live one-minute bars come in order, without gaps, and closed ones equal REST", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const ticks: Bar[] = [];
    let resets = 0;
    datafeed.subscribeBars(btc, "1", (bar) => ticks.push(bar), "btc-1", () => resets++);
    await waitFor("5 distinct live BTCUSD minutes", () => distinctTimes(ticks).length >= 5);
    datafeed.unsubscribeBars("btc-1");

    assertNonDecreasing(ticks, "BTCUSD 1");
    const times = distinctTimes(ticks);
    assertConsecutive(times, MINUTE, "BTCUSD 1");
    assert.equal(resets, 0);

    // Every bar but the newest closed while we watched: its last state is what REST has.
    const closed = finalStates(ticks).slice(0, -1);
    const rest = await rawBars(server.baseUrl, {
      symbol: "BTCUSD",
      resolution: "1",
      from_time: closed[0]!.time / 1000,
      to_time: closed[closed.length - 1]!.time / 1000 + 60,
    });
    assert.deepEqual(closed, rest.bars);
    assert.equal(sockets.count(), 1);
  });

  test("subscriptions share one WebSocket; unsubscribeBars stops delivery", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const eth = await resolveSymbol(datafeed, "ETHUSD");
    const btcTicks: Bar[] = [];
    const ethTicks: Bar[] = [];
    datafeed.subscribeBars(btc, "1", (bar) => btcTicks.push(bar), "btc-2", () => {});
    datafeed.subscribeBars(eth, "5", (bar) => ethTicks.push(bar), "eth-5", () => {});
    await waitFor("BTCUSD and ETHUSD updates", () => btcTicks.length >= 3 && ethTicks.length >= 3);

    datafeed.unsubscribeBars("btc-2");
    const btcAtUnsubscribe = btcTicks.length;
    const ethAtUnsubscribe = ethTicks.length;
    // ETHUSD keeps updating every broadcast; BTCUSD gets nothing more.
    await waitFor("more ETHUSD updates", () => ethTicks.length >= ethAtUnsubscribe + 10);
    assert.equal(btcTicks.length, btcAtUnsubscribe, "a bar arrived after unsubscribeBars");

    assertNonDecreasing(ethTicks, "ETHUSD 5");
    for (const bar of ethTicks) assert.equal(bar.time % (5 * MINUTE), 0, `ETHUSD 5 bar at ${bar.time}`);
    assert.equal(sockets.count(), 1, "every subscription rides the one socket");
    assert.equal(datafeed.connectionState, "open");
    datafeed.unsubscribeBars("eth-5");
  });

  test("two listeners of one topic both get its bars", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const a: Bar[] = [];
    const b: Bar[] = [];
    datafeed.subscribeBars(btc, "1", (bar) => a.push(bar), "a", () => {});
    datafeed.subscribeBars(btc, "1", (bar) => b.push(bar), "b", () => {});
    await waitFor("updates for both listeners", () => a.length >= 3 && b.length >= 3);
    datafeed.unsubscribeBars("a");
    const at = b.length;
    await waitFor("updates for the remaining listener", () => b.length >= at + 3);
    datafeed.unsubscribeBars("b");
    assertNonDecreasing(b, "listener b");
  });

  test("a subscription the server refuses is reported through onError", async () => {
    const before = errors.length;
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    datafeed.subscribeBars({ ...btc, name: "NOPE", ticker: "NOPE" }, "1", () => {}, "nope", () => {});
    await waitFor("an error for NOPE", () => errors.slice(before).some((e) => /NOPE/.test(e.message)));
    datafeed.unsubscribeBars("nope");
  });
});

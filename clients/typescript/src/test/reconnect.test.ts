// Reconnection and gap filling against real servers: the server is stopped
// (SIGTERM: it closes WebSockets with 1001) while a subscriber follows
// one-minute bars, and started again on the same port with the same seed
// and clock speed. The subscriber must see every minute, in order, with the
// bars REST has for them.
//
// The market clock restarts at --clock-start when a server starts, so the
// restarted server is given the instant the first one's clock would show
// (same seed: the same price path), which is what a real feed does: time
// went on while the server was away.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createDatafeed, type TradingProDatafeed } from "../datafeed.js";
import type { ConnectionEvent } from "../live.js";
import type { Bar } from "../tradingview.js";
import {
  CLOCK_START,
  countingWebSocket,
  distinctTimes,
  finalStates,
  getBars,
  rawBars,
  resolveSymbol,
  sleep,
  startServer,
  waitFor,
  type ServerProcess,
} from "./helpers.js";

const MINUTE = 60_000;
const SPEED = 60;

/** A server whose market clock reads `clockStart` when it starts; `wallStart` is when that was. */
interface MarketServer {
  server: ServerProcess;
  clockStart: number;
  wallStart: number;
}

async function startMarket(clockStart: number, port?: number): Promise<MarketServer> {
  const wallStart = Date.now();
  const args = [
    "--seed", "9",
    "--clock-start", String(clockStart),
    "--clock-speed", String(SPEED),
    "--broadcast-interval-ms", "200",
    "--shutdown-grace", "1",
  ];
  const server = await startServer(args, port);
  return { server, clockStart, wallStart };
}

/** Where a market server's clock is now (unix seconds). */
function marketNow(market: MarketServer): number {
  return Math.floor(market.clockStart + ((Date.now() - market.wallStart) / 1000) * SPEED);
}

describe("reconnect", () => {
  let market: MarketServer;
  let datafeed: TradingProDatafeed;
  const sockets = countingWebSocket();
  const events: ConnectionEvent[] = [];
  const ticks: Bar[] = [];
  let resets = 0;
  let history: Bar[] = [];

  before(async () => {
    market = await startMarket(CLOCK_START);
    datafeed = createDatafeed({
      baseUrl: market.server.baseUrl,
      webSocket: sockets.factory,
      reconnect: { initialDelayMs: 200, maxDelayMs: 1000 },
      onError: () => {},
    });
    datafeed.onConnectionChange((event) => events.push(event));
  });

  after(async () => {
    datafeed?.destroy();
    await market?.server.stop();
  });

  test("after a server restart every minute is delivered once in order, as REST has it", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const now = await new Promise<number>((resolve) => datafeed.getServerTime(resolve));
    // The chart's first request: the newest bars; the subscription continues from its last one.
    const first = await getBars(datafeed, btc, "1", { from: now - 600, to: now + 60, countBack: 10, firstDataRequest: true });
    history = first.bars;
    assert.equal(history.length, 10);
    datafeed.subscribeBars(btc, "1", (bar) => ticks.push(bar), "btc", () => resets++);
    await waitFor("3 live minutes before the restart", () => distinctTimes(ticks).length >= 3);

    const port = market.server.port;
    await market.server.stop();
    await waitFor("the datafeed to see the shutdown (1001)", () =>
      events.some((e) => e.state === "reconnecting" && e.code === 1001),
    );
    const beforeRestart = ticks.length;
    const lastBeforeStop = ticks[ticks.length - 1]!.time;
    // The server is away for a few market minutes.
    await sleep(3000);
    assert.equal(ticks.length, beforeRestart, "bars arrived while the server was down");

    market = await startMarket(marketNow(market), port);
    const restartedAt = market.clockStart * 1000;
    await waitFor(
      "live minutes from the restarted server",
      () => ticks.some((bar) => bar.time >= restartedAt + 3 * MINUTE),
      60_000,
    );

    assert.equal(resets, 0, "onResetCacheNeededCallback was called for a short gap");
    const shutdown = events.findIndex((e) => e.state === "reconnecting" && e.code === 1001);
    assert.ok(
      events.slice(shutdown).some((e) => e.state === "open"),
      `no reconnect after the shutdown: ${JSON.stringify(events)}`,
    );
    assert.equal(datafeed.connectionState, "open");
    assert.ok(sockets.count() >= 2);

    // Never back in time, starting at (or after) the last bar getBars returned.
    const lastHistory = history[history.length - 1]!;
    assert.ok(ticks[0]!.time >= lastHistory.time);
    for (let i = 1; i < ticks.length; i++) {
      assert.ok(ticks[i]!.time >= ticks[i - 1]!.time, `tick ${i} at ${ticks[i]!.time} goes back from ${ticks[i - 1]!.time}`);
    }
    // No missing minute from the chart's history to now, across the restart.
    const times = distinctTimes([lastHistory, ...ticks]);
    for (let i = 1; i < times.length; i++) {
      assert.equal(times[i]! - times[i - 1]!, MINUTE, `minute missing between ${times[i - 1]} and ${times[i]}`);
    }
    // The minutes the server was away for can only have come from the REST gap fill.
    const missed = times.filter((t) => t > lastBeforeStop && t < restartedAt - MINUTE);
    assert.ok(missed.length >= 2, `only ${missed.length} minutes filled in between ${lastBeforeStop} and ${restartedAt}`);

    // What the subscriber ended up with for each closed minute is what REST says.
    const closed = finalStates(ticks).slice(0, -1);
    const rest = await rawBars(market.server.baseUrl, {
      symbol: "BTCUSD",
      resolution: "1",
      from_time: closed[0]!.time / 1000,
      to_time: closed[closed.length - 1]!.time / 1000 + 60,
    });
    assert.deepEqual(closed, rest.bars);
  });

  test("a gap longer than one REST page asks the chart to reset its cache", async () => {
    const port = market.server.port;
    await market.server.stop();
    const resetsBefore = resets;
    const lastBefore = ticks[ticks.length - 1]!;
    // Back 6000 market minutes later: more than the 5000 bars one request returns.
    market = await startMarket(marketNow(market) + 6000 * 60, port);
    await waitFor("onResetCacheNeededCallback", () => resets > resetsBefore, 60_000);
    await waitFor("live bars after the reset", () => ticks[ticks.length - 1]!.time > lastBefore.time + 6000 * MINUTE, 60_000);
    for (let i = 1; i < ticks.length; i++) {
      assert.ok(ticks[i]!.time >= ticks[i - 1]!.time, `tick ${i} goes back in time`);
    }
  });
});

// Live quotes (subscribeQuotes / unsubscribeQuotes) against real servers:
// on a frozen market clock (--clock-speed 0) the quotes must be exactly what
// POST /api/v1/datafeed/quotes answers; on a running one (a market minute
// per second, quotes published every 200 ms) they must keep coming until
// unsubscribed, over the same socket as the bars, and come back after a
// server restart.
//
// The clock starts on a Sunday (CLOCK_START), when stock and forex sessions
// are closed and their quotes stand still; BTCUSD trades around the clock,
// so the running-clock tests follow it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";

import { createDatafeed, type TradingProDatafeed } from "../datafeed.js";
import type { ConnectionEvent } from "../live.js";
import type { QuoteData } from "../tradingview.js";
import { CLOCK_START, countingWebSocket, resolveSymbol, sleep, startServer, waitFor, type ServerProcess } from "./helpers.js";

/** The reference: POST /api/v1/datafeed/quotes straight with fetch. */
async function postQuotes(baseUrl: string, symbols: string[]): Promise<QuoteData[]> {
  const response = await fetch(`${baseUrl}/api/v1/datafeed/quotes`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ symbols }),
  });
  assert.equal(response.status, 200, `POST /quotes: HTTP ${response.status}`);
  return (await response.json()) as QuoteData[];
}

/** Collects what a subscribeQuotes callback receives, and the latest quote per symbol. */
function recorder() {
  const calls: QuoteData[][] = [];
  const latest = new Map<string, QuoteData>();
  return {
    callback: (data: QuoteData[]) => {
      calls.push(data);
      for (const quote of data) latest.set(quote.n, quote);
    },
    calls,
    latest,
    /** Every quote received for `symbol`, in order. */
    of: (symbol: string) => calls.flat().filter((q) => q.n === symbol),
  };
}

function lastPrice(quote: QuoteData | undefined): number | undefined {
  return quote?.s === "ok" ? quote.v.lp : undefined;
}

describe("subscribeQuotes on a frozen clock", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;
  const errors: Error[] = [];

  before(async () => {
    server = await startServer(["--seed", "21", "--clock-start", String(CLOCK_START), "--clock-speed", "0"]);
    datafeed = createDatafeed({ baseUrl: server.baseUrl, onError: (e) => errors.push(e) });
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("the first quote of each symbol equals POST /quotes", async () => {
    const watch = recorder();
    datafeed.subscribeQuotes(["AAPL", "MSFT", "EURUSD"], ["BTCUSD"], watch.callback, "watchlist");
    await waitFor("a quote of each of the 4 symbols", () => watch.latest.size >= 4);
    const rest = await postQuotes(server.baseUrl, ["AAPL", "MSFT", "EURUSD", "BTCUSD"]);
    for (const expected of rest) {
      assert.equal(expected.s, "ok");
      assert.deepEqual(watch.latest.get(expected.n), expected, `quote of ${expected.n}`);
    }
    assert.equal(datafeed.connectionState, "open");

    // A second listener of symbols already followed gets their last quotes at once.
    const second = recorder();
    datafeed.subscribeQuotes(["NASDAQ:AAPL"], [], second.callback, "details");
    await waitFor("the second listener's AAPL quote", () => second.latest.has("AAPL"));
    assert.deepEqual(second.latest.get("AAPL"), rest.find((q) => q.n === "AAPL"));
    datafeed.unsubscribeQuotes("details");
    datafeed.unsubscribeQuotes("watchlist");
    assert.deepEqual(errors, []);
  });

  test("an unknown symbol comes as an error quote, the others as usual", async () => {
    const watch = recorder();
    const errorsBefore = errors.length;
    datafeed.subscribeQuotes(["AAPL", "NOPE"], [], watch.callback, "with-unknown");
    await waitFor("quotes of AAPL and NOPE", () => watch.latest.has("AAPL") && watch.latest.has("NOPE"));
    const [rest] = await postQuotes(server.baseUrl, ["AAPL"]);
    assert.deepEqual(watch.latest.get("AAPL"), rest);
    const unknown = watch.latest.get("NOPE")!;
    assert.equal(unknown.s, "error");
    assert.ok(unknown.s === "error" && /NOPE/.test(unknown.errmsg ?? ""), `errmsg: ${JSON.stringify(unknown)}`);
    assert.deepEqual(unknown.v, {});
    // The server's refusal also goes to onError.
    await waitFor("the refusal on onError", () => errors.slice(errorsBefore).some((e) => /NOPE/.test(e.message)));
    datafeed.unsubscribeQuotes("with-unknown");
  });
});

describe("subscribeQuotes on a running clock", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;
  const sockets = countingWebSocket();

  before(async () => {
    server = await startServer([
      "--seed", "22",
      "--clock-start", String(CLOCK_START),
      "--clock-speed", "60",
      "--broadcast-interval-ms", "200",
    ]);
    datafeed = createDatafeed({ baseUrl: server.baseUrl, webSocket: sockets.factory, onError: () => {} });
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("quotes keep changing, on the same socket as the bars, until unsubscribed", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    let barTicks = 0;
    datafeed.subscribeBars(btc, "1", () => barTicks++, "chart", () => {});
    const fast = recorder();
    const slow = recorder();
    datafeed.subscribeQuotes([], ["BTCUSD"], fast.callback, "ticket");
    datafeed.subscribeQuotes(["BTCUSD", "AAPL"], [], slow.callback, "watchlist");

    await waitFor("5 different BTCUSD last prices", () => new Set(fast.of("BTCUSD").map(lastPrice)).size >= 5);
    await waitFor("the second listener's BTCUSD quotes to change", () => new Set(slow.of("BTCUSD").map(lastPrice)).size >= 2);
    await waitFor("live bars", () => barTicks > 0);
    assert.equal(sockets.count(), 1, "bars and quotes did not share one socket");
    for (const quote of fast.of("BTCUSD")) {
      assert.equal(quote.s, "ok");
      assert.ok(quote.s === "ok" && quote.v.short_name === "BTCUSD" && typeof quote.v.lp === "number");
    }
    assert.ok(fast.of("AAPL").length === 0, "a listener got a symbol it did not ask for");

    // One listener leaves: the other one still gets BTCUSD.
    datafeed.unsubscribeQuotes("ticket");
    await sleep(300);
    const fastCount = fast.calls.length;
    const slowCount = slow.of("BTCUSD").length;
    await waitFor("BTCUSD quotes for the remaining listener", () => slow.of("BTCUSD").length >= slowCount + 2);
    assert.equal(fast.calls.length, fastCount, "quotes still came after unsubscribeQuotes");

    // The last one leaves: no more quotes.
    datafeed.unsubscribeQuotes("watchlist");
    await sleep(300);
    const stoppedAt = slow.calls.length;
    const ticksAt = barTicks;
    await sleep(2500);
    assert.equal(slow.calls.length, stoppedAt, "quotes still came after the last unsubscribeQuotes");
    assert.ok(barTicks > ticksAt, "the bars stopped with the quotes");
    datafeed.unsubscribeBars("chart");
  });
});

describe("subscribeQuotes across a server restart", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;
  const events: ConnectionEvent[] = [];

  before(async () => {
    server = await startServer([
      "--seed", "23",
      "--clock-start", String(CLOCK_START),
      "--clock-speed", "60",
      "--broadcast-interval-ms", "200",
      "--shutdown-grace", "1",
    ]);
    datafeed = createDatafeed({
      baseUrl: server.baseUrl,
      reconnect: { initialDelayMs: 200, maxDelayMs: 1000 },
      onError: () => {},
    });
    datafeed.onConnectionChange((event) => events.push(event));
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("every symbol is subscribed again after the reconnect", async () => {
    const watch = recorder();
    datafeed.subscribeQuotes(["AAPL"], ["BTCUSD"], watch.callback, "watchlist");
    await waitFor("quotes of both symbols", () => watch.latest.has("AAPL") && watch.latest.has("BTCUSD"));

    const port = server.port;
    await server.stop();
    await waitFor("the datafeed to see the shutdown (1001)", () =>
      events.some((e) => e.state === "reconnecting" && e.code === 1001),
    );
    await sleep(1000);
    const beforeRestart = watch.calls.length;

    // Back a day later on a frozen clock: what arrives now must be this server's quotes.
    const restartAt = CLOCK_START + 86_400;
    server = await startServer(["--seed", "23", "--clock-start", String(restartAt), "--clock-speed", "0"], port);
    const rest = await postQuotes(server.baseUrl, ["AAPL", "BTCUSD"]);
    await waitFor(
      "the restarted server's quotes",
      () => rest.every((q) => watch.calls.slice(beforeRestart).flat().some((got) => isDeepStrictEqual(got, q))),
      60_000,
    );
    for (const expected of rest) assert.deepEqual(watch.latest.get(expected.n), expected);
    const shutdown = events.findIndex((e) => e.state === "reconnecting" && e.code === 1001);
    assert.ok(events.slice(shutdown).some((e) => e.state === "open"), "no reconnect after the shutdown");
  });
});

// The datafeed's REST side against a real server on a frozen market clock
// (--clock-speed 0), so the datafeed's answers can be compared exactly with
// the raw REST responses.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createDatafeed, type TradingProDatafeed } from "../datafeed.js";
import type { DatafeedConfiguration, QuoteData, SearchSymbolResultItem } from "../tradingview.js";
import { CLOCK_START, getBars, rawBars, resolveSymbol, restGet, startServer, within, type ServerProcess } from "./helpers.js";

const MINUTE = 60_000;

describe("datafeed over REST", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;

  before(async () => {
    server = await startServer(["--seed", "11", "--clock-start", String(CLOCK_START), "--clock-speed", "0"]);
    datafeed = createDatafeed({ baseUrl: server.baseUrl });
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("onReady answers asynchronously with the server's configuration", async () => {
    const raw = await restGet<Required<DatafeedConfiguration>>(server.baseUrl, "/api/v1/datafeed/config");
    let returned = false;
    const config = await within(
      "onReady",
      new Promise<DatafeedConfiguration>((resolve) => {
        datafeed.onReady((c) => {
          assert.ok(returned, "onReady called its callback synchronously");
          resolve(c);
        });
        returned = true;
      }),
    );
    assert.deepEqual(config, {
      supported_resolutions: raw.supported_resolutions,
      supports_marks: raw.supports_marks,
      supports_timescale_marks: raw.supports_timescale_marks,
      supports_time: raw.supports_time,
      exchanges: raw.exchanges,
      symbols_types: raw.symbols_types,
    });
    assert.ok(config.supported_resolutions?.includes("1"));
  });

  test("searchSymbols maps the REST results, with the exchange filter", async () => {
    const search = (input: string, exchange: string, type: string) =>
      within(
        `searchSymbols ${input}`,
        new Promise<SearchSymbolResultItem[]>((resolve) => datafeed.searchSymbols(input, exchange, type, resolve)),
      );
    const found = await search("AA", "", "");
    const raw = await restGet<SearchSymbolResultItem[]>(server.baseUrl, "/api/v1/datafeed/search?user_input=AA");
    assert.deepEqual(found, raw);
    assert.ok(found.some((s) => s.ticker === "AAPL" && s.full_name === "NASDAQ:AAPL"));

    const crypto = await search("", "CRYPTO", "");
    assert.ok(crypto.length > 0);
    assert.ok(crypto.every((s) => s.exchange === "CRYPTO"), JSON.stringify(crypto));
    assert.ok(crypto.some((s) => s.ticker === "BTCUSD"));
  });

  test("resolveSymbol maps SymbolInfo to LibrarySymbolInfo; an unknown symbol is an error", async () => {
    const info = await resolveSymbol(datafeed, "nasdaq:aapl");
    const raw = await restGet<Record<string, unknown>>(server.baseUrl, "/api/v1/datafeed/resolve/AAPL");
    for (const field of [
      "name",
      "ticker",
      "description",
      "type",
      "session",
      "timezone",
      "exchange",
      "listed_exchange",
      "format",
      "pricescale",
      "minmov",
      "has_intraday",
      "has_daily",
      "has_weekly_and_monthly",
      "supported_resolutions",
      "intraday_multipliers",
      "volume_precision",
      "data_status",
      "currency_code",
    ] as const) {
      assert.deepEqual(info[field], raw[field], `LibrarySymbolInfo.${field}`);
    }
    assert.equal(info.full_name, "NASDAQ:AAPL");

    const reason = await within(
      "resolveSymbol NOPE",
      new Promise<string>((resolve, reject) =>
        datafeed.resolveSymbol("NOPE", () => reject(new Error("NOPE resolved")), resolve),
      ),
    );
    assert.match(reason, /unknown symbol/i);
  });

  test("getBars returns the raw REST bars and pages back with countBack", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const to = CLOCK_START;
    const first = await getBars(datafeed, btc, "1", { from: to - 3600, to, countBack: 100, firstDataRequest: true });
    const raw1 = await rawBars(server.baseUrl, { symbol: "BTCUSD", resolution: "1", from_time: to - 3600, to_time: to, count_back: 100 });
    assert.deepEqual(first.bars, raw1.bars);
    assert.equal(first.bars.length, 100, "countBack takes precedence over from");
    assert.equal(first.meta?.noData, false);

    const oldest = first.bars[0]!;
    const pageTo = oldest.time / 1000;
    const second = await getBars(datafeed, btc, "1", { from: pageTo - 60, to: pageTo, countBack: 100, firstDataRequest: false });
    assert.equal(second.bars.length, 100);
    assert.equal(second.bars[second.bars.length - 1]!.time, oldest.time - MINUTE, "the page ends right before the previous one");
    const both = await rawBars(server.baseUrl, { symbol: "BTCUSD", resolution: "1", from_time: to - 60, to_time: to, count_back: 200 });
    assert.deepEqual([...second.bars, ...first.bars], both.bars);

    const aapl = await resolveSymbol(datafeed, "AAPL");
    const daily = await getBars(datafeed, aapl, "1D", {
      from: to - 30 * 86_400,
      to,
      countBack: 1,
      firstDataRequest: false,
    });
    const rawDaily = await rawBars(server.baseUrl, { symbol: "AAPL", resolution: "D", from_time: to - 30 * 86_400, to_time: to, count_back: 1 });
    assert.deepEqual(daily.bars, rawDaily.bars, "1D is D");
  });

  test("getBars reports noData before history and nextTime across a gap", async () => {
    const aapl = await resolveSymbol(datafeed, "AAPL");
    const before = await getBars(datafeed, aapl, "D", { from: 0, to: 100_000, countBack: 0, firstDataRequest: false });
    assert.deepEqual(before.bars, []);
    assert.deepEqual(before.meta, { noData: true });

    // Saturday 2024-11-23 (UTC): no AAPL minutes, the newest older one is Friday's last.
    const saturday = 1732320000;
    const weekend = await getBars(datafeed, aapl, "1", { from: saturday, to: saturday + 86_400, countBack: 0, firstDataRequest: false });
    const raw = await rawBars(server.baseUrl, { symbol: "AAPL", resolution: "1", from_time: saturday, to_time: saturday + 86_400 });
    assert.deepEqual(weekend.bars, []);
    assert.ok(raw.next_time !== undefined && raw.next_time < saturday * 1000);
    assert.deepEqual(weekend.meta, { noData: true, nextTime: raw.next_time });
  });

  test("getQuotes returns the POST /quotes entries, errors included", async () => {
    const symbols = ["AAPL", "BTCUSD", "NOPE"];
    const quotes = await within(
      "getQuotes",
      new Promise<QuoteData[]>((resolve, reject) => datafeed.getQuotes(symbols, resolve, (reason) => reject(new Error(reason)))),
    );
    const response = await fetch(`${server.baseUrl}/api/v1/datafeed/quotes`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ symbols }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(quotes, await response.json());
    assert.deepEqual(
      quotes.map((q) => [q.n, q.s]),
      [
        ["AAPL", "ok"],
        ["BTCUSD", "ok"],
        ["NOPE", "error"],
      ],
    );
    const ok = quotes[0]!;
    assert.ok(ok.s === "ok" && typeof ok.v.lp === "number" && ok.v.lp > 0);
    const empty = await within("getQuotes []", new Promise<QuoteData[]>((resolve, reject) => datafeed.getQuotes([], resolve, reject)));
    assert.deepEqual(empty, []);
  });

  test("getServerTime is the server's (frozen) clock", async () => {
    const time = await within("getServerTime", new Promise<number>((resolve) => datafeed.getServerTime(resolve)));
    assert.equal(time, CLOCK_START);
  });
});

// The datafeed against a server with authentication on: the token goes
// with every REST call and the WebSocket, and a token function keeps a
// live connection past its tokens' expiry with auth.refresh.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { createDatafeed, type TradingProDatafeed } from "../datafeed.js";
import type { ConnectionEvent } from "../live.js";
import type { Bar } from "../tradingview.js";
import { CLOCK_START, distinctTimes, getBars, resolveSymbol, startServer, waitFor, type ServerProcess } from "./helpers.js";

const SECRET = "datafeed-test-secret-0123456789";

const b64 = (data: string | Buffer) => Buffer.from(data).toString("base64url");

/** An HS256 token for `sub`, valid for `seconds`. */
function mint(sub: string, seconds: number): string {
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + seconds, exchanges: ["*"] }));
  const signature = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

describe("authentication", () => {
  let server: ServerProcess;
  let datafeed: TradingProDatafeed;
  let minted = 0;
  const events: ConnectionEvent[] = [];
  const errors: Error[] = [];

  before(async () => {
    server = await startServer([
      "--clock-start", String(CLOCK_START),
      "--clock-speed", "60",
      "--broadcast-interval-ms", "200",
      "--auth-jwt-secret", SECRET,
      "--auth-leeway", "0",
    ]);
    // Tokens of 6 s: the connection outlives several of them only if
    // the package refreshes it.
    datafeed = createDatafeed({
      baseUrl: server.baseUrl,
      token: () => {
        minted++;
        return mint("datafeed-user", 6);
      },
      onError: (e) => errors.push(e),
    });
    datafeed.onConnectionChange((e) => events.push(e));
  });

  after(async () => {
    datafeed?.destroy();
    await server?.stop();
  });

  test("REST calls carry the token; without one the server says 401", async () => {
    const bare = await fetch(`${server.baseUrl}/api/v1/datafeed/config`);
    assert.equal(bare.status, 401);
    assert.match(bare.headers.get("www-authenticate") ?? "", /^Bearer/);
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const to = CLOCK_START;
    const { bars } = await getBars(datafeed, btc, "1", { from: to - 3600, to, countBack: 10, firstDataRequest: true });
    assert.equal(bars.length, 10);
  });

  test("a live subscription outlives its tokens through auth.refresh, without a 4001", async () => {
    const btc = await resolveSymbol(datafeed, "BTCUSD");
    const ticks: Bar[] = [];
    const startedAt = Date.now();
    datafeed.subscribeBars(btc, "1", (bar) => ticks.push(bar), "auth-btc", () => {});
    // 15 s of wall time is 15 one-minute bars and two and a half token lives.
    await waitFor("15 s of live bars", () => Date.now() - startedAt > 15_000 && distinctTimes(ticks).length >= 12, 60_000);
    datafeed.unsubscribeBars("auth-btc");
    assert.ok(minted >= 3, `tokens asked for: ${minted}`);
    const closes = events.filter((e) => e.state === "reconnecting");
    assert.deepEqual(closes, [], "the connection never dropped");
    assert.deepEqual(errors, []);
    const times = distinctTimes(ticks);
    for (let i = 1; i < times.length; i++) assert.equal(times[i]! - times[i - 1]!, 60_000, "no minute missing");
  });
});

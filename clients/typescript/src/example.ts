// Typed example client for trading-pro: REST through openapi-fetch over the
// types generated from specs/openapi.yaml, WebSocket through `ws` with the
// frame types generated from specs/asyncapi.yaml.
//
//   TRADING_URL=http://127.0.0.1:8000 npm run example
//
// Exits 0 when every step answered as the contract says, 1 (with a message
// naming the failed step) otherwise, or after 20 s in all.

import createClient from "openapi-fetch";
import WebSocket from "ws";

import type { BarsSubscribeFrame, ClientMessage, ServerMessage } from "./generated/asyncapi.js";
import type { components, paths } from "./generated/openapi.js";

type Bar = components["schemas"]["Bar"];

const OVERALL_TIMEOUT_MS = 20_000;
const DAY_SECONDS = 24 * 60 * 60;

class ExampleError extends Error {}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new ExampleError(message);
}

/** Every `type` the server may send; the compiler proves the list complete. */
const SERVER_MESSAGE_TYPES = [
  "bars.subscribe.response",
  "bars.unsubscribe.response",
  "bars.update",
  "auth.refresh.response",
  "quotes.subscribe.response",
  "quotes.unsubscribe.response",
  "quotes.update",
  "orders.subscribe.response",
  "orders.unsubscribe.response",
  "orders.update",
  "positions.subscribe.response",
  "positions.unsubscribe.response",
  "positions.update",
  "executions.subscribe.response",
  "executions.unsubscribe.response",
  "executions.update",
  "equity.subscribe.response",
  "equity.unsubscribe.response",
  "equity.update",
  "notifications.subscribe.response",
  "notifications.unsubscribe.response",
  "notifications.update",
] as const satisfies readonly ServerMessage["type"][];
type MissingServerMessageType = Exclude<ServerMessage["type"], (typeof SERVER_MESSAGE_TYPES)[number]>;
const serverMessageTypesComplete: [MissingServerMessageType] extends [never] ? true : never = true;
void serverMessageTypesComplete;

/** An error's message with its cause's (fetch reports "fetch failed" with the reason as cause). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
  return `${err.message}${cause}`;
}

/** The success body of an openapi-fetch call, or a failure naming the operation. */
async function ok<T, E>(
  operation: string,
  call: Promise<
    | { data: T; error?: never; response: Response }
    | { data?: never; error: E; response: Response }
  >,
): Promise<T> {
  let result: Awaited<typeof call>;
  try {
    result = await call;
  } catch (err) {
    throw new ExampleError(`${operation}: request failed: ${describeError(err)}`);
  }
  const { data, error, response } = result;
  if (error !== undefined || data === undefined) {
    throw new ExampleError(
      `${operation}: HTTP ${response.status} ${response.statusText}: ${JSON.stringify(error)}`,
    );
  }
  check(response.ok, `${operation}: HTTP ${response.status} without an error body`);
  check(response.headers.get("API-Version"), `${operation}: response has no API-Version header`);
  return data;
}

function checkBar(where: string, bar: Bar): void {
  const { open, high, low, close, volume } = bar;
  check(
    [open, high, low, close, volume].every(Number.isFinite),
    `${where}: bar at ${bar.time} has a non-numeric value`,
  );
  check(
    low <= Math.min(open, close) && high >= Math.max(open, close) && low > 0,
    `${where}: bar at ${bar.time} is not a valid OHLC bar: ${JSON.stringify(bar)}`,
  );
  check(volume >= 0, `${where}: bar at ${bar.time} has a negative volume`);
}

function websocketUrl(baseUrl: string): string {
  const url = new URL("/api/v1/ws", baseUrl);
  check(url.protocol === "http:" || url.protocol === "https:", `TRADING_URL must be http(s): ${baseUrl}`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

function parseServerMessage(data: WebSocket.RawData, isBinary: boolean): ServerMessage {
  check(!isBinary, "WebSocket: the server sent a binary frame");
  const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : data.toString();
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    throw new ExampleError(`WebSocket: the server sent a frame that is not JSON: ${text}`);
  }
  check(
    typeof frame === "object" &&
      frame !== null &&
      "type" in frame &&
      (SERVER_MESSAGE_TYPES as readonly unknown[]).includes(frame.type) &&
      "payload" in frame &&
      typeof frame.payload === "object" &&
      frame.payload !== null,
    `WebSocket: unexpected frame: ${text}`,
  );
  return frame as ServerMessage;
}

function send(ws: WebSocket, message: ClientMessage): void {
  ws.send(JSON.stringify(message));
}

/**
 * Subscribes to `symbol` at `resolution`, waits for the reply to that request
 * (status ok) and then for one update of the topic, and closes the socket.
 */
async function subscribeAndWaitForUpdate(url: string, symbol: string, resolution: string): Promise<void> {
  const topic = `bars:${symbol}:${resolution}`;
  const request: BarsSubscribeFrame = {
    type: "bars.subscribe",
    id: `example-${process.pid}`,
    payload: { symbol, resolution },
  };
  const ws = new WebSocket(url);
  try {
    await new Promise<void>((resolve, reject) => {
      let subscribed = false;
      const fail = (message: string) => reject(new ExampleError(message));
      ws.on("open", () => {
        console.log(`ws: connected to ${url}, sending ${JSON.stringify(request)}`);
        send(ws, request);
      });
      ws.on("error", (err) => fail(`WebSocket ${url}: ${err.message}`));
      ws.on("close", (code, reason) =>
        fail(`WebSocket closed before an update of ${topic} arrived: ${code} ${reason.toString()}`),
      );
      ws.on("message", (data, isBinary) => {
        let message: ServerMessage;
        try {
          message = parseServerMessage(data, isBinary);
        } catch (err) {
          reject(err);
          return;
        }
        switch (message.type) {
          case "bars.subscribe.response": {
            if (message.id !== request.id) return;
            const reply = message.payload;
            if (reply.status !== "ok") {
              fail(`bars.subscribe ${topic}: status ${reply.status}: ${reply.message}`);
              return;
            }
            if (reply.topic !== topic) {
              fail(`bars.subscribe: reply names topic ${JSON.stringify(reply.topic)}, expected ${topic}`);
              return;
            }
            console.log(`ws: ${message.type} id=${message.id}: ${reply.status}, ${reply.message}`);
            subscribed = true;
            return;
          }
          case "bars.update": {
            const bar = message.payload;
            if (bar.topic !== topic) return;
            if (!subscribed) {
              fail(`bars.update for ${topic} arrived before the subscribe reply`);
              return;
            }
            if (bar.symbol !== symbol || bar.resolution !== resolution) {
              fail(`bars.update: ${JSON.stringify(bar)} does not match topic ${topic}`);
              return;
            }
            try {
              checkBar("bars.update", bar);
            } catch (err) {
              reject(err);
              return;
            }
            console.log(
              `ws: bars.update ${bar.topic} time=${new Date(bar.time).toISOString()} ` +
                `o=${bar.open} h=${bar.high} l=${bar.low} c=${bar.close} v=${bar.volume}`,
            );
            resolve();
            return;
          }
          case "bars.unsubscribe.response":
          // Only sent to a client that refreshes its token or follows
          // quotes (this one does neither).
          case "auth.refresh.response":
          case "quotes.subscribe.response":
          case "quotes.unsubscribe.response":
          case "quotes.update":
          // The account's private channels (this example follows none).
          case "orders.subscribe.response":
          case "orders.unsubscribe.response":
          case "orders.update":
          case "positions.subscribe.response":
          case "positions.unsubscribe.response":
          case "positions.update":
          case "executions.subscribe.response":
          case "executions.unsubscribe.response":
          case "executions.update":
          case "equity.subscribe.response":
          case "equity.unsubscribe.response":
          case "equity.update":
          case "notifications.subscribe.response":
          case "notifications.unsubscribe.response":
          case "notifications.update":
            return;
          default: {
            const unexpected: never = message;
            fail(`WebSocket: unhandled frame ${JSON.stringify(unexpected)}`);
          }
        }
      });
    });
  } finally {
    ws.removeAllListeners();
    ws.on("error", () => {});
    if (ws.readyState === WebSocket.OPEN) {
      await new Promise<void>((resolve) => {
        ws.once("close", () => resolve());
        ws.close(1000, "example done");
      });
    } else {
      ws.terminate();
    }
  }
}

async function main(): Promise<void> {
  const baseUrl = process.env.TRADING_URL?.replace(/\/+$/, "");
  check(baseUrl, "TRADING_URL is not set (e.g. TRADING_URL=http://127.0.0.1:8000)");
  const client = createClient<paths>({ baseUrl });

  const config = await ok("getConfig", client.GET("/api/v1/datafeed/config"));
  check(config.supported_resolutions.length > 0, "getConfig: no supported resolutions");
  check(config.supported_resolutions.includes("D"), "getConfig: resolution D is not supported");
  check(config.supported_resolutions.includes("1"), "getConfig: resolution 1 is not supported");
  check(config.exchanges.length > 0, "getConfig: no exchanges");
  check(config.symbols_types.length > 0, "getConfig: no symbol types");
  console.log(
    `getConfig: resolutions ${config.supported_resolutions.join(",")}, ` +
      `${config.exchanges.length} exchanges, ${config.symbols_types.length} symbol types`,
  );

  const userInput = "AA";
  const found = await ok(
    "searchSymbols",
    client.GET("/api/v1/datafeed/search", { params: { query: { user_input: userInput } } }),
  );
  check(found.length > 0, `searchSymbols "${userInput}": no results`);
  for (const s of found) {
    const haystack = `${s.symbol} ${s.ticker} ${s.description}`.toLowerCase();
    check(
      haystack.includes(userInput.toLowerCase()),
      `searchSymbols "${userInput}": ${s.full_name} does not match the input`,
    );
  }
  check(found.some((s) => s.symbol === "AAPL"), `searchSymbols "${userInput}": AAPL is not among the results`);
  console.log(`searchSymbols "${userInput}": ${found.map((s) => s.full_name).join(", ")}`);

  const info = await ok(
    "resolveSymbol",
    client.GET("/api/v1/datafeed/resolve/{symbol}", { params: { path: { symbol: "AAPL" } } }),
  );
  check(info.ticker === "AAPL", `resolveSymbol AAPL: ticker is ${info.ticker}`);
  check(info.pricescale > 0 && info.minmov > 0, "resolveSymbol AAPL: invalid price tick");
  check(info.supported_resolutions.includes("D"), "resolveSymbol AAPL: resolution D is not supported");
  console.log(`resolveSymbol AAPL: ${info.description} on ${info.exchange}, session ${info.session} ${info.timezone}`);

  const now = await ok("getServerTime", client.GET("/api/v1/datafeed/time"));
  check(Number.isInteger(now) && now > 1_500_000_000, `getServerTime: implausible time ${now}`);
  console.log(`getServerTime: ${now} (${new Date(now * 1000).toISOString()})`);

  const from = now - 30 * DAY_SECONDS;
  const bars = await ok(
    "getBars",
    client.GET("/api/v1/datafeed/bars", {
      params: { query: { symbol: "AAPL", resolution: "D", from_time: from, to_time: now } },
    }),
  );
  check(!bars.no_data, "getBars AAPL D: no_data is true for the last 30 days");
  check(bars.bars.length > 0, "getBars AAPL D: no bars in the last 30 days");
  check(bars.bars.length <= 31, `getBars AAPL D: ${bars.bars.length} daily bars in 30 days`);
  let previous = -Infinity;
  for (const bar of bars.bars) {
    check(bar.time > previous, `getBars AAPL D: bar times are not strictly ascending at ${bar.time}`);
    check(
      bar.time >= from * 1000 && bar.time < now * 1000,
      `getBars AAPL D: bar at ${bar.time} ms is outside [${from}, ${now}) s`,
    );
    checkBar("getBars AAPL D", bar);
    previous = bar.time;
  }
  const last = bars.bars[bars.bars.length - 1];
  check(last, "getBars AAPL D: no last bar");
  console.log(
    `getBars AAPL D: ${bars.bars.length} bars, last ${new Date(last.time).toISOString().slice(0, 10)} close ${last.close}`,
  );

  const symbols = ["AAPL", "BTCUSD"];
  const quotes = await ok("getQuotes", client.POST("/api/v1/datafeed/quotes", { body: { symbols } }));
  check(quotes.length === symbols.length, `getQuotes: ${quotes.length} entries for ${symbols.length} symbols`);
  quotes.forEach((quote, i) => {
    check(quote.n === symbols[i], `getQuotes: entry ${i} is ${quote.n}, expected ${symbols[i]}`);
    check(quote.s === "ok", `getQuotes ${quote.n}: status ${quote.s}: ${quote.errmsg ?? ""}`);
    check(
      typeof quote.v.lp === "number" && quote.v.lp > 0,
      `getQuotes ${quote.n}: no last price in ${JSON.stringify(quote.v)}`,
    );
  });
  console.log(`getQuotes: ${quotes.map((q) => `${q.n} ${q.v.lp}`).join(", ")}`);

  await subscribeAndWaitForUpdate(websocketUrl(baseUrl), "BTCUSD", "1");
}

const timer = setTimeout(() => {
  console.error(`example failed: no result within ${OVERALL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

try {
  await main();
  clearTimeout(timer);
  console.log("example: OK");
  process.exit(0);
} catch (err) {
  const message = err instanceof ExampleError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  console.error(`example failed: ${message}`);
  process.exit(1);
}

// Test helpers: a real trading-server process on a free (or given) port,
// bounded waits that fail with a message, and promise forms of the
// datafeed's callbacks.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import type { Bar, HistoryMetadata, IBasicDataFeed, LibrarySymbolInfo, PeriodParams } from "../tradingview.js";
import { defaultWebSocketFactory, type WebSocketFactory } from "../live.js";

/** clients/typescript (this file is dist/test/helpers.js once compiled). */
const PACKAGE_DIR = fileURLToPath(new URL("../../", import.meta.url));

export const SERVER_BIN = process.env.TRADING_SERVER_BIN
  ? path.resolve(process.env.TRADING_SERVER_BIN)
  : path.resolve(PACKAGE_DIR, "../../target/debug/trading-server");

/** 2024-11-24T15:00:00Z: a fixed market clock start, so runs are alike. */
export const CLOCK_START = 1732460400;

export interface ServerProcess {
  readonly baseUrl: string;
  readonly port: number;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** Sends SIGTERM (the server closes WebSockets with 1001) and waits for the exit (SIGKILL after 20 s). */
  stop(): Promise<void>;
  /** The end of the server's log. */
  log(): string;
}

const running = new Set<ReturnType<typeof spawn>>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function spawnOnce(args: string[], port: number, timeoutMs: number): Promise<ServerProcess> {
  // No drain delay: stop() is a test's shutdown, with no load balancer to tell.
  const argv = ["--bind", `127.0.0.1:${port}`, "--log-format", "json", "--rate-limit-rps", "0", "--drain-delay", "0", ...args];
  const child = spawn(SERVER_BIN, argv, { stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  let log = "";
  const exited = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => {
      running.delete(child);
      resolve(code ?? signal ?? "unknown");
    });
  });
  return new Promise<ServerProcess>((resolve, reject) => {
    let settled = false;
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${message}\n${path.basename(SERVER_BIN)} ${argv.join(" ")}\n--- log ---\n${log}`));
    };
    const timer = setTimeout(() => fail(`trading-server did not report its address within ${timeoutMs / 1000} s`), timeoutMs);
    child.on("error", (err) => fail(`could not start trading-server: ${err.message}`));
    void exited.then((code) => fail(`trading-server exited (${code}) before it listened`));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      log = (log + chunk).slice(-64_000);
      if (settled) return;
      const match = /"address":"([^"]+)"/.exec(log);
      if (!match?.[1]) return;
      settled = true;
      clearTimeout(timer);
      const address = match[1];
      const listening = Number(address.slice(address.lastIndexOf(":") + 1));
      resolve({
        baseUrl: `http://${address}`,
        port: listening,
        exited,
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
          await exited;
          clearTimeout(killer);
        },
        log: () => log,
      });
    });
  });
}

/**
 * Starts the server with `args` (after --bind, --log-format json and
 * --rate-limit-rps 0). With `port`, binds that port, retrying for a while
 * if it is not free yet (a server that just stopped).
 */
export async function startServer(args: string[], port?: number): Promise<ServerProcess> {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`trading-server not found at ${SERVER_BIN}: build it (cargo build) or set TRADING_SERVER_BIN`);
  }
  if (port === undefined) return spawnOnce(args, 0, 30_000);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await spawnOnce(args, port, 30_000);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

/** Polls `condition` every 50 ms; fails with `what` when it is not true within `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}

/** Fails with `what` when `promise` does not settle within `timeoutMs`. */
export function within<T>(what: string, promise: Promise<T>, timeoutMs = 30_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

export function resolveSymbol(datafeed: IBasicDataFeed, symbol: string): Promise<LibrarySymbolInfo> {
  return within(
    `resolveSymbol ${symbol}`,
    new Promise((resolve, reject) => datafeed.resolveSymbol(symbol, resolve, (reason) => reject(new Error(reason)))),
  );
}

export function getBars(
  datafeed: IBasicDataFeed,
  symbolInfo: LibrarySymbolInfo,
  resolution: string,
  periodParams: PeriodParams,
): Promise<{ bars: Bar[]; meta: HistoryMetadata | undefined }> {
  return within(
    `getBars ${symbolInfo.name} ${resolution}`,
    new Promise((resolve, reject) =>
      datafeed.getBars(
        symbolInfo,
        resolution,
        periodParams,
        (bars, meta) => resolve({ bars, meta }),
        (reason) => reject(new Error(reason)),
      ),
    ),
  );
}

/** A GET of the server's REST API, straight with fetch (the reference the datafeed is compared with). */
export async function restGet<T>(baseUrl: string, pathAndQuery: string): Promise<T> {
  const response = await fetch(`${baseUrl}${pathAndQuery}`);
  if (!response.ok) throw new Error(`GET ${pathAndQuery}: HTTP ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

export interface RawBar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

export interface RawBars {
  bars: RawBar[];
  no_data: boolean;
  next_time?: number;
}

export function rawBars(baseUrl: string, query: Record<string, string | number>): Promise<RawBars> {
  const params = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
  return restGet<RawBars>(baseUrl, `/api/v1/datafeed/bars?${params}`);
}

/** A WebSocket factory that counts the sockets it opens. */
export function countingWebSocket(): { factory: WebSocketFactory; count: () => number } {
  let count = 0;
  return {
    factory: (url) => {
      count++;
      return defaultWebSocketFactory(url);
    },
    count: () => count,
  };
}

/** The distinct times of a sequence of bars, in order. */
export function distinctTimes(bars: readonly { time: number }[]): number[] {
  const times: number[] = [];
  for (const bar of bars) if (times[times.length - 1] !== bar.time) times.push(bar.time);
  return times;
}

/** The last state of each bar time, in order. */
export function finalStates<B extends { time: number }>(bars: readonly B[]): B[] {
  const states: B[] = [];
  for (const bar of bars) {
    if (states.length > 0 && states[states.length - 1]!.time === bar.time) states[states.length - 1] = bar;
    else states.push(bar);
  }
  return states;
}

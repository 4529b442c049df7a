// Helpers of the browser tests: a real trading-server process serving the
// built pages (web/dist) on a free (or given) port, headless Chromium
// through playwright-core, bounded waits that fail with a message, and the
// REST calls the pages are compared with.

import { existsSync } from "node:fs";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

// The datafeed package's own test helper, as tsc compiled it: one copy of
// the process handling (and of the fixed clock start, 2024-11-24T15:00:00Z,
// a Sunday: stock and forex sessions are closed, BTCUSD trades) for both
// test suites.
import { CLOCK_START, sleep, startServer as startPackageServer } from "../../clients/typescript/dist/test/helpers.js";

export { CLOCK_START, sleep };

/** web/ */
export const WEB_DIR = fileURLToPath(new URL("../", import.meta.url));
const REPO_DIR = path.resolve(WEB_DIR, "..");
export const DIST_DIR = path.join(WEB_DIR, "dist");
export const ARTIFACTS_DIR = path.join(WEB_DIR, "test-artifacts");

export const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

export const MINUTE = 60_000;

/**
 * Starts trading-server serving web/dist, with `args` after --bind,
 * --log-format json, --rate-limit-rps 0 and --web-dir. With `port`, binds
 * that port, retrying for a while when it is not free yet. The process
 * handling is the datafeed package's test helper (compiled into its dist/
 * by tsc before the tests run), so both test suites start servers alike.
 */
export async function startServer(args, port) {
  if (!existsSync(path.join(DIST_DIR, "chart/index.html"))) {
    throw new Error(`${DIST_DIR} has no chart page: run scripts/build-web (or npm run build in web/)`);
  }
  return startPackageServer(["--web-dir", DIST_DIR, ...args], port);
}

/** Headless Chromium (Debian's package; playwright cannot download browsers here). */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM_BIN)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_BIN}: install Debian's chromium package ` +
        "(sudo apt-get install -y chromium), or set CHROMIUM_BIN to a Chromium or Chrome binary",
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * A new page that fails the test on the page's uncaught errors: they are
 * collected in `page.errors` (console warnings in `page.warnings`).
 */
export async function newPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.errors = [];
  page.warnings = [];
  // Every URL the page asks for (see foreignRequests).
  page.requested = [];
  page.on("request", (request) => page.requested.push(request.url()));
  page.on("pageerror", (err) => page.errors.push(err.message));
  // Chromium's console message for a failed request does not name it: record the URL.
  page.on("response", (response) => {
    if (response.status() >= 400) page.errors.push(`HTTP ${response.status()} ${response.url()}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) page.errors.push(message.text());
    else if (message.type() === "warning") page.warnings.push(message.text());
  });
  return page;
}

/** The requests `page` made to any other origin than `baseUrl`'s (data: and blob: URLs stay in the page). */
export function foreignRequests(page, baseUrl) {
  const origin = new URL(baseUrl).origin;
  return page.requested.filter((url) => {
    const u = new URL(url);
    return u.protocol !== "data:" && u.protocol !== "blob:" && u.origin !== origin;
  });
}

/** Polls `fn` (run in the page, with `arg`) until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitInPage(page, what, fn, arg, timeoutMs = 30_000) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 100 });
    return await handle.jsonValue();
  } catch (err) {
    const state = await page
      .evaluate(() => {
        const t = window.tradingPro;
        return t && { symbol: t.symbol, resolution: t.resolution, loaded: t.loaded, connection: t.connection, bars: t.barsShown().length };
      })
      .catch(() => undefined);
    throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what} (page: ${JSON.stringify(state)}; errors: ${JSON.stringify(page.errors)})`, { cause: err });
  }
}

/** Polls `condition` (in Node.js) every 100 ms; fails with `what` when it is not true within `timeoutMs`. */
export async function waitFor(what, condition, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

/** Opens /chart (with `query`) and waits until its first history is drawn. */
export async function openChart(page, server, query = "") {
  const response = await page.goto(`${server.baseUrl}/chart${query}`);
  if (!response || response.status() !== 200) throw new Error(`GET /chart${query}: HTTP ${response?.status()}`);
  await waitInPage(page, "the chart's first history", () => window.tradingPro?.loaded && window.tradingPro.barsShown().length > 0);
}

/** What the chart page shows (see window.tradingPro in src/chart/main.ts). */
export function pageState(page) {
  return page.evaluate(() => ({
    symbol: window.tradingPro.symbol,
    resolution: window.tradingPro.resolution,
    loaded: window.tradingPro.loaded,
    connection: window.tradingPro.connection,
    bars: window.tradingPro.barsShown(),
  }));
}

export async function restGet(baseUrl, pathAndQuery) {
  const response = await fetch(`${baseUrl}${pathAndQuery}`);
  if (!response.ok) throw new Error(`GET ${pathAndQuery}: HTTP ${response.status}: ${await response.text()}`);
  return response.json();
}

/** GET /api/v1/datafeed/bars for the bars from `first` to `last` (unix ms, both included). */
export async function restBars(baseUrl, symbol, resolution, first, last) {
  const params = new URLSearchParams({
    symbol,
    resolution,
    from_time: String(Math.floor(first / 1000)),
    to_time: String(Math.floor(last / 1000) + 1),
  });
  const body = await restGet(baseUrl, `/api/v1/datafeed/bars?${params}`);
  return body.bars;
}

export async function restQuotes(baseUrl, symbols) {
  const response = await fetch(`${baseUrl}/api/v1/datafeed/quotes`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ symbols }),
  });
  if (!response.ok) throw new Error(`POST /quotes: HTTP ${response.status}: ${await response.text()}`);
  return response.json();
}

/** Saves a screenshot to web/test-artifacts/NAME. */
export async function screenshot(page, name) {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, name);
  await page.screenshot({ path: file });
  return file;
}

/** Copies a screenshot to docs/ (the README's picture). */
export async function publishScreenshot(file, name) {
  await copyFile(file, path.join(REPO_DIR, "docs", name));
}

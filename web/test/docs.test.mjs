// The API reference pages in headless Chromium: /api/v1/docs (Redoc over
// /api/v1/openapi.json) and /api/v1/ws/asyncapi (the AsyncAPI component
// over /api/v1/ws/asyncapi.json) must render the specs the server serves,
// markdown included.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { foreignRequests, launchBrowser, newPage, openChart, restGet, screenshot, sleep, startServer, waitInPage } from "./helpers.mjs";

describe("API reference pages", () => {
  let server;
  let browser;
  let page;

  before(async () => {
    server = await startServer(["--seed", "41", "--clock-speed", "0"]);
    browser = await launchBrowser();
    page = await newPage(browser);
  });

  after(async () => {
    await page?.close();
    await browser?.close();
    await server?.stop();
  });

  test("/api/v1/docs renders every operation of the OpenAPI spec, with its markdown", async () => {
    const spec = await restGet(server.baseUrl, "/api/v1/openapi.json");
    const summaries = Object.values(spec.paths).flatMap((item) =>
      Object.values(item).filter((op) => op && typeof op === "object" && op.operationId).map((op) => op.summary),
    );
    assert.ok(summaries.includes("Historical bars"), "getBars has another summary now: update this test");
    const response = await page.goto(`${server.baseUrl}/api/v1/docs`);
    assert.equal(response?.status(), 200);
    await waitInPage(page, "Redoc to render the spec's title", (title) => document.body.innerText.includes(title), spec.info.title);
    const text = await page.evaluate(() => document.body.innerText);
    for (const summary of summaries) assert.ok(text.includes(summary), `the page does not show the operation "${summary}"`);
    // Markdown is rendered: no literal bold markers, and bold text in the descriptions.
    assert.ok(!text.includes("**"), "literal ** in the page: markdown was not rendered");
    assert.ok((await page.locator("redoc strong").count()) > 0, "no bold text from the descriptions' markdown");
    await screenshot(page, "docs.png");
    assert.deepEqual(page.errors, []);
  });

  test("/api/v1/ws/asyncapi renders the AsyncAPI spec's messages and enum values", async () => {
    const spec = await restGet(server.baseUrl, "/api/v1/ws/asyncapi.json");
    const messages = Object.values(spec.components.messages).map((m) => m.name);
    assert.ok(messages.includes("quotes.update"));
    const response = await page.goto(`${server.baseUrl}/api/v1/ws/asyncapi`);
    assert.equal(response?.status(), 200);
    await waitInPage(page, "the AsyncAPI page to render the spec's title", (title) => document.body.innerText.includes(title), spec.info.title);
    const text = await page.evaluate(() => document.body.innerText);
    for (const name of messages) assert.ok(text.includes(name), `the page does not show the message ${name}`);
    // The message examples are shown expanded.
    assert.ok(text.includes('"fast_symbols"'), "the quotes.subscribe example is not shown");
    // SubscriptionStatus is enum [ok, error]: its values show once the schema is expanded.
    const status = page.locator("#schema-SubscriptionStatus");
    await status.getByText("Expand all").click();
    await waitInPage(page, "the SubscriptionStatus schema to expand", () =>
      document.getElementById("schema-SubscriptionStatus")?.innerText.includes("Allowed values"),
    );
    const statusText = await status.innerText();
    assert.match(statusText, /Allowed values:\s*"ok"\s*"error"/);
    assert.ok(!text.includes("**"), "literal ** in the page: markdown was not rendered");
    // The links to the YAML, the REST docs and the chart.
    for (const href of ["/api/v1/ws/asyncapi.yaml", "/api/v1/docs", "/chart"]) {
      assert.equal(await page.locator(`nav a[href="${href}"]`).count(), 1, `no link to ${href}`);
    }
    await screenshot(page, "asyncapi.png");
    assert.deepEqual(page.errors, []);
  });

  test("no page loads anything from another host", async () => {
    const fresh = await newPage(browser);
    try {
      await openChart(fresh, server);
      await fresh.goto(`${server.baseUrl}/api/v1/docs`);
      // The sidebar footer, where Redoc draws its logo, is the last thing it renders.
      await waitInPage(fresh, "Redoc's sidebar footer", () => document.body.innerText.includes("API docs by Redocly"));
      await fresh.goto(`${server.baseUrl}/api/v1/ws/asyncapi`);
      await waitInPage(fresh, "the AsyncAPI page", () => document.getElementById("asyncapi")?.innerText.includes("quotes.update"));
      // Anything a page starts after it rendered (lazy images, fonts) has a moment to show.
      await sleep(1000);
      assert.ok(fresh.requested.length > 10, `too few requests recorded: ${fresh.requested}`);
      assert.deepEqual(foreignRequests(fresh, server.baseUrl), []);
      assert.deepEqual(fresh.errors, []);
    } finally {
      await fresh.close();
    }
  });
});

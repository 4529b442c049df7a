// A request that gets no answer from a page of another origin names the
// likeliest cause, CORS, and the flag that allows the page.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, describe, test } from "node:test";

import { corsHint, RestClient, TradingProError } from "../rest.js";

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

describe("a request that gets no answer", () => {
  const global = globalThis as { location?: { origin: string } };
  after(() => {
    delete global.location;
  });

  test("outside a browser says only what failed", async () => {
    const client = new RestClient({ baseUrl: `http://127.0.0.1:${await closedPort()}` });
    const err = await client.getConfig().catch((e: unknown) => e);
    assert.ok(err instanceof TradingProError);
    assert.match(err.message, /^getConfig: request failed: /);
    assert.doesNotMatch(err.message, /cors-origin/);
  });

  test("from a page of another origin names CORS and --cors-origin", async () => {
    global.location = { origin: "http://app.example:3000" };
    const port = await closedPort();
    const client = new RestClient({ baseUrl: `http://127.0.0.1:${port}` });
    const err = await client.getConfig().catch((e: unknown) => e);
    assert.ok(err instanceof TradingProError);
    assert.match(err.message, /CORS policy may refuse this page's origin http:\/\/app\.example:3000/);
    assert.match(err.message, /--cors-origin http:\/\/app\.example:3000/);
    // A page of the server's own origin is not told about CORS.
    global.location = { origin: `http://127.0.0.1:${port}` };
    assert.equal(corsHint(`http://127.0.0.1:${port}/`), "");
  });
});

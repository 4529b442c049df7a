// Builds web/dist, the folder a trading-pro server serves with --web-dir:
//
//   dist/chart/     -> /chart               the chart page (src/chart, bundled by esbuild)
//   dist/docs/      -> /api/v1/docs         Redoc reading /api/v1/openapi.json
//   dist/asyncapi/  -> /api/v1/ws/asyncapi  the AsyncAPI renderer reading /api/v1/ws/asyncapi.json
//   dist/.stamp     written last: $WEB_BUILD_STAMP, the hash of the inputs that
//                   scripts/build-web computes (it rebuilds when they differ)
//
// The server maps each folder to its URL prefix and serves the folder's
// index.html at the bare prefix (`/chart`, no trailing slash), so every
// page refers to its files with absolute URLs. The files are plain: the
// server compresses them itself.
//
// The renderers' code is copied from node_modules (their prebuilt browser
// bundles, with their license files), never committed.

import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
const require = createRequire(import.meta.url);

/** A file inside an installed package (resolved through its package.json, which every package exports). */
function packageFile(name, file) {
  return path.join(path.dirname(require.resolve(`${name}/package.json`)), file);
}

async function copyInto(folder, files) {
  await mkdir(folder, { recursive: true });
  for (const [from, name] of files) await copyFile(from, path.join(folder, name ?? path.basename(from)));
}

const escapeHtml = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The bar of links at the top of the two reference pages. */
function navigation(current) {
  const links = [
    ["/chart", "Chart"],
    ["/api/v1/docs", "REST API"],
    ["/api/v1/ws/asyncapi", "WebSocket API"],
  ];
  const items = links
    .map(([href, text]) => (href === current ? `<strong>${text}</strong>` : `<a href="${href}">${text}</a>`))
    .join("");
  return `<nav class="top">${items}<span class="spacer"></span>${current === "/api/v1/docs"
    ? '<a href="/api/v1/openapi.yaml">openapi.yaml</a><a href="/api/v1/openapi.json">openapi.json</a>'
    : '<a href="/api/v1/ws/asyncapi.yaml">asyncapi.yaml</a><a href="/api/v1/ws/asyncapi.json">asyncapi.json</a>'}</nav>`;
}

const NAV_HEIGHT = 40;
const navStyle = `
  nav.top { position: fixed; top: 0; left: 0; right: 0; z-index: 100; height: ${NAV_HEIGHT}px; display: flex; gap: 20px;
    align-items: center; padding: 0 16px; background: #131722; font: 14px -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, sans-serif; }
  nav.top a { color: #b2b5be; text-decoration: none; }
  nav.top a:hover { color: #fff; }
  nav.top strong { color: #fff; font-weight: 600; }
  nav.top .spacer { flex: 1; }`;

function page({ title, current, head, body }) {
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)}</title>
  <link rel="icon" href="data:,">
  ${head}
  <style>${navStyle}
  </style>
</head>
<body>
  ${navigation(current)}
  ${body}
</body>
</html>
`;
}

async function buildChart() {
  const out = path.join(dist, "chart");
  await build({
    absWorkingDir: here,
    entryPoints: ["src/chart/main.ts"],
    outfile: path.join(out, "app.js"),
    bundle: true,
    minify: true,
    format: "iife",
    target: "es2020",
    platform: "browser",
    // The datafeed loads `ws` only where there is no WebSocket (Node.js); a browser never gets there.
    external: ["ws"],
    // trading-pro-datafeed is linked from ../clients/typescript, which has its own
    // node_modules: resolve lightweight-charts here, so the bundle holds one copy.
    alias: { "lightweight-charts": "lightweight-charts" },
    legalComments: "eof",
    logLevel: "warning",
  });
  await copyInto(out, [[path.join(here, "src/chart/index.html")], [path.join(here, "src/chart/style.css")]]);
}

// Redoc's sidebar footer loads its logo from Redocly's CDN on every page
// view: a page we serve would reach a third-party host (failing offline, and
// telling that host who reads our docs). The footer keeps its text link; the
// image gets an empty data: URL, which fails to load, so Redoc hides it.
const REDOC_LOGO = '"https://cdn.redoc.ly/redoc/logo-mini.svg"';

async function buildDocs() {
  const out = path.join(dist, "docs");
  await copyInto(out, [[packageFile("redoc", "bundles/redoc.standalone.js.LICENSE.txt")]]);
  const redoc = await readFile(packageFile("redoc", "bundles/redoc.standalone.js"), "utf8");
  if (redoc.split(REDOC_LOGO).length !== 2) {
    throw new Error(`redoc.standalone.js no longer loads its logo from ${REDOC_LOGO} once: check the page for requests to other hosts and update build.mjs`);
  }
  await writeFile(path.join(out, "redoc.standalone.js"), redoc.replace(REDOC_LOGO, '"data:,"'));
  const html = page({
    title: "Trading Pro REST API",
    current: "/api/v1/docs",
    head: "<style>body { margin: 0; padding-top: " + NAV_HEIGHT + "px; }</style>",
    // scroll-y-offset keeps anchors clear of the fixed navigation bar.
    body: `<redoc spec-url="/api/v1/openapi.json" scroll-y-offset="${NAV_HEIGHT}" path-in-middle-panel="true" expand-responses="200"></redoc>
  <script src="/api/v1/docs/redoc.standalone.js"></script>`,
  });
  await writeFile(path.join(out, "index.html"), html);
}

async function buildAsyncApi() {
  const out = path.join(dist, "asyncapi");
  const component = "@asyncapi/react-component";
  await copyInto(out, [
    // The standalone bundle includes React and the parser: one script, no build step.
    [packageFile(component, "browser/standalone/index.js")],
    [packageFile(component, "browser/standalone/index.js.LICENSE.txt")],
    [packageFile(component, "styles/default.min.css"), "default.min.css"],
  ]);
  // A file of its own rather than an inline script, so the page works under a strict CSP.
  await writeFile(
    path.join(out, "render.js"),
    `// Renders the server's AsyncAPI document with @asyncapi/react-component's standalone bundle.
AsyncApiStandalone.render(
  {
    schema: { url: "/api/v1/ws/asyncapi.json", options: { method: "GET" } },
    config: {
      show: { sidebar: true, info: true, servers: true, operations: true, messages: true, schemas: true, errors: true },
      expand: { messageExamples: true },
      sidebar: { showServers: "byDefault", showOperations: "byDefault" },
    },
  },
  document.getElementById("asyncapi"),
);
`,
  );
  const html = page({
    title: "Trading Pro WebSocket API",
    current: "/api/v1/ws/asyncapi",
    head: `<link rel="stylesheet" href="/api/v1/ws/asyncapi/default.min.css">
  <style>
    body { margin: 0; padding-top: ${NAV_HEIGHT}px; }
    /* The component's typography puts backticks around inline code; the code style says enough. */
    #asyncapi code::before, #asyncapi code::after { content: none; }
  </style>`,
    body: `<div id="asyncapi"></div>
  <script src="/api/v1/ws/asyncapi/index.js"></script>
  <script src="/api/v1/ws/asyncapi/render.js"></script>`,
  });
  await writeFile(path.join(out, "index.html"), html);
}

await rm(dist, { recursive: true, force: true });
await Promise.all([buildChart(), buildDocs(), buildAsyncApi()]);

// Last, so that an interrupted build never looks up to date.
await writeFile(path.join(dist, ".stamp"), `${process.env.WEB_BUILD_STAMP ?? "built without scripts/build-web"}\n`);

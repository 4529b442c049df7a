#!/usr/bin/env node
// Validates an AsyncAPI document with @asyncapi/parser (schema validation plus
// its built-in Spectral ruleset) and prints every diagnostic.
// Exits 1 if any diagnostic has error severity (or the document cannot be
// parsed at all), 0 otherwise; warnings are printed but do not fail.
//
// Usage: node scripts/validate-asyncapi.mjs <asyncapi.yaml>

import { displayPath } from "./paths.mjs";
import { DiagnosticSeverity, Parser, fromFile } from "@asyncapi/parser";

const SEVERITY_NAMES = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info",
  [DiagnosticSeverity.Hint]: "hint",
};


const input = process.argv[2];
if (!input) {
  console.error("usage: node scripts/validate-asyncapi.mjs <asyncapi.yaml>");
  process.exit(1);
}
const shown = displayPath(input);

const parser = new Parser();
let parsed;
try {
  parsed = await fromFile(parser, input).parse();
} catch (err) {
  console.error(`validate-asyncapi: cannot read ${shown}: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}
const { document, diagnostics } = parsed;

const counts = { error: 0, warning: 0, info: 0, hint: 0 };
const sorted = [...diagnostics].sort(
  (a, b) =>
    a.severity - b.severity ||
    a.range.start.line - b.range.start.line ||
    a.range.start.character - b.range.start.character,
);
for (const d of sorted) {
  const severity = SEVERITY_NAMES[d.severity] ?? `severity ${d.severity}`;
  counts[severity] = (counts[severity] ?? 0) + 1;
  const where = `${shown}:${d.range.start.line + 1}:${d.range.start.character + 1}`;
  const at = d.path && d.path.length > 0 ? ` at ${d.path.join(".")}` : "";
  console.log(`${where} ${severity} ${d.code}: ${d.message}${at}`);
}

const summary = `${shown}: ${counts.error} error(s), ${counts.warning} warning(s), ${counts.info} info, ${counts.hint} hint(s)`;
if (counts.error > 0 || document === undefined) {
  console.error(`${summary}: AsyncAPI validation FAILED`);
  process.exit(1);
}
console.log(`${summary}: valid AsyncAPI ${document.version()}`);

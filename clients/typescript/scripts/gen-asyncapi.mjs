#!/usr/bin/env node
// Generates TypeScript types from an AsyncAPI 2.x document:
//   * one exported type per schema in `components.schemas` (named after its
//     key; `#/components/schemas/X` references become references to type X,
//     so every schema is declared exactly once);
//   * `ClientMessage`: union of the payload types of the messages of every
//     channel's `publish` operation (what a client sends);
//   * `ServerMessage`: the same for `subscribe` (what the server sends).
//
// Usage: node scripts/gen-asyncapi.mjs <asyncapi.yaml> <output.ts>
//
// The output depends only on the input document (schemas in document order,
// no timestamps, no absolute paths), so the same spec always gives a
// byte-identical file; scripts/check-generated relies on that.

import { readFile, writeFile } from "node:fs/promises";
import { displayPath } from "./paths.mjs";
import { compile } from "json-schema-to-typescript";
import { parse } from "yaml";

const SCHEMA_REF_PREFIX = "#/components/schemas/";
const MESSAGE_REF_PREFIX = "#/components/messages/";
// Type names are used verbatim, so they must already be what
// json-schema-to-typescript would name the type (a PascalCase identifier).
const TYPE_NAME = /^[A-Z][A-Za-z0-9]*$/;
const RESERVED_NAMES = new Set(["ClientMessage", "ServerMessage"]);


function fail(message) {
  console.error(`gen-asyncapi: ${message}`);
  process.exit(1);
}

function decodePointerToken(token) {
  return token.replace(/~1/g, "/").replace(/~0/g, "~");
}

function schemaNameOf(ref, where, schemas) {
  if (typeof ref !== "string" || !ref.startsWith(SCHEMA_REF_PREFIX)) {
    fail(`${where}: unsupported $ref ${JSON.stringify(ref)} (only ${SCHEMA_REF_PREFIX}<Name> is supported)`);
  }
  const name = decodePointerToken(ref.slice(SCHEMA_REF_PREFIX.length));
  if (!Object.hasOwn(schemas, name)) {
    fail(`${where}: $ref ${ref} names no schema in components.schemas`);
  }
  return name;
}

// Deep copy of `node` with every `{ $ref: '#/components/schemas/X' }` replaced
// by `{ tsType: 'X' }` (json-schema-to-typescript emits tsType verbatim).
function replaceRefs(node, where, schemas) {
  if (Array.isArray(node)) {
    return node.map((item, i) => replaceRefs(item, `${where}/${i}`, schemas));
  }
  if (node === null || typeof node !== "object") {
    return node;
  }
  if (Object.hasOwn(node, "$ref")) {
    const { $ref, ...siblings } = node;
    // Siblings of $ref are ignored by JSON Schema draft 7 (AsyncAPI 2.x),
    // except for documentation, which is kept for the doc comment.
    const kept = {};
    if (typeof siblings.description === "string") kept.description = siblings.description;
    return { ...kept, tsType: schemaNameOf($ref, where, schemas) };
  }
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] = replaceRefs(value, `${where}/${key}`, schemas);
  }
  return out;
}

// The messages of an operation: a single message or `oneOf` a list of them,
// each inline or a `#/components/messages/X` reference.
function operationMessages(operation, where, messages) {
  const message = operation.message;
  if (message === undefined) return [];
  const list = Array.isArray(message.oneOf) ? message.oneOf : [message];
  return list.map((entry, i) => {
    const at = Array.isArray(message.oneOf) ? `${where}.message.oneOf[${i}]` : `${where}.message`;
    if (entry && typeof entry.$ref === "string") {
      if (!entry.$ref.startsWith(MESSAGE_REF_PREFIX)) {
        fail(`${at}: unsupported $ref ${JSON.stringify(entry.$ref)}`);
      }
      const name = decodePointerToken(entry.$ref.slice(MESSAGE_REF_PREFIX.length));
      if (!messages || !Object.hasOwn(messages, name)) {
        fail(`${at}: $ref ${entry.$ref} names no message in components.messages`);
      }
      return { at: `components.messages.${name}`, message: messages[name] };
    }
    return { at, message: entry };
  });
}

function payloadTypes(doc, operationKind, schemas) {
  const names = [];
  for (const [channel, item] of Object.entries(doc.channels ?? {})) {
    const operation = item?.[operationKind];
    if (!operation) continue;
    for (const { at, message } of operationMessages(operation, `channels.${channel}.${operationKind}`, doc.components?.messages)) {
      const payload = message?.payload;
      if (!payload || typeof payload.$ref !== "string") {
        fail(`${at}.payload must be a $ref to ${SCHEMA_REF_PREFIX}<Name> so that the frame type has a name`);
      }
      const name = schemaNameOf(payload.$ref, `${at}.payload`, schemas);
      if (!names.includes(name)) names.push(name);
    }
  }
  if (names.length === 0) {
    fail(`no ${operationKind} messages found in any channel`);
  }
  return names;
}

const COMPILE_OPTIONS = {
  bannerComment: "",
  // Same convention as openapi-typescript (src/generated/openapi.ts): an object
  // without `additionalProperties` gets no index signature.
  additionalProperties: false,
  declareExternallyReferenced: true,
  enableConstEnums: false,
  strictIndexSignatures: true,
  unknownAny: true,
  format: true,
  style: {
    printWidth: 100,
    semi: true,
    singleQuote: false,
    tabWidth: 2,
    trailingComma: "all",
    useTabs: false,
    endOfLine: "lf",
  },
};

async function main() {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    fail("usage: node scripts/gen-asyncapi.mjs <asyncapi.yaml> <output.ts>");
  }
  const doc = parse(await readFile(input, "utf8"));
  if (typeof doc?.asyncapi !== "string" || !doc.asyncapi.startsWith("2.")) {
    fail(`${input}: expected an AsyncAPI 2.x document, found asyncapi: ${JSON.stringify(doc?.asyncapi)}`);
  }
  const schemas = doc.components?.schemas;
  if (!schemas || typeof schemas !== "object" || Object.keys(schemas).length === 0) {
    fail(`${input}: components.schemas is empty`);
  }

  const blocks = [];
  for (const [name, schema] of Object.entries(schemas)) {
    if (!TYPE_NAME.test(name) || RESERVED_NAMES.has(name)) {
      fail(`components.schemas.${name}: the name must be a PascalCase identifier other than ${[...RESERVED_NAMES].join(" or ")}`);
    }
    const jsonSchema = { ...replaceRefs(schema, `components.schemas.${name}`, schemas), title: name };
    const code = (await compile(jsonSchema, name, COMPILE_OPTIONS)).trim();
    const declared = [...code.matchAll(/^export (?:type|interface|enum|const enum) (\w+)/gm)].map((m) => m[1]);
    if (declared.length !== 1 || declared[0] !== name) {
      fail(`components.schemas.${name}: expected exactly one declaration named ${name}, got ${JSON.stringify(declared)}`);
    }
    blocks.push(code);
  }

  const union = (name, doc_, members) =>
    `/**\n * ${doc_}\n */\nexport type ${name} =\n${members.map((m) => `  | ${m}`).join("\n")};`;
  blocks.push(
    union(
      "ClientMessage",
      "Every frame a client sends (the `publish` messages of the channels).",
      payloadTypes(doc, "publish", schemas),
    ),
  );
  blocks.push(
    union(
      "ServerMessage",
      "Every frame the server sends (the `subscribe` messages of the channels).",
      payloadTypes(doc, "subscribe", schemas),
    ),
  );

  const source = displayPath(input);
  const described = [doc.info?.title, doc.info?.version].filter(Boolean).join(" ");
  const header = [
    "/**",
    ` * This file was generated from ${source}${described ? ` (${described})` : ""}.`,
    " * Generator: clients/typescript/scripts/gen-asyncapi.mjs (json-schema-to-typescript).",
    " * Do not edit it by hand: change the spec and run scripts/generate.",
    " */",
  ].join("\n");

  await writeFile(output, `${header}\n\n${blocks.join("\n\n")}\n`);
}

await main();

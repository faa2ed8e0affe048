/**
 * The lint rule that keeps src/core pure: it must fire on every kind of effect, and the real core
 * must pass it. Runs ESLint with the project's own configuration on text placed in src/core.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

async function problems(code: string, filePath = "src/core/knock/violation.ts"): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${filePath}` });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? "parse"}@${m.line}`);
}

const VIOLATIONS: [string, string, string][] = [
  ["an I/O module", `import { readFileSync } from "node:fs";\nexport const f = readFileSync;`, "no-restricted-imports@1"],
  ["a bare builtin name", `import { connect } from "net";\nexport const f = connect;`, "no-restricted-imports@1"],
  ["randomness from node:crypto", `import { randomInt } from "node:crypto";\nexport const f = randomInt;`, "no-restricted-imports@1"],
  ["random bytes from node:crypto (an encoder's salt comes from its caller)", `import { randomBytes } from "node:crypto";\nexport const f = randomBytes;`, "no-restricted-imports@1"],
  ["an npm package with effects", `import { pino } from "pino";\nexport const f = pino;`, "no-restricted-imports@1"],
  ["cap", `import cap from "cap";\nexport const f = cap;`, "no-restricted-imports@1"],
  ["an adapter", `import { runHook } from "../../adapters/hooks.js";\nexport const f = runHook;`, "no-restricted-imports@1"],
  ["the app", `import { Daemon } from "../../app/daemon.js";\nexport const f = Daemon;`, "no-restricted-imports@1"],
  ["config", `import { parseConfig } from "../../config/config.js";\nexport const f = parseConfig;`, "no-restricted-imports@1"],
  ["the cli", `import type { X } from "../../cli/knock.js";\nexport type Y = X;`, "no-restricted-imports@1"],
  ["process", `export const f = () => process.env;`, "no-restricted-globals@1"],
  ["a timer", `export const f = () => setTimeout(() => 0, 1);`, "no-restricted-globals@1"],
  ["performance.now", `export const f = () => performance.now();`, "no-restricted-globals@1"],
  ["Date.now", `export const f = () => Date.now();`, "no-restricted-properties@1"],
  ["Math.random", `export const f = () => Math.random();`, "no-restricted-properties@1"],
  ["new Date()", `export const f = () => new Date();`, "no-restricted-syntax@1"],
  ["a dynamic import", `export const f = () => import("node:fs");`, "no-restricted-syntax@1"],
];

for (const [what, code, expected] of VIOLATIONS) {
  test(`the core-purity rule fires on ${what} in src/core`, async () => {
    assert.deepEqual(await problems(code), [expected]);
  });
}

test("the core-purity rule allows what is pure: relative core imports, hashes, ciphers, new Date(ms)", async () => {
  const code = [
    `import { createCipheriv, createDecipheriv, createHash, createHmac, hash, timingSafeEqual } from "node:crypto";`,
    `import type { Door } from "../types.js";`,
    `export const ciphers = [createCipheriv, createDecipheriv, createHmac, hash, timingSafeEqual];`,
    `export const f = (d: Door, ms: number) => [createHash("sha256").update(d.name).digest("hex"), new Date(ms).toISOString()];`,
  ].join("\n");
  assert.deepEqual(await problems(code), []);
});

test("the same text outside src/core is not held to the rule", async () => {
  assert.deepEqual(await problems(`export const f = () => Date.now();`, "src/app/elsewhere.ts"), []);
});

test("the real src/core passes the rule", async () => {
  const results = await eslint.lintFiles([`${ROOT}src/core/**/*.ts`]);
  assert.ok(results.length >= 8, `expected the core's files, linted ${results.length}`);
  assert.deepEqual(results.flatMap((r) => r.messages.map((m) => `${r.filePath}:${m.line} ${m.message}`)), []);
});

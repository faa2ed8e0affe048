/**
 * The lint rules that keep the layers in order (imports point down: cli -> app -> adapters ->
 * config -> core) and src free of import cycles: each must fire, and the real src must pass them.
 * Runs ESLint with the project's own configuration on text placed in src. (src/core's own rule:
 * core-purity.test.ts.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

async function problems(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${filePath}` });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? "parse"}@${m.line}`);
}

async function messages(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${filePath}` });
  return (result?.messages ?? []).map((m) => m.message);
}

const UP: [string, string, string][] = [
  ["config", "adapters", `import { createLogger } from "../adapters/log.js";\nexport const f = createLogger;`],
  ["config", "app", `import { runDaemon } from "../app/run.js";\nexport const f = runDaemon;`],
  ["config", "cli", `import type { X } from "../cli/knock.js";\nexport type Y = X;`],
  ["adapters", "app", `import type { Daemon } from "../app/daemon.js";\nexport type D = Daemon;`],
  ["adapters", "cli", `import { main } from "../cli/main.js";\nexport const f = main;`],
  ["adapters (from a subfolder)", "app", `import type { Daemon } from "../../app/daemon.js";\nexport type D = Daemon;`],
  ["app", "cli", `import { main } from "../cli/main.js";\nexport const f = main;`],
  ["adapters (a re-export)", "app", `export { runDaemon } from "../app/run.js";`],
  ["adapters (a re-export of all)", "app", `export * from "../app/run.js";`],
];

const FILE: Record<string, string> = {
  config: "src/config/violation.ts",
  adapters: "src/adapters/violation.ts",
  "adapters (from a subfolder)": "src/adapters/firewall/violation.ts",
  "adapters (a re-export)": "src/adapters/violation.ts",
  "adapters (a re-export of all)": "src/adapters/violation.ts",
  app: "src/app/violation.ts",
};

for (const [from, to, code] of UP) {
  test(`the layer rule fires on src/${from} importing src/${to}`, async () => {
    assert.deepEqual(await problems(code, FILE[from] as string), ["no-restricted-imports@1"]);
  });
}

test("the layer rule fires on a dynamic import up the layers, and names the rule broken", async () => {
  const code = `export const f = () => import("../app/run.js");`;
  assert.deepEqual(await problems(code, "src/adapters/violation.ts"), ["no-restricted-syntax@1"]);
  assert.match((await messages(code, "src/adapters/violation.ts"))[0] ?? "", /src\/adapters may not import src\/app or src\/cli: imports point down/);
  assert.deepEqual(await problems(`export const f = () => import("../cli/main.js");`, "src/app/violation.ts"), ["no-restricted-syntax@1"]);
});

test("the layer rule allows imports down the layers and packages", async () => {
  const allowed: [string, string][] = [
    ["src/config/allowed.ts", `import { ConfigError } from "../core/errors.js";\nimport env from "env-var";\nexport const f = [ConfigError, env];`],
    ["src/adapters/allowed.ts", `import { parseConfig } from "../config/config.js";\nimport type { Door } from "../core/types.js";\nimport { pino } from "pino";\nexport const f = [parseConfig, pino];\nexport type D = Door;`],
    ["src/adapters/firewall/allowed.ts", `import { createLogger } from "../log.js";\nimport { FAMILIES } from "../../core/firewall/common.js";\nexport const f = [createLogger, FAMILIES];`],
    ["src/app/allowed.ts", `import { createLogger } from "../adapters/log.js";\nimport { parseConfig } from "../config/config.js";\nexport const f = [createLogger, parseConfig, () => import("../adapters/kube.js")];`],
    ["src/cli/allowed.ts", `import { runDaemon } from "../app/run.js";\nimport { createLogger } from "../adapters/log.js";\nexport const f = [runDaemon, createLogger];`],
  ];
  for (const [file, code] of allowed) assert.deepEqual(await problems(code, file), [], file);
});

const APART: [string, string][] = [
  ["src/adapters/firewall/nftables/violation.ts", `import { CHAIN } from "../iptables/rules.js";\nexport const f = CHAIN;`],
  ["src/adapters/firewall/iptables/violation.ts", `import type { NftPlan } from "../nftables/rules.js";\nexport type P = NftPlan;`],
  ["src/adapters/firewall/iptables/violation.ts", `export { nftPlan } from "../../firewall/nftables/rules.js";`],
];

for (const [file, code] of APART) {
  test(`the backend rule fires on ${code.split("\n")[0]} in ${file}`, async () => {
    assert.deepEqual(await problems(code, file), ["no-restricted-imports@1"]);
    assert.match((await messages(code, file))[0] ?? "", /src\/adapters\/firewall\/(iptables|nftables) may not import src\/adapters\/firewall\/(nftables|iptables): each backend stands alone/);
  });
}

test("the backend rule fires on a dynamic import of the other backend, and the layer rule still holds in a backend's folder", async () => {
  assert.deepEqual(await problems(`export const f = () => import("../iptables/firewall.js");`, "src/adapters/firewall/nftables/violation.ts"), ["no-restricted-syntax@1"]);
  assert.deepEqual(await problems(`import type { Daemon } from "../../../app/daemon.js";\nexport type D = Daemon;`, "src/adapters/firewall/nftables/violation.ts"), ["no-restricted-imports@1"]);
  assert.deepEqual(await problems(`export const f = () => import("../../../cli/main.js");`, "src/adapters/firewall/iptables/violation.ts"), ["no-restricted-syntax@1"]);
});

test("the backend rule allows a backend the shared firewall modules, its own files and core", async () => {
  const code = `import { ChangeQueue } from "../changes.js";\nimport { mustRun } from "../exec.js";\nimport { CHAIN } from "./rules.js";\nimport { FAMILIES } from "../../../core/firewall/common.js";\nexport const f = [ChangeQueue, mustRun, CHAIN, FAMILIES];`;
  assert.deepEqual(await problems(code, "src/adapters/firewall/iptables/allowed.ts"), []);
  const nft = `import { nftPlan } from "./rules.js";\nimport { checkedAddress } from "../checked.js";\nexport const f = [nftPlan, checkedAddress];`;
  assert.deepEqual(await problems(nft, "src/adapters/firewall/nftables/allowed.ts"), []);
});

test("the cycle rule fires on an import that leads back to the importing file, and names the chain", async () => {
  // On disk, core/knock/machine.ts imports core/types.ts.
  const code = `import { KnockMachine } from "./knock/machine.js";\nexport const f = KnockMachine;`;
  assert.deepEqual(await problems(code, "src/core/types.ts"), ["knockgate/import-cycle@1"]);
  assert.deepEqual(await messages(code, "src/core/types.ts"), [
    "import cycle: src/core/types.ts -> src/core/knock/machine.ts -> src/core/types.ts (move what both need into a file of its own, lower down)",
  ]);
});

test("the cycle rule counts type-only imports, re-exports and dynamic imports", async () => {
  const cycles: [string, string][] = [
    ["src/core/types.ts", `import type { KnockMachine } from "./knock/machine.js";\nexport type M = KnockMachine;`],
    ["src/core/types.ts", `export { KnockMachine } from "./knock/machine.js";`],
    // (core allows no dynamic import at all: this one is in adapters, where log.ts is imported by exec.ts)
    ["src/adapters/log.ts", `export const f = () => import("./firewall/exec.js");`],
  ];
  for (const [file, code] of cycles) assert.deepEqual(await problems(code, file), ["knockgate/import-cycle@1"], code);
});

test("the cycle rule finds a cycle through several files", async () => {
  // On disk: adapters/firewall/index.ts -> iptables/firewall.ts -> ../exec.ts -> ../log.ts.
  const code = `import { createFirewall } from "./firewall/index.js";\nexport const f = createFirewall;`;
  const [message] = await messages(code, "src/adapters/log.ts");
  assert.match(message ?? "", /^import cycle: src\/adapters\/log\.ts -> src\/adapters\/firewall\/index\.ts -> .* -> src\/adapters\/log\.ts/);
});

test("the cycle rule leaves imports alone that do not come back", async () => {
  assert.deepEqual(await problems(`import { KnockMachine } from "./knock/machine.js";\nexport const f = KnockMachine;`, "src/core/lists.ts"), []);
});

test("the real src passes the layer and cycle rules", async () => {
  const results = await eslint.lintFiles([`${ROOT}src/**/*.ts`]);
  assert.ok(results.length >= 60, `expected every file of src, linted ${results.length}`);
  assert.deepEqual(results.flatMap((r) => r.messages.map((m) => `${r.filePath}:${m.line} ${m.message}`)), []);
});

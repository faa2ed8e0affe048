/**
 * docs/configuration.md against the code: every variable the configuration knows has a row, every
 * row names a variable it knows, and the default a row shows is the one the code falls back to.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DEFAULTS, DOOR_FIELDS, GLOBAL_VARIABLES } from "../../src/config/config.js";
import { SPA_DEFAULTS } from "../../src/config/spa.js";
import { DEFAULT_DOCKER_HOST, parseDocker } from "../../src/config/docker.js";
import { parseClusterConfig } from "../../src/config/cluster.js";
import { FILE_ONLY } from "../../src/config/secret-files.js";

const DOC = fileURLToPath(new URL("../../../docs/configuration.md", import.meta.url));

/** Variable -> its default cell, from every table row that starts with a backquoted KNOCK_ name. */
function documented(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\| `(KNOCK_[A-Z0-9_<>]+)` \| ([^|]*) \|/.exec(line);
    if (m) rows.set(m[1] as string, (m[2] as string).trim());
  }
  return rows;
}

/** Every variable the code reads, as the doc names it, with the default the code uses (undefined: none). */
function known(): Map<string, string | undefined> {
  const vars = new Map<string, string | undefined>();
  const fileOnly: readonly string[] = FILE_ONLY;
  for (const v of GLOBAL_VARIABLES) vars.set(fileOnly.includes(v) ? `${v}_FILE` : v, (DEFAULTS as Record<string, string>)[v]);
  const doorDefaults: Record<string, string> = { ...DEFAULTS, ...SPA_DEFAULTS };
  for (const f of DOOR_FIELDS) vars.set(`KNOCK_DOOR_<NAME>_${f}`, doorDefaults[f]);
  // Docker's and the cluster's defaults are inline in their parsers: read them by parsing nothing.
  vars.set("KNOCK_DOCKER", parseDocker({}, []).mode);
  vars.set("KNOCK_CLUSTER", parseClusterConfig({}, () => "", []).mode);
  return vars;
}

const literal = (cell: string) => /^`[^`]+`$/.test(cell);

test("docs/configuration.md lists every variable the code knows, and only those", () => {
  const doc = documented(readFileSync(DOC, "utf8"));
  const code = known();
  assert.deepEqual([...code.keys()].filter((v) => !doc.has(v)), [], "add these to docs/configuration.md");
  assert.deepEqual([...doc.keys()].filter((v) => !code.has(v)), [], "docs/configuration.md names variables the code does not read");
});

test("each default in docs/configuration.md is the one the code uses, and a variable without one shows none", () => {
  const doc = documented(readFileSync(DOC, "utf8"));
  const problems: string[] = [];
  for (const [variable, value] of known()) {
    const cell = doc.get(variable);
    if (cell === undefined) continue;
    if (value !== undefined && cell !== `\`${value}\``) problems.push(`${variable}: documented ${cell}, the code uses \`${value}\``);
    if (value === undefined && literal(cell)) problems.push(`${variable}: documented ${cell}, the code has no default`);
  }
  assert.deepEqual(problems, []);
});

test("KNOCK_DOCKER_HOST's row names the engine address the code falls back to", () => {
  const cell = documented(readFileSync(DOC, "utf8")).get("KNOCK_DOCKER_HOST") ?? "";
  assert.ok(cell.includes(`\`${DEFAULT_DOCKER_HOST}\``), cell);
  assert.equal(parseDocker({}, []).host, DEFAULT_DOCKER_HOST);
});

test("the table reader finds a row as written, and a changed default is caught", () => {
  const rows = documented("| `KNOCK_LOG_LEVEL` | `debug` | levels |\n| `KNOCK_DOOR_<NAME>_PORTS` | `22/tcp` | ports |\n| other | x | y |");
  assert.deepEqual([...rows], [["KNOCK_LOG_LEVEL", "`debug`"], ["KNOCK_DOOR_<NAME>_PORTS", "`22/tcp`"]]);
  assert.notEqual(rows.get("KNOCK_LOG_LEVEL"), `\`${DEFAULTS.KNOCK_LOG_LEVEL}\``);
});

/** The log formats: what comes from outside cannot forge a line or drive a terminal in either. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { escapeControl } from "../../src/adapters/log.js";

const HOSTILE = "eve\n[12:00:00.000] INFO (1): opened 22/tcp for 203.0.113.66\u001b[2J\u0007\r\u009b";

/** Logs one line with HOSTILE as the message and as fields, in a process of its own, and returns what it wrote. */
function logged(format: "json" | "pretty"): string {
  const logModule = new URL("../../src/adapters/log.js", import.meta.url).href;
  const clockModule = new URL("../../src/adapters/clock.js", import.meta.url).href;
  const script = `
    const { createLogger, flushLogs } = await import(${JSON.stringify(logModule)});
    const { systemClock } = await import(${JSON.stringify(clockModule)});
    const log = createLogger({ logLevel: "info", logFormat: ${JSON.stringify(format)} });
    const hostile = ${JSON.stringify(HOSTILE)};
    log.info({ event: "open", username: hostile, interface: hostile }, \`opened for user \${hostile}\`);
    await flushLogs(systemClock);
  `;
  return execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", env: { PATH: process.env["PATH"] ?? "" } });
}

for (const format of ["json", "pretty"] as const) {
  test(`${format} logs write control characters in values from outside as escapes`, () => {
    const out = logged(format);
    // eslint-disable-next-line no-control-regex -- the control characters are what it looks for
    assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, "no control character but the line ends");
    assert.doesNotMatch(out, /^\[12:00:00\.000\]/m, "no forged line");
    assert.match(out, /eve\\n\[12:00:00\.000\]/, "the newline shows as \\n");
    assert.match(out, /\\r\\u009b/, "a C1 control (CSI) shows as its escape");
  });
}

test("json logs keep the values from outside as they were: the escapes are JSON's", () => {
  const line = JSON.parse(logged("json")) as Record<string, unknown>;
  assert.equal(line["username"], HOSTILE);
  assert.equal(line["msg"], `opened for user ${HOSTILE}`);
});

test("escapeControl writes C0, DEL and C1 controls as JSON-style escapes and leaves the rest", () => {
  assert.equal(escapeControl("a\nb\tc\rd\u001b[0m\u007f\u0085é✓"), "a\\nb\\tc\\rd\\u001b[0m\\u007f\\u0085é✓");
});

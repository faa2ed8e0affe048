/**
 * Transient failures of iptables, ipset and nft during removal and the install at start: stand-ins
 * for the tools, first (and alone) on PATH, keep a little state in files, fail as told and log every
 * call, so the tests see exactly which commands ran how often.
 */
import { envTargets } from "../support/protection.js";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/config.js";
import { FirewallError } from "../../src/core/errors.js";
import { execRunner, patientRunner, type Runner } from "../../src/adapters/firewall/exec.js";
import { FakeClock } from "../support/fake-clock.js";
import { removeEverything } from "../../src/adapters/firewall/index.js";
import { NftablesFirewall } from "../../src/adapters/firewall/nftables/firewall.js";
import { planId } from "../../src/adapters/firewall/plan-id.js";

const XTABLES_LOCK = "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?";
const SET_IN_USE = "ipset v7.17: Set cannot be destroyed: it is in use by a kernel component";
const NFT_BUSY = "Error: Could not process rule: Device or resource busy";

/** Shell shared by every stand-in: the call log, and `fail_next KEY` failing while KEY.fail says so. */
const PREAMBLE = (dir: string, tool: string) => `#!/bin/sh
PATH=/usr/bin:/bin LC_ALL=C
D=${dir}
T=${tool}
echo "$T $*" >> "$D/calls"
fail_next() {
  [ -e "$D/$1.fail" ] || return 0
  read -r n code msg < "$D/$1.fail"
  [ "$n" -gt 0 ] || return 0
  echo "$((n - 1)) $code $msg" > "$D/$1.fail"
  echo "$msg" >&2
  exit "$code"
}
`;

// -S fails as it does without CAP_NET_RAW (knockgate cleanup with NET_ADMIN alone): removal must not list.
const IPTABLES = `case "$*" in
  *"-D PREROUTING -j KNOCKGATE")
    fail_next "$T"
    j=$(cat "$D/$T.jumps" 2>/dev/null || echo 0)
    [ "$j" -gt 0 ] || { echo "iptables: Bad rule (does a matching rule exist in that chain?)." >&2; exit 1; }
    echo $((j - 1)) > "$D/$T.jumps";;
  *"-S KNOCKGATE") echo "iptables v1.8.9 (nf_tables): Can't open socket to ipset." >&2; exit 1;;
  *"-F KNOCKGATE") [ -e "$D/$T.chain" ] || { echo "iptables: No chain/target/match by that name." >&2; exit 1; };;
  *"-X KNOCKGATE") rm "$D/$T.chain";;
  *) echo "unexpected: $*" >&2; exit 2;;
esac
`;

const IPSET = `case "$1" in
  list) ls "$D/sets";;
  destroy) fail_next ipset; rm "$D/sets/$2";;
  *) echo "unexpected: $*" >&2; exit 2;;
esac
`;

const NFT = `case "$*" in
  "delete table inet knockgate")
    fail_next nft
    [ -e "$D/nft.table" ] || { echo "Error: Could not process rule: No such file or directory" >&2; exit 1; }
    rm "$D/nft.table";;
  "-t list table inet knockgate") [ -e "$D/nft.table" ] || { echo "Error: No such file or directory" >&2; exit 1; };;
  "-f -") cat >/dev/null; fail_next nft; touch "$D/nft.table";;
  "-i") ;;
  *) echo "unexpected: $*" >&2; exit 2;;
esac
`;

let dir = "";
let savedPath: string | undefined;
let warnings: Record<string, unknown>[] = [];
const log = pino({ level: "warn" }, { write: (l: string) => warnings.push(JSON.parse(l) as Record<string, unknown>) });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "knockgate-shims-"));
  mkdirSync(join(dir, "sets"));
  writeFileSync(join(dir, "calls"), "");
  const tools: Record<string, string> = { "iptables-nft": IPTABLES, "ip6tables-nft": IPTABLES, ipset: IPSET, nft: NFT, stdbuf: 'shift\nexec "$@"\n' };
  for (const [tool, body] of Object.entries(tools)) writeFileSync(join(dir, tool), PREAMBLE(dir, tool) + body, { mode: 0o755 });
  // Only the stand-ins: nothing may reach the real firewall of the machine running the tests.
  savedPath = process.env["PATH"];
  process.env["PATH"] = dir;
  warnings = [];
});

afterEach(() => {
  process.env["PATH"] = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

/** What the firewall holds before removal: a jump and the chain (IPv4), our sets and someone else's, our table. */
function installed(): void {
  writeFileSync(join(dir, "iptables-nft.jumps"), "1");
  writeFileSync(join(dir, "iptables-nft.chain"), "");
  for (const set of ["knockgate-allow-4", "knockgate-SSH-4", "somebody-else"]) writeFileSync(join(dir, "sets", set), "");
  writeFileSync(join(dir, "nft.table"), "");
}

/** The next `times` calls of `tool`'s failing step exit with `code` and print `stderr`. */
function failNext(tool: string, times: number, code: number, stderr: string): void {
  writeFileSync(join(dir, `${tool}.fail`), `${times} ${code} ${stderr}\n`);
}

function calls(line: string): number {
  return readFileSync(join(dir, "calls"), "utf8").split("\n").filter((l) => l === line).length;
}

test("removal retries transient failures (xtables lock, set still in use, nft busy) and removes everything", async () => {
  installed();
  failNext("iptables-nft", 2, 4, XTABLES_LOCK);
  failNext("ipset", 2, 1, SET_IN_USE);
  failNext("nft", 1, 1, NFT_BUSY);

  assert.deepEqual(await removeEverything(log), ["iptables-nft", "nftables"]);

  // Two locked tries, the deletion, then "no such rule" ends the loop.
  assert.equal(calls("iptables-nft -w -t mangle -D PREROUTING -j KNOCKGATE"), 4);
  assert.equal(calls("iptables-nft -w -t mangle -X KNOCKGATE"), 1);
  assert.equal(calls("ip6tables-nft -w -t mangle -X KNOCKGATE"), 0, "no IPv6 chain to delete");
  assert.equal(calls("ipset destroy knockgate-SSH-4"), 3, "the first set destroyed takes the two in-use failures");
  assert.equal(calls("ipset destroy knockgate-allow-4"), 1);
  assert.equal(calls("ipset destroy somebody-else"), 0, "sets that are not ours stay");
  assert.equal(calls("nft delete table inet knockgate"), 2);
  assert.deepEqual(
    warnings.map((w) => [w["event"], w["command"], w["stderr"]]),
    [
      ["firewall_retry", "iptables-nft -w -t mangle -D PREROUTING -j KNOCKGATE", XTABLES_LOCK],
      ["firewall_retry", "iptables-nft -w -t mangle -D PREROUTING -j KNOCKGATE", XTABLES_LOCK],
      ["firewall_retry", "ipset destroy knockgate-SSH-4", SET_IN_USE],
      ["firewall_retry", "ipset destroy knockgate-SSH-4", SET_IN_USE],
      ["firewall_retry", "nft delete table inet knockgate", NFT_BUSY],
    ],
  );
  assert.ok(warnings.every((w) => w["level"] === 40));
});

test("a permanent failure is not retried: it fails at once, with the command and stderr in the message", async () => {
  installed();
  const denied = "ipset v7.17: Kernel error received: Operation not permitted";
  failNext("ipset", 1, 1, denied);
  await assert.rejects(removeEverything(log), (err: Error) => {
    assert.ok(err instanceof FirewallError);
    assert.equal(err.message, `exit code 1: ipset destroy knockgate-SSH-4: ${denied}`);
    return true;
  });
  assert.equal(calls("ipset destroy knockgate-SSH-4"), 1);
  assert.deepEqual(warnings, []);
});

test("retries are bounded: a failure that stays transient gives up after three tries, with a pause before each retry", async () => {
  installed();
  failNext("nft", 99, 1, NFT_BUSY);
  const t0 = Date.now();
  await assert.rejects(removeEverything(log), new RegExp(`nft delete table inet knockgate: ${NFT_BUSY}`));
  assert.equal(calls("nft delete table inet knockgate"), 3);
  assert.deepEqual(warnings.map((w) => w["retry_in_ms"]), [100, 300]);
  assert.ok(Date.now() - t0 >= 400, "the pauses were waited for");
});

const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_INTERFACE: "eth0", KNOCK_FIREWALL: "nftables" });

test("the install at start retries a transient failure; later reconciles do not (the loop comes back anyway)", async () => {
  const firewall = new NftablesFirewall({ config, targets: envTargets(config), planId, run: execRunner, log });
  try {
    failNext("nft", 1, 1, NFT_BUSY);
    assert.deepEqual(await firewall.reconcile("repair"), ["table inet knockgate missing"]);
    assert.equal(calls("nft -f -"), 2);
    assert.equal(warnings.length, 1);

    rmSync(join(dir, "nft.table"));
    failNext("nft", 1, 1, NFT_BUSY);
    await assert.rejects(firewall.reconcile("repair"), new RegExp(NFT_BUSY));
    assert.equal(calls("nft -f -"), 3);
  } finally {
    await firewall.shutdown(false);
  }
});

test("removal waits for a reconcile in flight, which would otherwise put back what removal deletes", async () => {
  const order: string[] = [];
  let release!: () => void;
  const reading = new Promise<void>((resolve) => (release = resolve));
  const run: Runner = async (argv) => {
    const command = argv.join(" ");
    order.push(command);
    if (command.startsWith("nft -t list")) await reading;
    return { code: 0, stdout: "", stderr: "" };
  };
  const firewall = new NftablesFirewall({ config, targets: envTargets(config), planId, run, log });
  try {
    const reconciled = firewall.reconcile("repair");
    const removed = firewall.shutdown(true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(order, ["nft -t list table inet knockgate"], "removal must not start while the reconcile reads");
    release();
    await Promise.all([reconciled, removed]);
    assert.deepEqual(order, ["nft -t list table inet knockgate", "nft -f -", "nft delete table inet knockgate"]);
  } finally {
    await firewall.shutdown(false);
  }
});

test("the pause before a retry runs on the injected clock", async () => {
  const clock = new FakeClock();
  const calls: string[] = [];
  const once: Runner = (argv) => {
    calls.push(argv.join(" "));
    return Promise.resolve(calls.length === 1 ? { stdout: "", stderr: XTABLES_LOCK, code: 4 } : { stdout: "done", stderr: "", code: 0 });
  };
  const result = patientRunner(once, log, [100], clock)(["iptables", "-F", "KNOCKGATE"]);
  await clock.advance(99);
  assert.equal(calls.length, 1, "still pausing");
  await clock.advance(1);
  assert.equal(calls.length, 2, "tried again once the pause is over");
  assert.deepEqual(await result, { stdout: "done", stderr: "", code: 0 });
});

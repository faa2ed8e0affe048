/** Which iptables variant holds the host's rules, and that every reader of iptables rules (Docker's NAT rules too) asks that one. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { natRules } from "../../src/adapters/docker.js";
import { chooseVariant, saveArgv } from "../../src/adapters/firewall/detect.js";
import type { Runner } from "../../src/adapters/firewall/exec.js";

const NAT = "*nat\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n";

/** A host whose `rules` variant has two rules per family and the other none; every call logged. */
function host(rules: "legacy" | "nft") {
  const calls: string[] = [];
  const run: Runner = (argv) => {
    calls.push(argv.join(" "));
    const [tool, ...args] = argv;
    if (args.join(" ") === "-t nat") return Promise.resolve({ code: tool === `iptables-${rules}-save` ? 0 : 1, stdout: NAT, stderr: "" });
    const ours = tool === `iptables-${rules}-save` || tool === `ip6tables-${rules}-save`;
    return Promise.resolve({ code: 0, stdout: ours ? "*filter\n-A INPUT -j ACCEPT\n-A FORWARD -j DOCKER-USER\nCOMMIT\n" : "", stderr: "" });
  };
  return { run, calls };
}

test("Docker's NAT rules are read from the variant that holds the host's rules, detected at the first read only", async () => {
  for (const variant of ["legacy", "nft"] as const) {
    const { run, calls } = host(variant);
    const nat = natRules(run);
    assert.equal(await nat(), NAT);
    assert.equal(await nat(), NAT);
    assert.deepEqual(calls.filter((c) => c.endsWith("-t nat")), [`iptables-${variant}-save -t nat`, `iptables-${variant}-save -t nat`]);
    assert.equal(calls.filter((c) => !c.includes(" -t ")).length, 4, "each variant's two save commands, once");
  }
});

test("the variant with more rules wins, nf_tables on a tie; its save command per family", () => {
  assert.equal(chooseVariant(3, 2), "legacy");
  assert.equal(chooseVariant(2, 2), "nft");
  assert.deepEqual(saveArgv("legacy", "mangle", 6), ["ip6tables-legacy-save", "-t", "mangle"]);
  assert.deepEqual(saveArgv("nft", "nat"), ["iptables-nft-save", "-t", "nat"]);
});

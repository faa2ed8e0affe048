/** The backend-neutral plan (core/firewall/plan.ts) and its id (adapters/firewall/plan-id.ts). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import type { Config } from "../../src/core/types.js";
import { familyRules, type Rule } from "../../src/core/firewall/plan.js";
import { REPLAY_SET_SIZE } from "../../src/core/firewall/spa-plan.js";
import { markerOf, planIdOf, planOf } from "../support/render.js";

const planId = (c: Config) => planIdOf(c);
const planMarker = (c: Config) => markerOf(c);

const SSH = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };

function config(env: Record<string, string> = {}): Config {
  return parseConfig({ ...SSH, ...env });
}

describe("planId", () => {
  test("the plan id is 12 hex digits and the marker carries it", () => {
    const c = config();
    assert.match(planId(c), /^[0-9a-f]{12}$/);
    assert.equal(planMarker(c), `knockgate plan ${planId(c)}`);
  });

  test("the plan id is the same for the same configuration", () => {
    assert.equal(planId(config()), planId(config()));
  });

  test("the plan id changes when a protected port changes", () => {
    assert.notEqual(planId(config()), planId(config({ KNOCK_DOOR_SSH_PORTS: "2222" })));
  });

  test("the plan id changes when a door is added", () => {
    assert.notEqual(planId(config()), planId(config({ KNOCK_DOOR_WEB_SEQUENCE: "1111,2222", KNOCK_DOOR_WEB_PORTS: "443" })));
  });

  test("the plan id covers only rules: OPEN_FOR, SEQ_TIMEOUT, the sequence and the allow list leave it alone", () => {
    const base = planId(config());
    assert.equal(planId(config({ KNOCK_DOOR_SSH_OPEN_FOR: "600" })), base);
    assert.equal(planId(config({ KNOCK_DOOR_SSH_SEQ_TIMEOUT: "9" })), base);
    assert.equal(planId(config({ KNOCK_DOOR_SSH_SEQUENCE: "1,2,3" })), base);
    assert.equal(planId(config({ KNOCK_ALLOW: "10.0.0.0/8" })), base);
  });
});

describe("the plan as data", () => {
  const KEY = { KNOCK_DOOR_SSH_SPA_KEY: Buffer.alloc(32, 1).toString("base64"), KNOCK_DOOR_SSH_SPA_HMAC_KEY: Buffer.alloc(64, 2).toString("base64") };
  const signed = parseConfig({ ...KEY, KNOCK_DOOR_SSH_PORTS: "22,53/udp", KNOCK_DOOR_WEB_SEQUENCE: "1111,2222", KNOCK_DOOR_WEB_PORTS: "443", KNOCK_ALLOW: "192.0.2.7,fd00::/64", KNOCK_MAX_GRANTS: "10" });
  const words = (r: Rule): string => (r.kind === "door" || r.kind === "ports" ? `${r.kind} ${r.door} ${r.match.proto}/${r.match.ports.join(",")}` : r.kind === "drop" ? `drop ${r.match.proto}/${r.match.ports.join(",")}` : r.kind);

  test("each family's rules in order: loopback, established, allow, per door its door-wide then its per-port grants, then the drops", () => {
    for (const f of [4, 6] as const) {
      assert.deepEqual(familyRules(planOf(signed), f).map(words), [
        "loopback",
        "established",
        "allow",
        "door SSH tcp/22",
        "door SSH udp/53",
        "ports SSH tcp/22",
        "ports SSH udp/53",
        "door WEB tcp/443",
        "drop tcp/22,443",
        "drop udp/53",
      ]);
    }
  });

  test("the sets: per family the allow set with its networks, each door's address set and a signed door's per-port set, sized; then the replay sets", () => {
    assert.deepEqual(planOf(signed).sets, [
      { kind: "allow", family: 4, members: ["192.0.2.7/32"] },
      { kind: "door", door: "SSH", family: 4, size: 1034, dynamic: false },
      { kind: "ports", door: "SSH", family: 4, size: 2068 },
      { kind: "door", door: "WEB", family: 4, size: 1034, dynamic: false },
      { kind: "allow", family: 6, members: ["fd00::/64"] },
      { kind: "door", door: "SSH", family: 6, size: 1034, dynamic: false },
      { kind: "ports", door: "SSH", family: 6, size: 2068 },
      { kind: "door", door: "WEB", family: 6, size: 1034, dynamic: false },
      { kind: "replay", door: "SSH", size: REPLAY_SET_SIZE },
    ]);
  });

  test("no rule of the plan names a tool: the backends' words are theirs", () => {
    assert.doesNotMatch(JSON.stringify(planOf(signed)), /knockgate-|KNOCKGATE|-j |--|@|saddr|accept|RETURN/);
  });
});

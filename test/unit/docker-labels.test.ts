/**
 * Reading knockgate's Docker labels from `docker inspect` JSON captured from the real engine
 * (test/fixtures/docker, see its README for the commands that made each container).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { readContainer, type LabelledContainer } from "../../src/core/docker/labels.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const fixture = (name: string): unknown => JSON.parse(readFileSync(`${ROOT}test/fixtures/docker/${name}.json`, "utf8"));
const DOORS = new Set(["SSH", "WEB"]);

function read(name: string, doors: ReadonlySet<string> = DOORS): LabelledContainer {
  const result = readContainer(fixture(name), doors);
  assert.ok(result, `${name} is labelled`);
  return result;
}

/** "HOST/PROTO[families][@ADDRESS]<-CONTAINERPORT" per host port of a door, for compact comparisons. */
const hostPorts = (r: LabelledContainer, door: string): string[] =>
  r.doors
    .find((d) => d.door === door)!
    .hostPorts.map((h) => `${h.port}/${h.proto}[${h.families.join(",")}]${h.hostIp ? `@${h.hostIp}` : ""}<-${h.containerPort.port}/${h.containerPort.proto}`);
const specs = (list: { port: number; proto: string }[]): string[] => list.map((p) => `${p.port}/${p.proto}`);

describe("readContainer on the real engine's JSON", () => {
  test("a started container: IPv4 and IPv6 bindings merge, random and localhost-only UDP ports are read as bound", () => {
    const r = read("running");
    assert.deepEqual(r.container, { name: "kg-fixture-running", id: "4253d5ee98b8" });
    assert.equal(r.running, true);
    assert.deepEqual(
      r.doors.map((d) => d.door),
      ["SSH"],
    );
    assert.deepEqual(hostPorts(r, "SSH"), ["2222/tcp[4,6]<-22/tcp", "8443/tcp[4,6]<-443/tcp", "32768/tcp[4,6]<-80/tcp", "32768/udp[4]@127.0.0.1<-53/udp"]);
    assert.deepEqual(specs(r.doors[0]!.containerPorts), ["22/tcp", "80/tcp", "443/tcp", "53/udp"]);
    assert.deepEqual(r.doors[0]!.addresses, [{ network: "bridge", family: 4, address: "172.17.0.2", prefixLen: 16 }]);
    assert.deepEqual(r.hostPortsAtStart, []);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.doors[0]!.hostPorts[0]!.container, r.container);
  });

  test("a created container: explicit host ports from PortBindings, a random one left for the start", () => {
    const r = read("created");
    assert.equal(r.running, false);
    // "-p 2222:22" has no host IP, so Docker binds both families; "[::]:8443:443" only IPv6.
    assert.deepEqual(hostPorts(r, "SSH"), ["2222/tcp[4,6]<-22/tcp", "8443/tcp[6]<-443/tcp"]);
    assert.deepEqual(specs(r.hostPortsAtStart), ["53/udp"]);
    assert.deepEqual(specs(r.doors[0]!.containerPorts), ["22/tcp", "443/tcp", "53/udp"]);
    assert.deepEqual(r.doors[0]!.addresses, []);
  });

  test("a stopped container is read like a created one: its random ports are gone until it runs again", () => {
    const r = read("exited");
    assert.equal(r.running, false);
    assert.deepEqual(hostPorts(r, "SSH"), ["2222/tcp[4,6]<-22/tcp", "8443/tcp[4,6]<-443/tcp"]);
    assert.deepEqual(specs(r.hostPortsAtStart), ["80/tcp", "53/udp"]);
  });

  test("-P: every exposed port waits for the start, then each family's random port is protected", () => {
    const created = read("publish-all-created");
    assert.deepEqual(hostPorts(created, "WEB"), ["9002/udp[6]@::1<-9002/udp"]);
    assert.deepEqual(specs(created.hostPortsAtStart), ["9000/tcp", "9001/udp"]);
    const started = read("publish-all");
    // The engine gave 9001/udp a different random port on each family.
    assert.deepEqual(hostPorts(started, "WEB"), ["32769/tcp[4,6]<-9000/tcp", "9002/udp[6]@::1<-9002/udp", "32769/udp[6]<-9001/udp", "32770/udp[4]<-9001/udp"]);
    assert.deepEqual(started.hostPortsAtStart, []);
  });

  test("knockgate.doors puts the same ports behind each door", () => {
    const r = read("two-doors");
    assert.deepEqual(
      r.doors.map((d) => d.door),
      ["SSH", "WEB"],
    );
    const expected = ["2223/tcp[4,6]<-22/tcp", "8081/tcp[4,6]<-80/tcp", "32768/udp[6]<-53/udp", "32769/udp[4]<-53/udp"];
    assert.deepEqual(hostPorts(r, "SSH"), expected);
    assert.deepEqual(hostPorts(r, "WEB"), expected);
    assert.deepEqual(r.problems, []);
  });

  test("only doors knockgate has configured are used", () => {
    const r = read("two-doors", new Set(["WEB"]));
    assert.deepEqual(
      r.doors.map((d) => d.door),
      ["WEB"],
    );
    assert.deepEqual(r.problems, ['"SSH" is not a configured door (configured: WEB)']);
  });

  test("knockgate.ports limits protection to those container ports (tcp when no protocol is given)", () => {
    const r = read("ports-filter");
    assert.deepEqual(hostPorts(r, "WEB"), ["8082/tcp[4,6]<-80/tcp", "8444/tcp[4,6]<-443/tcp"]);
    assert.deepEqual(specs(r.doors[0]!.containerPorts), ["80/tcp", "443/tcp"]);
    assert.deepEqual(r.problems, []);
  });

  test("addresses on every network the container is on, IPv6 included", () => {
    const r = read("dual-network");
    assert.deepEqual(r.doors[0]!.addresses, [
      { network: "bridge", family: 4, address: "172.17.0.2", prefixLen: 16 },
      { network: "kg-fixture-net6", family: 4, address: "172.30.99.2", prefixLen: 24 },
      { network: "kg-fixture-net6", family: 6, address: "fd00:6b67::2", prefixLen: 64 },
    ]);
    assert.deepEqual(hostPorts(r, "WEB"), ["8090/tcp[4,6]<-80/tcp", "8091/tcp[6]<-81/tcp"]);
  });

  test("an unlabelled container gives no result", () => {
    assert.equal(readContainer(fixture("unlabelled"), DOORS), null);
  });

  test("bad label values become problems; what is usable still protects", () => {
    const r = read("bad-labels");
    assert.deepEqual(
      r.doors.map((d) => d.door),
      ["SSH", "WEB"],
    );
    assert.deepEqual(hostPorts(r, "SSH"), ["2225/tcp[4,6]<-22/tcp"]);
    assert.deepEqual(r.problems, [
      'knockgate.door="SSH" and knockgate.doors="WEB,nope,lower" disagree; protecting the ports behind each door they name',
      '"nope" is not a configured door (configured: SSH, WEB)',
      '"lower" is not a configured door (configured: SSH, WEB)',
      'knockgate.ports: "99999" is not PORT or PORT/PROTO with a tcp or udp port 1-65535',
      'knockgate.ports: "abc/tcp" is not PORT or PORT/PROTO with a tcp or udp port 1-65535',
      'knockgate.ports: "22/sctp" is not PORT or PORT/PROTO with a tcp or udp port 1-65535',
      "knockgate.ports: the container does not expose 5000/tcp",
    ]);
  });
});

/** The running fixture with its labels replaced. */
function withLabels(labels: unknown): unknown {
  const c = (fixture("running") as Record<string, unknown>[])[0]!;
  return { ...c, Config: { ...(c.Config as object), Labels: labels } };
}

describe("readContainer on label values", () => {
  test("knockgate.door and knockgate.doors that agree are not a problem", () => {
    const r = readContainer(withLabels({ "knockgate.door": "WEB,SSH", "knockgate.doors": "SSH, WEB" }), DOORS)!;
    assert.deepEqual(r.problems, []);
    assert.deepEqual(
      r.doors.map((d) => d.door),
      ["WEB", "SSH"],
    );
  });

  test("door names are matched exactly", () => {
    const r = readContainer(withLabels({ "knockgate.door": "ssh" }), DOORS)!;
    assert.deepEqual(r.doors, []);
    assert.deepEqual(r.problems, ['"ssh" is not a configured door (configured: SSH, WEB)']);
  });

  test("a ports label with no usable entry is ignored as a whole, so every published port stays protected", () => {
    const r = readContainer(withLabels({ "knockgate.door": "SSH", "knockgate.ports": "5000/tcp,x" }), DOORS)!;
    assert.equal(r.doors[0]!.hostPorts.length, 4);
    assert.deepEqual(r.problems.at(-1), 'knockgate.ports="5000/tcp,x" names no port the container exposes; protecting all its published ports');
  });

  test("a ports label without a door label, or an empty door label, is a problem", () => {
    const portsOnly = readContainer(withLabels({ "knockgate.ports": "22/tcp" }), DOORS)!;
    assert.deepEqual(portsOnly.doors, []);
    assert.deepEqual(portsOnly.problems, ["knockgate.ports is set but no knockgate.door or knockgate.doors"]);
    const empty = readContainer(withLabels({ "knockgate.door": " , " }), DOORS)!;
    assert.deepEqual(empty.problems, ["knockgate.door/knockgate.doors name no door"]);
  });

  test("a published port of another protocol is reported, not protected", () => {
    const c = (fixture("running") as Record<string, unknown>[])[0]!;
    const settings = c.NetworkSettings as Record<string, unknown>;
    const ports = { ...(settings.Ports as object), "3868/sctp": [{ HostIp: "0.0.0.0", HostPort: "3868" }] };
    const r = readContainer({ ...c, NetworkSettings: { ...settings, Ports: ports } }, DOORS)!;
    assert.equal(r.doors[0]!.hostPorts.length, 4);
    assert.deepEqual(r.problems, ["published port 3868/sctp is ignored: knockgate guards tcp and udp ports only"]);
  });
});

/** Small deterministic generator so failures replay. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

describe("readContainer on malformed JSON", () => {
  const ATOMS: unknown[] = [null, undefined, 0, -1, 1.5, "", "x", "22/tcp", "::", "0.0.0.0", "SSH", "SSH,WEB", "70000", true, false, [], {}];

  /** Replaces a random node of the value with a random atom or a shuffled sibling shape. */
  function mutate(value: unknown, next: (n: number) => number, depth = 0): unknown {
    if (depth > 0 && next(6) === 0) return ATOMS[next(ATOMS.length)];
    if (Array.isArray(value)) return value.map((v) => mutate(v, next, depth + 1));
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(Object.entries(value).flatMap(([k, v]) => (next(10) === 0 ? [] : [[next(20) === 0 ? "22/tcp" : k, mutate(v, next, depth + 1)]])));
    }
    return next(8) === 0 ? ATOMS[next(ATOMS.length)] : value;
  }

  test("never throws, and gives either null or a well-formed result", () => {
    const sources = ["running", "created", "two-doors", "bad-labels", "publish-all-created", "dual-network"].map(fixture);
    const next = rng(20261201);
    let labelled = 0;
    for (let i = 0; i < 3000; i++) {
      const input = mutate(sources[next(sources.length)], next);
      const r = readContainer(input, DOORS);
      if (r === null) continue;
      labelled++;
      assert.ok(Array.isArray(r.problems) && r.problems.every((p) => typeof p === "string"));
      for (const d of r.doors) {
        assert.ok(DOORS.has(d.door));
        for (const h of d.hostPorts) {
          assert.ok(Number.isInteger(h.port) && h.port >= 1 && h.port <= 65535, `host port ${h.port}`);
          assert.ok(h.proto === "tcp" || h.proto === "udp");
          assert.ok(h.families.length > 0);
        }
      }
    }
    // The mutations must leave enough labelled inputs for the checks above to mean something.
    assert.ok(labelled > 500, `${labelled} labelled inputs`);
  });

  test("inputs that are not containers are not labelled containers", () => {
    for (const input of ATOMS.concat([[{}, {}], { Config: null }, { Config: { Labels: "knockgate.door=SSH" } }, { Config: { Labels: { "knockgate.door": 7 } } }])) {
      const r = readContainer(input, DOORS);
      if (r !== null) assert.deepEqual(r.doors, []);
    }
    assert.deepEqual(readContainer({ Config: { Labels: { "knockgate.door": 7 } } }, DOORS)?.problems, ["knockgate.door is not a string"]);
  });
});

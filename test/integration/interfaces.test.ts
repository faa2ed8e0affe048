/**
 * Interfaces that come and go under a running daemon, with real capture and a real firewall: the
 * watched veth goes down and up, is deleted and made again (a new index), is renamed, or is not
 * there yet at start. The daemon must keep running, fail /readyz while it cannot capture, keep the
 * grants it made, and open for a knock once the interface is back.
 * Needs root (CAP_NET_ADMIN, CAP_NET_RAW): this suite fails rather than skips without it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CLIENT_V4, CLIENT_V6, OTHER_V4, SERVER_V4, removeStaleNamespaces, sleep, withLab, type DaemonProcess, type Lab } from "../support/lab.js";
import { TcpFlag } from "../../src/core/types.js";

const SEQ = "7000,8000,9000";
/** Loopback: the veth's own address goes with it when it is deleted. */
const HTTP = "127.0.0.1:9180";

before(() => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root: run them as root (CI does)");
  removeStaleNamespaces();
});
after(() => removeStaleNamespaces());

/** The daemon's process is still the one started: no abort, no SIGSEGV, no exit. */
function running(daemon: DaemonProcess): void {
  assert.equal(daemon.child.exitCode, null, "the daemon exited");
  assert.equal(daemon.child.signalCode, null, "the daemon was killed by a signal");
}

/**
 * While the interface is gone (`breakIt` done): the daemon says so, keeps running and is not ready.
 * Once it is back (`mendIt` done): ready again, the grant made before still lets CLIENT in, and a
 * knock from another address opens as well.
 */
async function survives(lab: Lab, daemon: DaemonProcess, breakIt: () => void, mendIt: () => void): Promise<void> {
  breakIt();
  await daemon.waitFor("capture_lost");
  await lab.readyzTurns(503, HTTP);
  running(daemon);
  const started = daemon.events("capture_started").length;
  mendIt();
  await daemon.waitFor("capture_started", 5000, () => daemon.events("capture_started").length > started);
  await lab.readyzTurns(200, HTTP);
  running(daemon);
  assert.equal(await lab.canConnect(SERVER_V4), true, "the grant made before the interface went away is still there");
  assert.equal(await lab.canConnect(SERVER_V4, { localAddress: OTHER_V4 }), false);
  await lab.knock(SERVER_V4, SEQ, { localAddress: OTHER_V4 });
  await daemon.waitFor("open", 5000, (l) => l["src"] === OTHER_V4);
  assert.equal(await lab.canConnect(SERVER_V4, { localAddress: OTHER_V4 }), true, "a knock after the interface came back opens");
  assert.equal(daemon.events("ready").length, 1, "`ready` is said once");
}

for (const backend of ["iptables", "nftables"] as const) {
  describe(`${backend} backend`, { concurrency: false }, () => {
    const env = { KNOCK_DOOR_SSH_SEQUENCE: SEQ, KNOCK_DOOR_SSH_OPEN_FOR: "300", KNOCK_FIREWALL: backend, KNOCK_HTTP_ADDR: HTTP };

    /** A daemon protecting the lab's service, and a grant for CLIENT made before anything breaks. */
    const knocked = async (lab: Lab): Promise<DaemonProcess> => {
      await lab.startService();
      const daemon = await lab.startDaemon(env);
      await lab.knock(SERVER_V4, SEQ);
      await daemon.waitFor("open");
      assert.equal(await lab.canConnect(SERVER_V4), true);
      return daemon;
    };

    test("the interface goes down and comes up again", () =>
      withLab(async (lab) => {
        const daemon = await knocked(lab);
        await survives(
          lab,
          daemon,
          () => lab.setServerLink(lab.serverIface, "down"),
          () => lab.setServerLink(lab.serverIface, "up"),
        );
        assert.equal(daemon.events("capture_lost")[0]?.["reason"], "interface is down");
      }));

    test("the interface is deleted and made again under its name, with a new index", () =>
      withLab(async (lab) => {
        const daemon = await knocked(lab);
        await survives(
          lab,
          daemon,
          () => lab.removeLink(),
          () => lab.addLink(),
        );
      }));

    test("the interface is renamed, then renamed back", () =>
      withLab(async (lab) => {
        const daemon = await knocked(lab);
        await survives(
          lab,
          daemon,
          () => {
            lab.setServerLink(lab.serverIface, "down");
            lab.setServerLink(lab.serverIface, "name", "kgs9");
            lab.setServerLink("kgs9", "up");
          },
          () => {
            lab.setServerLink("kgs9", "down");
            lab.setServerLink("kgs9", "name", lab.serverIface);
            lab.setServerLink(lab.serverIface, "up");
          },
        );
      }));

    test("the interface does not exist at start: not ready, no `ready` line, until it is made", () =>
      withLab(async (lab) => {
        await lab.startService();
        lab.removeLink();
        const daemon = await lab.startDaemon(env, false);
        await daemon.waitFor("firewall_installed");
        await lab.readyzTurns(503, HTTP);
        assert.equal(daemon.events("ready").length, 0, "`ready` while the interface is missing");
        assert.equal(daemon.events("capture_waiting").length, 1);
        lab.addLink();
        await daemon.waitFor("ready");
        await lab.readyzTurns(200, HTTP);
        running(daemon);
        assert.equal(await lab.canConnect(SERVER_V4), false);
        await lab.knock(SERVER_V4, SEQ);
        await daemon.waitFor("open");
        assert.equal(await lab.canConnect(SERVER_V4), true);
      }));

    test("without KNOCK_INTERFACE the captures follow the default routes of both families as they move", () =>
      withLab(async (lab) => {
        const at = async (...argv: string[]) => assert.equal((await lab.exec(lab.server, argv)).code, 0, argv.join(" "));
        await at("ip", "route", "add", "default", "via", CLIENT_V4);
        await at("ip", "-6", "route", "add", "default", "via", CLIENT_V6);
        // A second way out (a veth pair inside the server namespace: this kernel may lack dummy).
        await at("ip", "link", "add", "kgd0", "type", "veth", "peer", "name", "kgd1");
        for (const iface of ["kgd0", "kgd1"]) await at("ip", "link", "set", iface, "up");
        await lab.startService();
        const daemon = await lab.startDaemon({ ...env, KNOCK_INTERFACE: undefined });
        const watched = async () => [...(await lab.readyzTurns(200, HTTP)).body.matchAll(/"capture:([^"]+)"/g)].map((m) => m[1]);
        const moved = async (to: string[]) => {
          await daemon.waitFor("interfaces_changed", 5000, (l) => JSON.stringify(l["to"]) === JSON.stringify(to));
          await daemon.waitFor("capture_started", 5000, (l) => l["iface"] === to[0]);
          assert.deepEqual(await watched(), to);
        };
        assert.deepEqual(await watched(), [lab.serverIface]);
        await at("ip", "route", "replace", "default", "dev", "kgd0");
        await moved(["kgd0", lab.serverIface]);
        await at("ip", "-6", "route", "replace", "default", "dev", "kgd0");
        await moved(["kgd0"]);
        await at("ip", "route", "replace", "default", "via", CLIENT_V4);
        await at("ip", "-6", "route", "replace", "default", "via", CLIENT_V6);
        await moved([lab.serverIface]);
        running(daemon);
        await lab.knock(SERVER_V4, SEQ);
        await daemon.waitFor("open");
        assert.equal(await lab.canConnect(SERVER_V4), true);
      }));
  });
}

describe("captures reopened again and again", () => {
  test("40 flaps of the watched interface while connections to the daemon come and go: the daemon is still the one started, and a knock opens", { timeout: 240_000 }, () =>
    withLab(async (lab) => {
      await lab.startService();
      // The HTTP server on the veth's address: each connection is a handle opened and closed in the
      // daemon's event loop, beside the closed captures' (a collected one corrupted the heap).
      const daemon = await lab.startDaemon({ KNOCK_DOOR_SSH_SEQUENCE: SEQ, KNOCK_HTTP_ADDR: `${SERVER_V4}:9180` });
      let churning = true;
      const churn = (async () => {
        while (churning) await lab.call({ op: "connect", host: SERVER_V4, port: 9180, timeoutMs: 100 });
      })();
      // Frames the filter passes keep the capture reading when the link goes down: libpcap's own
      // poll inside a read can then take the socket's ENETDOWN, and no "error" event follows.
      const macs = await lab.linkMacs();
      const ack = { ...macs, src: CLIENT_V4, dst: SERVER_V4, proto: "tcp" as const, srcPort: 40000, dstPort: 7000, flags: TcpFlag.ack };
      const flood = (async () => {
        // While the link is down the client's sends fail (ENOBUFS): the flood pauses a little and goes on.
        while (churning) await lab.call({ op: "raw", iface: lab.clientIface, frames: Array.from({ length: 200 }, () => ack) }).catch(() => sleep(5));
      })();
      try {
        for (let i = 1; i <= 40; i++) {
          lab.setServerLink(lab.serverIface, "down");
          await daemon.waitFor("capture_lost", 5000, () => daemon.events("capture_lost").length >= i);
          lab.setServerLink(lab.serverIface, "up");
          await daemon.waitFor("capture_started", 5000, () => daemon.events("capture_started").length > i);
          running(daemon);
        }
      } finally {
        churning = false;
        await Promise.all([churn, flood]);
      }
      running(daemon);
      await lab.knock(SERVER_V4, SEQ);
      await daemon.waitFor("open");
      assert.equal(await lab.canConnect(SERVER_V4), true);
    }));
});

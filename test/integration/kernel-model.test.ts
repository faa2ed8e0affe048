/**
 * The kernel engine's model test on the real kernel: random knock streams (test/support/knock-streams.ts)
 * go out as raw frames at their times into a server namespace whose nftables rules the daemon
 * compiled; what the kernel completes (the daemon's audit lines of its reports) must be what the
 * capture engine's machine completes from the same knocks at the times they were sent. The unit
 * model test holds the compiled program to the machine; this one holds the kernel to the program.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { parseConfig } from "../../src/config/config.js";
import { TcpFlag } from "../../src/core/types.js";
import { attemptStream, machineCompletions, type StreamKnock } from "../support/knock-streams.js";
import { removeStaleNamespaces, SERVER_V4, SERVER_V6, sleep, withLab, type DaemonProcess } from "../support/lab.js";

const ENV = {
  KNOCK_ENGINE: "kernel",
  KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
  KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9000,8000",
  // Longer than the repeat window, so that a late repeat can decide a completion.
  KNOCK_DOOR_SSH_SEQ_TIMEOUT: "4",
  KNOCK_DOOR_MIX_SEQUENCE: "7000,6000:udp",
  KNOCK_DOOR_MIX_SEQ_TIMEOUT: "4",
  KNOCK_DOOR_MIX_PORTS: "2223/tcp",
};
/** Spoofed from the client's link: the kernel's rules look at nothing but the packet. Interleaved, they test per-source state. */
const SOURCES = ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.1.9", "fd00:198:18::2", "fd00:198:18::3"];
/** Knocks per stream, 40 per source: 40-60 s and 60-80 completions each. */
const KNOCKS = 240;
/**
 * A knock whose attempt's age is this close to a timeout (as a fraction of it: 20 ms of 4 s) could
 * go either way: the kernel's clock ticks in jiffies (4 ms at HZ=250) and the frame takes tens of
 * microseconds on the wire. Such a stream is not compared; the next seed is tried.
 */
const MARGIN = 0.005;

before(() => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root");
  removeStaleNamespaces();
});
after(() => removeStaleNamespaces());

/** The completions the kernel reported since line `from`, as "DOOR kind src", sorted. */
function reported(daemon: DaemonProcess, from: number): string[] {
  return daemon.logs
    .slice(from)
    .flatMap((l) => {
      if (l["event"] === "open") return [`${String(l["door"])} open ${String(l["src"])}`];
      if ((l["event"] === "close" && l["reason"] === "close_sequence") || l["event"] === "close_ignored") return [`${String(l["door"])} close ${String(l["src"])}`];
      return [];
    })
    .sort();
}

/** The machine's completions, or null when stretching the stream's times by the margin changes them. */
function expected(doors: ReturnType<typeof parseConfig>["doors"], sent: readonly StreamKnock[]): string[] | null {
  const at = (scale: number) => machineCompletions(doors, sent.map((k) => ({ ...k, at: k.at * scale }))).sort();
  const exact = at(1);
  for (const scale of [1 - MARGIN, 1 - MARGIN / 2, 1 + MARGIN / 2, 1 + MARGIN]) if (JSON.stringify(at(scale)) !== JSON.stringify(exact)) return null;
  return exact;
}

test("random knock streams through the kernel's rules complete what the capture engine's machine completes", (t) =>
  withLab(async (lab) => {
    const doors = parseConfig({ ...ENV, KNOCK_INTERFACE: lab.serverIface }).doors;
    const daemon = await lab.startDaemon(ENV);
    const macs = await lab.linkMacs();
    let compared = 0;
    let completions = 0;
    for (let seed = 1; seed <= 6 && compared < 2; seed++) {
      const stream = attemptStream(seed, doors, SOURCES, KNOCKS);
      const from = daemon.logs.length;
      const frames = stream.map((k) => ({
        ...macs,
        at: k.at,
        src: k.src,
        dst: k.src.includes(":") ? SERVER_V6 : SERVER_V4,
        proto: k.proto,
        srcPort: 40000,
        dstPort: k.port,
        ...(k.proto === "tcp" ? { flags: TcpFlag.syn } : {}),
      }));
      const { sentAt } = await lab.call<{ sentAt: number[] }>({ op: "raw-timed", iface: lab.clientIface, frames });
      // The last reports reach the daemon; then every attempt's state has timed out before the next stream.
      await sleep(4500);
      const want = expected(doors, stream.map((k, i) => ({ ...k, at: sentAt[i] ?? k.at })));
      t.diagnostic(`seed ${seed}: ${want === null ? "a knock at a timeout's edge, not compared" : `${want.length} completions`}`);
      if (want === null) continue;
      assert.deepEqual(reported(daemon, from), want, `seed ${seed}`);
      compared++;
      completions += want.length;
    }
    assert.ok(compared >= 1, "every stream had a knock too close to a timeout to compare");
    // The streams do reach completions, of both kinds.
    assert.ok(completions >= 10, `only ${completions} completions`);
  }));

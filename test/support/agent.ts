/**
 * The client side of the namespace tests: a long-lived process inside the client namespace that
 * knocks, connects and holds sessions on request (JSON lines on stdin, one JSON reply per line).
 * One process per test avoids a Node start-up per probe.
 */
import { createRequire } from "node:module";
import { createSocket } from "node:dgram";
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { knock, waitForPort } from "../../src/cli/knock-client.js";
import type { PortSpec } from "../../src/core/types.js";
import { buildFrame, macBytes, type FrameSpec } from "./frames.js";
import { tryConnect } from "./connect.js";

export type Request =
  | { op: "knock"; host: string; ports: PortSpec[]; delayMs?: number; localAddress?: string }
  | { op: "connect"; host: string; port: number; timeoutMs: number; localAddress?: string }
  | { op: "session-open"; host: string; port: number; localAddress?: string }
  | { op: "session-echo"; session: number; data: string }
  | { op: "raw"; iface: string; frames: RawFrame[] }
  /** Each frame at its time (ms from the call); replies with when each went out, on the same clock. */
  | { op: "raw-timed"; iface: string; frames: (RawFrame & { at: number })[] }
  | { op: "knock-to-open"; host: string; ports: PortSpec[]; port: number; localAddress: string; probeEveryMs: number; timeoutMs: number }
  /** One UDP datagram whose payload is `data` (latin1 text, as SPA datagrams are). */
  | { op: "udp"; host: string; port: number; data: string; localAddress?: string };

type RawFrame = Omit<FrameSpec, "srcMac" | "dstMac"> & { srcMac: string; dstMac: string };
const built = (f: RawFrame): Buffer => buildFrame({ ...f, srcMac: macBytes(f.srcMac), dstMac: macBytes(f.dstMac) });

/** Sends each frame at its time: a timer to within 2 ms of it, then a spin, so the times are exact to a few microseconds. */
async function sendTimed(iface: string, frames: readonly (RawFrame & { at: number })[]): Promise<number[]> {
  const cap = rawSender(iface);
  const wire = frames.map(built);
  const sentAt: number[] = [];
  const start = performance.now();
  for (const [i, frame] of wire.entries()) {
    const due = start + (frames[i]?.at ?? 0);
    const wait = due - performance.now() - 2;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    while (performance.now() < due);
    sentAt.push(performance.now() - start);
    cap.send(frame, frame.length);
  }
  return sentAt;
}

const sessions = new Map<number, Socket>();
let nextSession = 1;

/**
 * Knocks, then starts a new connect every probeEveryMs until one is accepted: the time from the
 * last knock sent to that accept is the knock-to-open latency (probe resolution: probeEveryMs).
 */
async function knockToOpen(r: Extract<Request, { op: "knock-to-open" }>): Promise<number | null> {
  await knock({ host: r.host, sequence: r.ports, delayMs: 0, localAddress: r.localAddress });
  const t0 = performance.now();
  const socket = await waitForPort(r.host, r.port, {
    timeoutMs: r.timeoutMs,
    everyMs: r.probeEveryMs,
    abandonAfterMs: 50,
    localAddress: r.localAddress,
  });
  socket?.destroy();
  return socket ? performance.now() - t0 : null;
}

interface RawSender {
  open(d: string, f: string, n: number, b: Buffer): string;
  send(b: Buffer, n?: number): void;
}
const rawSenders = new Map<string, RawSender>();

/**
 * One pcap handle per interface for the agent's life, never closed: an agent once died of a signal
 * right after a raw burst, and closing a cap handle while its read callback may still fire is the
 * one native teardown here.
 */
function rawSender(iface: string): RawSender {
  let cap = rawSenders.get(iface);
  if (!cap) {
    const { Cap } = createRequire(import.meta.url)("cap") as { Cap: new () => RawSender };
    cap = new Cap();
    // Only sending: a filter for an unused EtherType keeps the handle from receiving anything.
    cap.open(iface, "ether proto 0x88b5", 1 << 20, Buffer.alloc(65535));
    rawSenders.set(iface, cap);
  }
  return cap;
}

async function handle(r: Request): Promise<unknown> {
  switch (r.op) {
    case "knock":
      await knock({ host: r.host, sequence: r.ports, delayMs: r.delayMs ?? 0, ...(r.localAddress ? { localAddress: r.localAddress } : {}) });
      return { ok: true };
    case "connect":
      return { ok: await tryConnect(r.host, r.port, r.timeoutMs, r.localAddress) };
    case "session-open": {
      const s = connect({ host: r.host, port: r.port, ...(r.localAddress ? { localAddress: r.localAddress } : {}) });
      await new Promise<void>((resolve, reject) => {
        s.once("connect", resolve);
        s.once("error", reject);
        setTimeout(() => reject(new Error("session connect timed out")), 2000).unref();
      });
      s.setEncoding("utf8");
      const id = nextSession++;
      sessions.set(id, s);
      return { session: id };
    }
    case "session-echo": {
      const s = sessions.get(r.session);
      if (!s) throw new Error(`no session ${r.session}`);
      const reply = new Promise<string>((resolve, reject) => {
        s.once("data", (d: string) => resolve(d));
        s.once("error", reject);
        setTimeout(() => reject(new Error("no echo within 2 s")), 2000).unref();
      });
      s.write(r.data);
      return { data: await reply };
    }
    case "raw": {
      const cap = rawSender(r.iface);
      for (const frame of r.frames.map(built)) cap.send(frame, frame.length);
      return { sent: r.frames.length };
    }
    case "raw-timed":
      return { sentAt: await sendTimed(r.iface, r.frames) };
    case "knock-to-open":
      return { ms: await knockToOpen(r) };
    case "udp": {
      const socket = createSocket(r.host.includes(":") ? "udp6" : "udp4");
      if (r.localAddress) await new Promise<void>((resolve) => socket.bind({ address: r.localAddress }, resolve));
      await new Promise<void>((resolve, reject) => socket.send(Buffer.from(r.data, "latin1"), r.port, r.host, (err) => (err ? reject(err) : resolve())));
      socket.close();
      return { ok: true };
    }
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const { id, ...request } = JSON.parse(line) as Request & { id: number };
  handle(request as Request).then(
    (result) => process.stdout.write(JSON.stringify({ id, result }) + "\n"),
    (err: Error) => process.stdout.write(JSON.stringify({ id, error: err.message }) + "\n"),
  );
});
lines.on("close", () => process.exit(0));

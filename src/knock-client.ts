/** The knocking side: one TCP SYN (a connect that is abandoned) or one UDP datagram per port, in order. */
import { createSocket } from "node:dgram";
import { connect, isIP, type Socket } from "node:net";
import type { PortSpec } from "./types.js";

export interface KnockOptions {
  host: string;
  sequence: readonly PortSpec[];
  /** Pause between knocks. */
  delayMs: number;
  onKnock?: (p: PortSpec) => void;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Node issues connect(2) on the next tick for an IP host; the kernel sends the SYN inside it. */
async function sendSyn(host: string, port: number): Promise<void> {
  const socket = connect({ host, port });
  socket.on("error", () => undefined); // a refused or reset knock is expected
  await tick();
  socket.destroy();
}

function sendDatagram(host: string, port: number): Promise<void> {
  const socket = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
  return new Promise((resolve, reject) => {
    socket.send(Buffer.alloc(0), port, host, (err) => {
      socket.close();
      if (err) reject(err);
      else resolve();
    });
  });
}

export async function knock(options: KnockOptions): Promise<void> {
  if (isIP(options.host) === 0) throw new Error(`"${options.host}" is not an IP address (resolve it first)`);
  for (const [i, p] of options.sequence.entries()) {
    if (i > 0 && options.delayMs > 0) await sleep(options.delayMs);
    if (p.proto === "tcp") await sendSyn(options.host, p.port);
    else await sendDatagram(options.host, p.port);
    options.onKnock?.(p);
  }
}

/** Tries to connect every `everyMs` until one attempt succeeds; returns the connected socket or null. */
export async function waitForPort(host: string, port: number, timeoutMs: number, everyMs = 50): Promise<Socket | null> {
  const attempts: Socket[] = [];
  return new Promise((resolve) => {
    let done = false;
    const finish = (winner: Socket | null) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(deadline);
      for (const s of attempts) if (s !== winner) s.destroy();
      resolve(winner);
    };
    const attempt = () => {
      const s = connect({ host, port });
      attempts.push(s);
      s.once("connect", () => finish(s));
      s.on("error", () => undefined);
    };
    // New attempts rather than waiting on one: a dropped SYN is only retried by the kernel after 1 s.
    const timer = setInterval(attempt, everyMs);
    const deadline = setTimeout(() => finish(null), timeoutMs);
    attempt();
  });
}

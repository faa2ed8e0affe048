/** The knocking side: one TCP SYN (a connect that is abandoned) or one UDP datagram per port, in order. */
import { createSocket } from "node:dgram";
import { connect, isIP, type Socket } from "node:net";
import type { PortSpec } from "../core/types.js";

export interface KnockOptions {
  host: string;
  sequence: readonly PortSpec[];
  /** Pause between knocks. */
  delayMs: number;
  /** Source address to knock from (default: chosen by routing). */
  localAddress?: string;
  onKnock?: (p: PortSpec) => void;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Node issues connect(2) on the next tick for an IP host; the kernel sends the SYN inside it. */
async function sendSyn(host: string, port: number, localAddress?: string): Promise<void> {
  const socket = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
  socket.on("error", () => undefined); // a refused or reset knock is expected
  await tick();
  socket.destroy();
}

function sendDatagram(host: string, port: number, localAddress?: string): Promise<void> {
  const socket = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
  return new Promise((resolve, reject) => {
    if (localAddress) socket.bind({ address: localAddress, port: 0 });
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
    if (p.proto === "tcp") await sendSyn(options.host, p.port, options.localAddress);
    else await sendDatagram(options.host, p.port, options.localAddress);
    options.onKnock?.(p);
  }
}

export interface WaitOptions {
  timeoutMs: number;
  /** A new attempt this often (default 50 ms). */
  everyMs?: number;
  /** Attempts still pending after this long are abandoned, which bounds open sockets (default: keep). */
  abandonAfterMs?: number;
  localAddress?: string;
}

/**
 * Starts a connect every `everyMs` until one is accepted; returns that socket, or null at the
 * deadline. New attempts rather than one: the kernel retries a dropped SYN only after 1 s.
 */
export function waitForPort(host: string, port: number, options: WaitOptions): Promise<Socket | null> {
  const attempts = new Set<Socket>();
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
      const s = connect({ host, port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
      attempts.add(s);
      s.once("connect", () => finish(s));
      s.on("error", () => attempts.delete(s));
      if (options.abandonAfterMs !== undefined) {
        setTimeout(() => {
          if (done) return;
          s.destroy();
          attempts.delete(s);
        }, options.abandonAfterMs).unref();
      }
    };
    const timer = setInterval(attempt, options.everyMs ?? 50);
    const deadline = setTimeout(() => finish(null), options.timeoutMs);
    attempt();
  });
}

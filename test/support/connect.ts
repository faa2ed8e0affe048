import { connect } from "node:net";

/** Resolves true if a connection is accepted within timeoutMs; a dropped SYN just times out. */
export function tryConnect(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

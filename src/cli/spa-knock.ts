/**
 * The signed-door side of `knockgate knock`: one SPA datagram, built as the fwknop client builds it
 * (core/spa/encode.ts) from fresh randomness and the clock, sent over UDP.
 */
import { randomBytes, randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { isIP } from "node:net";
import { userInfo } from "node:os";
import { accessPlaintext, encodeSpa } from "../core/spa/encode.js";
import type { SpaKeys } from "../core/spa/verify.js";
import { SALT_LENGTH } from "../core/spa/wire.js";
import type { PortSpec } from "../core/types.js";

export interface SpaKnock {
  /** The server, as an IP address. */
  host: string;
  spaPort: number;
  keys: SpaKeys;
  /** The address to open for; "0.0.0.0" for the datagram's source (fwknop -s). */
  address: string;
  ports: readonly PortSpec[];
  username: string;
  /** fwknop -f; null leaves the grant's length to the server. */
  clientTimeoutS: number | null;
}

/** 16 random decimal digits, libfko's RAND (randomInt's range stops at 2^48, so two halves). */
const randomDigits = (): string => `${randomInt(1e8)}`.padStart(8, "0") + `${randomInt(1e8)}`.padStart(8, "0");

/** The datagram's payload for `k`, stamped now with fresh salt and digits. */
export function spaPayload(k: SpaKnock, nowMs = Date.now()): string {
  const plaintext = accessPlaintext({
    rand: randomDigits(),
    username: k.username,
    timestamp: Math.floor(nowMs / 1000),
    address: k.address,
    ports: k.ports,
    clientTimeoutS: k.clientTimeoutS,
  });
  return encodeSpa(plaintext, k.keys, randomBytes(SALT_LENGTH));
}

/** Sends one SPA datagram; resolves once the kernel has taken it. */
export function sendSpa(k: SpaKnock): Promise<void> {
  const payload = Buffer.from(spaPayload(k), "latin1");
  const socket = createSocket(isIP(k.host) === 6 ? "udp6" : "udp4");
  return new Promise((resolve, reject) => {
    socket.send(payload, k.spaPort, k.host, (err) => {
      socket.close();
      if (err) reject(err);
      else resolve();
    });
  });
}

/**
 * The address this machine sends from towards `host`: what the server sees unless a NAT is in
 * between. Connecting a UDP socket only asks the routing table; nothing is sent.
 */
export function localAddressTowards(host: string, port: number): Promise<string> {
  const socket = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
  return new Promise((resolve, reject) => {
    socket.once("error", (err) => {
      socket.close();
      reject(err);
    });
    socket.connect(port, host, () => {
      const { address } = socket.address();
      socket.close();
      resolve(address);
    });
  });
}

/** The login name the fwknop client puts in the message when not given -U. */
export function loginName(env: Record<string, string | undefined>): string {
  try {
    return userInfo().username;
  } catch {
    // No passwd entry for the uid (a container's arbitrary user): fall back as libfko does.
    return env["USER"] ?? env["LOGNAME"] ?? "NO_USER";
  }
}

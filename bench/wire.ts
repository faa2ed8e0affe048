/**
 * Fast raw SYN frames for the benchmark's senders: one reusable buffer per family, patched in place
 * (source, ports, flags) with both checksums recomputed. test/support/frames.ts builds a fresh frame
 * per call, which is fine for tests but too slow for a 50k pps flood from one Node process.
 * Also the address plan of the bench lab, so every sender and checker agrees on it.
 */
import { isIPv4 } from "node:net";
import { ipBytes, macBytes } from "../test/support/frames.js";

/** Server side of the veth: 198.18.0.1/20 and fd00:198:18::1/64. */
export const SERVER_V4 = "198.18.0.1";
export const SERVER_V6 = "fd00:198:18::1";
export const CLIENT_V4 = "198.18.0.2";
export const CLIENT_V6 = "fd00:198:18::2";
export const SERVER_PREFIX_V4 = 20;
/** Protected service and an unrelated open port (for the per-connection cost measurement). */
export const SERVICE_PORT = 22;
export const UNRELATED_PORT = 8080;
export const HTTP_PORT = 9180;
export const KNOCK_PORTS = [7000, 8000, 9000] as const;

/** Legitimate client addresses (really on the client veth): 198.18.1.0 .. 198.18.15.255. */
export const LEGIT_V4_MAX = 15 * 256 - 2;
export function legitV4(i: number): string {
  const n = 256 + 1 + (i % LEGIT_V4_MAX);
  return `198.18.${n >> 8}.${n & 255}`;
}
/** The networks of the legitimate clients (and of the server and client addresses), none of the spoofed sources. */
export const LEGIT_NET_V4 = "198.18.0.0/20";
export const LEGIT_NET_V6 = "fd00:198:18::/64";
/** Legitimate IPv6 client addresses: fd00:198:18::1:1 .. */
export function legitV6(i: number): string {
  return `fd00:198:18::1:${(1 + (i % 0xfffe)).toString(16)}`;
}

/**
 * Spoofed IPv4 sources: 198.18.16.0 .. 198.19.255.255 (everything in 198.18.0.0/15 outside the
 * server's /20). The server has a blackhole route for them, so its replies go nowhere (no ARP).
 */
export const SPOOF_V4_FIRST = (198 << 24) | (18 << 16) | (16 << 8);
export const SPOOF_V4_COUNT = (1 << 17) - (1 << 12);
export function isSpoofedV4(addr: string): boolean {
  const parts = addr.split(".").map(Number);
  if (parts.length !== 4 || parts[0] !== 198) return false;
  return (parts[1] === 18 && (parts[2] ?? 0) >= 16) || parts[1] === 19;
}
/**
 * Spoofed IPv6 sources: fd00:198:18:8000::/49, 32,768 /64s (blackholed on the server). A /48 rather
 * than one /64: a sweep from one /64 is held to KNOCK_MAX_TRACKED_PER_PREFIX attempts and never
 * reaches the table's bound, which is what the sweep measures. The legitimate clients' /64
 * (fd00:198:18::/64) is not among them.
 */
export const SPOOF_V6_PREFIX = "fd00:198:18:8000::/49";
export function isSpoofedV6(addr: string): boolean {
  return /^fd00:198:18:[89a-f][0-9a-f]{3}:/i.test(addr);
}
export function isSpoofed(addr: string): boolean {
  return isIPv4(addr) ? isSpoofedV4(addr) : isSpoofedV6(addr);
}
/** Grant-scale sources: 198.19.0.1 + i (inside the spoofed range). */
export function grantSourceV4(i: number): number {
  return ((198 << 24) | (19 << 16)) + 1 + i;
}

export function v4Text(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

const TCP_SYN = 0x02;

function sum16(buf: Buffer, start: number, end: number, acc: number): number {
  for (let i = start; i < end; i += 2) acc += (buf[i]! << 8) | buf[i + 1]!;
  return acc;
}
function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** One Ethernet+IPv4/IPv6+TCP SYN frame, rewritten in place for each packet. */
export class SynFrame {
  readonly buf: Buffer;
  readonly v4: boolean;
  private readonly ip = 14;
  private readonly tcp: number;
  /** Checksum contribution of the fixed pseudo-header part (destination, protocol, length). */
  private readonly pseudoFixed: number;

  constructor(srcMac: string, dstMac: string, dst: string) {
    this.v4 = isIPv4(dst);
    this.tcp = this.ip + (this.v4 ? 20 : 40);
    const buf = Buffer.alloc(this.tcp + 20);
    macBytes(dstMac).copy(buf, 0);
    macBytes(srcMac).copy(buf, 6);
    buf.writeUInt16BE(this.v4 ? 0x0800 : 0x86dd, 12);
    const d = ipBytes(dst);
    if (this.v4) {
      buf[14] = 0x45;
      buf.writeUInt16BE(40, 16);
      buf[22] = 64;
      buf[23] = 6;
      d.copy(buf, 30);
    } else {
      buf[14] = 0x60;
      buf.writeUInt16BE(20, 18);
      buf[20] = 6;
      buf[21] = 64;
      d.copy(buf, 38);
    }
    const t = this.tcp;
    buf.writeUInt32BE(0x01020304, t + 4);
    buf[t + 12] = 5 << 4;
    buf[t + 13] = TCP_SYN;
    buf.writeUInt16BE(64240, t + 14);
    this.buf = buf;
    let acc = sum16(d, 0, d.length, 0);
    acc += 6 + 20;
    this.pseudoFixed = acc;
  }

  /** IPv4 source as a 32-bit number. */
  setV4(src: number, sport: number, dport: number, flags = TCP_SYN, ipId = 0): Buffer {
    const b = this.buf;
    b.writeUInt32BE(src >>> 0, 26);
    b.writeUInt16BE(ipId & 0xffff, 18);
    b.writeUInt16BE(0, 24);
    b.writeUInt16BE(fold(sum16(b, 14, 34, 0)), 24);
    return this.finishTcp(sport, dport, flags, sum16(b, 26, 30, this.pseudoFixed));
  }

  /** IPv6 source given as 16 bytes. */
  setV6(src: Uint8Array, sport: number, dport: number, flags = TCP_SYN): Buffer {
    const b = this.buf;
    b.set(src, 22);
    return this.finishTcp(sport, dport, flags, sum16(b, 22, 38, this.pseudoFixed));
  }

  /** Either family from text (slow path, for the legitimate knocker). */
  setText(src: string, sport: number, dport: number): Buffer {
    if (this.v4) {
      const p = ipBytes(src);
      return this.setV4(p.readUInt32BE(0), sport, dport);
    }
    return this.setV6(ipBytes(src), sport, dport);
  }

  private finishTcp(sport: number, dport: number, flags: number, acc: number): Buffer {
    const b = this.buf;
    const t = this.tcp;
    b.writeUInt16BE(sport, t);
    b.writeUInt16BE(dport, t + 2);
    b[t + 13] = flags;
    b.writeUInt16BE(0, t + 16);
    b.writeUInt16BE(fold(sum16(b, t, t + 20, acc)), t + 16);
    return b;
  }
}

/** fwknop's default SPA port, for the signed-door contenders. */
export const SPA_PORT = 62201;

const B64_ALPHABET = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "latin1");

/**
 * One Ethernet+IPv4+UDP frame with room for a 1500-byte payload, rewritten in place: the signed-door
 * counterpart of SynFrame. The UDP checksum is 0, "none", which IPv4 allows.
 */
export class UdpFrame {
  readonly buf: Buffer;
  private static readonly UDP = 14 + 20;
  private static readonly DATA = 14 + 20 + 8;

  constructor(srcMac: string, dstMac: string, dst: string) {
    if (!isIPv4(dst)) throw new Error("UdpFrame is IPv4 only");
    const buf = Buffer.alloc(UdpFrame.DATA + 1500);
    macBytes(dstMac).copy(buf, 0);
    macBytes(srcMac).copy(buf, 6);
    buf.writeUInt16BE(0x0800, 12);
    buf[14] = 0x45;
    buf[22] = 64;
    buf[23] = 17;
    ipBytes(dst).copy(buf, 30);
    this.buf = buf;
  }

  /** Source as a 32-bit number; the payload is already in place from offset 42 (see payload()). Returns the frame length. */
  set(src: number, sport: number, dport: number, payloadLength: number, ipId = 0): number {
    const b = this.buf;
    b.writeUInt16BE(20 + 8 + payloadLength, 16);
    b.writeUInt16BE(ipId & 0xffff, 18);
    b.writeUInt32BE(src >>> 0, 26);
    b.writeUInt16BE(0, 24);
    b.writeUInt16BE(fold(sum16(b, 14, 34, 0)), 24);
    b.writeUInt16BE(sport, UdpFrame.UDP);
    b.writeUInt16BE(dport, UdpFrame.UDP + 2);
    b.writeUInt16BE(8 + payloadLength, UdpFrame.UDP + 4);
    b.writeUInt16BE(0, UdpFrame.UDP + 6);
    return UdpFrame.DATA + payloadLength;
  }

  /** Where the payload goes. */
  payload(): Buffer {
    return this.buf.subarray(UdpFrame.DATA);
  }

  /** Fills the first `length` payload bytes with random base64 text: what a forged SPA datagram looks like. */
  randomB64(rng: Rng, length: number): void {
    const p = this.payload();
    for (let i = 0; i < length; i++) p[i] = B64_ALPHABET[rng.next() & 63]!;
  }
}

/** xorshift32: fast, seeded, good enough for spreading spoofed sources and ports. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

/**
 * What the client agent's listener makes of a frame: a knock that ends an attempt (a SYN to
 * `lastKnockPort`, or a datagram to SPA_PORT), by its source; a SYN-ACK, by the port it goes to (a
 * probe's source port) and its destination; anything else null. Addresses are views into `buf`.
 */
export function readListenedFrame(
  buf: Buffer,
  n: number,
  lastKnockPort: number,
): { kind: "knock"; source: Buffer } | { kind: "syn-ack"; port: number; destination: Buffer } | null {
  if (n < 14) return null;
  const type = buf.readUInt16BE(12);
  let l4: number, proto: number, srcAt: number, addrLen: number;
  if (type === 0x0800 && n >= 34) {
    l4 = 14 + (buf[14]! & 0x0f) * 4;
    proto = buf[23]!;
    srcAt = 26;
    addrLen = 4;
  } else if (type === 0x86dd && n >= 54) {
    l4 = 54;
    proto = buf[20]!;
    srcAt = 22;
    addrLen = 16;
  } else return null;
  if (n < l4 + 4) return null;
  const source = buf.subarray(srcAt, srcAt + addrLen);
  const dport = buf.readUInt16BE(l4 + 2);
  if (proto === 17) return dport === SPA_PORT ? { kind: "knock", source } : null;
  if (proto !== 6 || n < l4 + 14) return null;
  const synAck = buf[l4 + 13]! & 0x12;
  if (synAck === 0x02) return dport === lastKnockPort ? { kind: "knock", source } : null;
  // A RST (or anything else but a SYN-ACK) is a refusal, not an accept.
  return synAck === 0x12 ? { kind: "syn-ack", port: dport, destination: buf.subarray(srcAt + addrLen, srcAt + 2 * addrLen) } : null;
}

/** The minimal surface of npm cap used for sending. */
export interface CapSender {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  send(buffer: Buffer, nBytes?: number): void;
  close(): void;
}

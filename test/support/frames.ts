/** Builds raw Ethernet frames (IPv4/IPv6, TCP/UDP, valid checksums) for injected test and bench traffic. */
import { isIPv4 } from "node:net";
import { TcpFlag } from "../../src/core/types.js";

export interface FrameSpec {
  srcMac: Buffer;
  dstMac: Buffer;
  src: string;
  dst: string;
  proto: "tcp" | "udp";
  srcPort: number;
  dstPort: number;
  /** TCP flags byte (default SYN). */
  flags?: number;
  /** UDP payload (default none), e.g. an SPA datagram. */
  payload?: Buffer;
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
}

export function ipBytes(addr: string): Buffer {
  if (isIPv4(addr)) return Buffer.from(addr.split(".").map(Number));
  const [head = "", tail] = addr.split("::");
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function checksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const part of parts) {
    for (let i = 0; i < part.length; i += 2) sum += (part[i] ?? 0) * 256 + (part[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function l4Segment(spec: FrameSpec): Buffer {
  if (spec.proto === "udp") {
    const payload = spec.payload ?? Buffer.alloc(0);
    const udp = Buffer.alloc(8 + payload.length);
    udp.writeUInt16BE(spec.srcPort, 0);
    udp.writeUInt16BE(spec.dstPort, 2);
    udp.writeUInt16BE(udp.length, 4);
    payload.copy(udp, 8);
    return udp;
  }
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(spec.srcPort, 0);
  tcp.writeUInt16BE(spec.dstPort, 2);
  tcp.writeUInt32BE(0x01020304, 4);
  tcp[12] = 5 << 4;
  tcp[13] = spec.flags ?? TcpFlag.syn;
  tcp.writeUInt16BE(64240, 14);
  return tcp;
}

export function buildFrame(spec: FrameSpec): Buffer {
  const v4 = isIPv4(spec.src);
  const src = ipBytes(spec.src);
  const dst = ipBytes(spec.dst);
  const l4 = l4Segment(spec);
  const protoNum = spec.proto === "tcp" ? 6 : 17;
  const pseudo = Buffer.alloc(v4 ? 12 : 40);
  if (v4) {
    src.copy(pseudo, 0);
    dst.copy(pseudo, 4);
    pseudo[9] = protoNum;
    pseudo.writeUInt16BE(l4.length, 10);
  } else {
    src.copy(pseudo, 0);
    dst.copy(pseudo, 16);
    pseudo.writeUInt32BE(l4.length, 32);
    pseudo[39] = protoNum;
  }
  l4.writeUInt16BE(checksum(pseudo, l4), spec.proto === "tcp" ? 16 : 6);
  let ip: Buffer;
  if (v4) {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + l4.length, 2);
    ip[8] = 64;
    ip[9] = protoNum;
    src.copy(ip, 12);
    dst.copy(ip, 16);
    ip.writeUInt16BE(checksum(ip), 10);
  } else {
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(l4.length, 4);
    ip[6] = protoNum;
    ip[7] = 64;
    src.copy(ip, 8);
    dst.copy(ip, 24);
  }
  const eth = Buffer.alloc(14);
  spec.dstMac.copy(eth, 0);
  spec.srcMac.copy(eth, 6);
  eth.writeUInt16BE(v4 ? 0x0800 : 0x86dd, 12);
  return Buffer.concat([eth, ip, l4]);
}

/**
 * Source addresses as the packet path holds them: raw bytes, turned into text only when something
 * reads it (a grant, a log line). Most sniffed packets are never printed, so most are never formatted.
 */
import type { Family, SourcePrefixes } from "../types.js";

// Precomputed decimal octets: avoids number->string work for every IPv4 text made.
const DEC: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

function dec(n: number): string {
  return DEC[n] ?? "";
}

/**
 * IPv4 dotted quad of buf[off..off+4). Caller guarantees the bytes exist.
 */
export function formatIPv4(buf: Uint8Array, off: number): string {
  return `${dec(buf[off]!)}.${dec(buf[off + 1]!)}.${dec(buf[off + 2]!)}.${dec(buf[off + 3]!)}`;
}

/**
 * IPv6 text of buf[off..off+16) exactly as Node (libuv's inet_ntop) prints socket
 * addresses, so sniffed sources compare equal to what sockets report: RFC 5952
 * compression (longest run of >= 2 zero groups, first on ties, lowercase, no leading
 * zeros), plus libuv's dotted tail for ::a.b.c.d (first 6 groups zero) and
 * ::ffff:a.b.c.d (IPv4-mapped). Caller guarantees the bytes exist.
 */
export function formatIPv6(buf: Uint8Array, off: number): string {
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    const w = (buf[off + 2 * i]! << 8) | buf[off + 2 * i + 1]!;
    if (w === 0) {
      if (curBase === -1) {
        curBase = i;
        curLen = 1;
      } else {
        curLen++;
      }
      // Strictly greater keeps the first run on ties.
      if (curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
    } else {
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;

  let out = "";
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ":";
      continue;
    }
    if (i !== 0) out += ":";
    if (
      i === 6 &&
      bestBase === 0 &&
      (bestLen === 6 || (bestLen === 5 && buf[off + 10] === 0xff && buf[off + 11] === 0xff))
    ) {
      return out + formatIPv4(buf, off + 12);
    }
    out += ((buf[off + 2 * i]! << 8) | buf[off + 2 * i + 1]!).toString(16);
  }
  // A zero run reaching the end needs the second colon of "::".
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ":";
  return out;
}

/**
 * A source no knock can honestly come from, and no grant should name: unspecified, loopback,
 * link-local, multicast, broadcast and reserved IPv4 (0/8, 127/8, 169.254/16, 224/4, 240/4), and in
 * IPv6 the unspecified and loopback addresses, link-local (fe80::/10), multicast (ff00::/8),
 * IPv4-mapped or -compatible addresses (::ffff:0:0/96, ::/96), which would sneak an IPv4 address into
 * an IPv6 set, and NAT64 addresses (64:ff9b::/96) whose IPv4 address is one of the refused ones.
 * Link-local addresses never cross a router, so they are never a remote client's; carrier-grade NAT
 * space (100.64/10) is, and stays allowed. Spoofed floods love the rest.
 */
export function isBogusSource(buf: Uint8Array, off: number, family: Family): boolean {
  if (family === 4) return isBogusV4(buf, off);
  const first = buf[off]!;
  if (first === 0xff) return true;
  if (first === 0xfe) return (buf[off + 1]! & 0xc0) === 0x80;
  if (first !== 0) return false;
  if (buf[off + 1] === 0x64 && buf[off + 2] === 0xff && buf[off + 3] === 0x9b) {
    for (let i = 4; i < 12; i++) if (buf[off + i] !== 0) return false;
    return isBogusV4(buf, off + 12);
  }
  for (let i = 1; i < 10; i++) if (buf[off + i] !== 0) return false;
  return (buf[off + 10] === 0 && buf[off + 11] === 0) || (buf[off + 10] === 0xff && buf[off + 11] === 0xff);
}

/** isBogusSource's addresses as prefixes, for rules that filter in the kernel (the kernel engine's). */
export const BOGUS_SOURCE_PREFIXES: Readonly<Record<Family, readonly string[]>> = {
  4: ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3"],
  6: ["::/96", "::ffff:0:0/96", "fe80::/10", "ff00::/8", "64:ff9b::/104", "64:ff9b::7f00:0/104", "64:ff9b::a9fe:0/112", "64:ff9b::e000:0/99"],
};

function isBogusV4(buf: Uint8Array, off: number): boolean {
  const first = buf[off]!;
  return first === 0 || first === 127 || first >= 224 || (first === 169 && buf[off + 1] === 254);
}

/** A source address held as bytes, with its canonical text made on first read and cached. */
export class SourceAddress {
  family: Family = 4;
  /** The first 4 bytes for IPv4, all 16 for IPv6. */
  readonly addr = new Uint8Array(16);
  private text: string | null = null;

  /** Copies the address at buf[off..] (4 or 16 bytes by family). */
  setAddress(family: Family, buf: Uint8Array, off: number): void {
    const n = family === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) this.addr[i] = buf[off + i]!;
    this.family = family;
    this.text = null;
  }

  /** For writers that fill `addr` in place. */
  addressChanged(family: Family): void {
    this.family = family;
    this.text = null;
  }

  /** Canonical text: dotted quad, or RFC 5952 IPv6 as Node prints socket addresses. */
  get src(): string {
    this.text ??= this.family === 4 ? formatIPv4(this.addr, 0) : formatIPv6(this.addr, 0);
    return this.text;
  }
}

/**
 * Writes `addr` (4 or 16 bytes by family) into `out` with every bit past the family's prefix length
 * cleared, and returns `out`: the network a source belongs to, for the per-prefix caps. `out` is
 * the caller's, so the packet path allocates nothing.
 */
export function maskToPrefix(addr: Uint8Array, family: Family, prefixes: SourcePrefixes, out: Uint8Array): Uint8Array {
  const bits = family === 4 ? prefixes.v4 : prefixes.v6;
  const bytes = family === 4 ? 4 : 16;
  for (let i = 0; i < bytes; i++) {
    const keep = Math.min(8, Math.max(0, bits - i * 8));
    out[i] = addr[i]! & ((0xff00 >> keep) & 0xff);
  }
  return out;
}

/**
 * The bytes of an IPv4 dotted quad or an IPv6 address in text (no zone, no prefix; a dotted IPv4
 * tail allowed), or null if the text is neither. For addresses that arrive as text inside a
 * datagram, where node:net is out of reach of the core.
 */
export function parseAddress(text: string): { family: Family; addr: Uint8Array } | null {
  const v4 = parseIPv4(text);
  if (v4) return { family: 4, addr: v4 };
  const v6 = parseIPv6(text);
  return v6 ? { family: 6, addr: v6 } : null;
}

function parseIPv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return null;
    out[i] = Number(p);
  }
  return out;
}

function parseIPv6(text: string): Uint8Array | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = ipv6Words(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? ipv6Words(halves[1]!, true) : [];
  if (!head || !tail) return null;
  // Without "::" all eight words are spelled out; with it, it stands for at least one zero word.
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const out = new Uint8Array(16);
  const put = (w: number, at: number) => {
    out[2 * at] = w >> 8;
    out[2 * at + 1] = w & 0xff;
  };
  head.forEach((w, i) => put(w, i));
  tail.forEach((w, i) => put(w, 8 - tail.length + i));
  return out;
}

/** The 16-bit words of colon-separated groups; a dotted IPv4 is allowed as the last group of the address. */
function ipv6Words(part: string, endsAddress: boolean): number[] | null {
  if (part === "") return [];
  const groups = part.split(":");
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
      words.push(parseInt(g, 16));
      continue;
    }
    const v4 = endsAddress && i === groups.length - 1 ? parseIPv4(g) : null;
    if (!v4) return null;
    words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
  }
  return words;
}

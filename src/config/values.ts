/**
 * Parsers for single configuration values. Each returns the parsed value or throws an Error whose
 * message completes the sentence "<VARIABLE>: ..." so the user sees what to change.
 */
import { isIPv4, isIPv6 } from "node:net";
import { TcpFlag, portName, type Cidr, type Family, type ListenAddr, type PortSpec, type Proto, type TcpFlagMatch } from "../core/types.js";
import { splitList } from "../core/lists.js";

const PROTOS: readonly Proto[] = ["tcp", "udp"];
/** A Map, not TcpFlag itself: a lookup on the object would find inherited names like "constructor". */
const TCP_FLAGS = new Map<string, number>(Object.entries(TcpFlag));

export function parsePort(text: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`"${text}" is not a port number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range 1-65535`);
  return port;
}

function parseProto(text: string, item: string): Proto {
  const proto = text.toLowerCase();
  if (!(PROTOS as readonly string[]).includes(proto)) {
    throw new Error(`"${item}": protocol "${text}" is not tcp or udp`);
  }
  return proto as Proto;
}


/**
 * A knock sequence: "7000,8000:udp,9000" (knockd writes the protocol after a colon). A sequence is
 * a secret, and a wrong one is usually a typo of the right one, so messages say which knock is
 * wrong and why, never what it says.
 */
export function parseSequence(value: string): PortSpec[] {
  const items = splitList(value);
  if (items.length === 0) throw new Error("the sequence is empty; give ports like 7000,8000,9000");
  return items.map((item, i) => {
    const knock = `knock ${i + 1} of ${items.length}`;
    const [port = "", proto, extra] = item.split(":");
    if (extra !== undefined) throw new Error(`${knock} is not PORT or PORT:PROTO`);
    if (!/^\d+$/.test(port)) throw new Error(`${knock} is not a port number`);
    if (Number(port) < 1 || Number(port) > 65535) throw new Error(`${knock}: the port is out of range 1-65535`);
    if (proto !== undefined && !(PROTOS as readonly string[]).includes(proto.toLowerCase())) throw new Error(`${knock}: the protocol is not tcp or udp`);
    return { port: Number(port), proto: (proto?.toLowerCase() ?? "tcp") as Proto };
  });
}

/** Protected ports: "22/tcp,2222/tcp" (the /etc/services notation). */
export function parsePorts(value: string): PortSpec[] {
  const items = splitList(value);
  if (items.length === 0) throw new Error("no ports given; write them like 22/tcp,2222/tcp");
  const seen = new Set<string>();
  const ports: PortSpec[] = [];
  for (const item of items) {
    const [port = "", proto, extra] = item.split("/");
    if (extra !== undefined) throw new Error(`"${item}" is not PORT or PORT/PROTO`);
    const spec: PortSpec = { port: parsePort(port), proto: proto === undefined ? "tcp" : parseProto(proto, item) };
    const key = portName(spec);
    if (!seen.has(key)) ports.push(spec);
    seen.add(key);
  }
  return ports;
}

/** The longest a Node timer waits: a longer delay fires at once, so a loop on it would spin. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The longest grant the kernel sets hold: ipset keeps a timeout of at most 2,147,483 s (its
 * IPSET_MAX_TIMEOUT) and refuses every add beyond it. nftables holds more, but a door means the same
 * on either backend: `KNOCK_FIREWALL=auto` picks whichever the host has, and a cluster's nodes apply
 * each other's grants whatever their backend.
 */
export const MAX_GRANT_SECONDS = 2_147_483;

/** Seconds as a non-negative decimal number ("5", "0.5"); returns milliseconds. */
export function parseSecondsMs(value: string): number {
  const text = value.trim();
  if (!/^\d+(\.\d+)?$/.test(text)) throw new Error(`"${value}" is not a number of seconds`);
  return Math.round(Number(text) * 1000);
}

/** knockd's tcpflags: "syn,!ack"; "" or "any" disables the check. */
export function parseTcpFlags(value: string): TcpFlagMatch {
  const match: TcpFlagMatch = { set: 0, clear: 0 };
  const text = value.trim().toLowerCase();
  if (text === "" || text === "any") return match;
  for (const item of splitList(text)) {
    const negated = item.startsWith("!");
    const name = negated ? item.slice(1) : item;
    const bit = TCP_FLAGS.get(name);
    if (bit === undefined) {
      throw new Error(`"${item}" is not a TCP flag; use ${[...TCP_FLAGS.keys()].join(", ")}, each optionally with "!"`);
    }
    if ((negated ? match.set : match.clear) & bit) throw new Error(`flag ${name} is both required and forbidden`);
    if (negated) match.clear |= bit;
    else match.set |= bit;
  }
  return match;
}

/** "198.18.0.0/15", "fd00::/8" or a bare address (a /32 or /128). Host bits are cleared. */
export function parseCidr(item: string): Cidr {
  const [addr = "", prefixText, extra] = item.split("/");
  const family: Family | 0 = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : 0;
  if (family === 0 || extra !== undefined) throw new Error(`"${item}" is not an IPv4 or IPv6 address or CIDR`);
  const bits = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d+$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) throw new Error(`"${item}": prefix length must be 1-${bits}`);
  // ipset's hash:net cannot hold a /0 either; and the door would be open to everyone.
  if (prefix === 0) throw new Error(`"${item}": a /0 prefix would let every address past the doors; prefix length must be 1-${bits}`);
  const value = addressToBigInt(addr, family);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
  return { family, text: `${bigIntToAddress(value & mask, family)}/${prefix}` };
}

/** CIDRs in order of first appearance; repeats (after clearing host bits) are dropped. */
export function parseCidrList(value: string): Cidr[] {
  const byText = new Map<string, Cidr>();
  for (const cidr of splitList(value).map(parseCidr)) if (!byText.has(cidr.text)) byText.set(cidr.text, cidr);
  return [...byText.values()];
}

function addressToBigInt(addr: string, family: Family): bigint {
  if (family === 4) return addr.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  const [head = "", tail] = addr.split("::");
  const groups = (s: string | undefined): string[] => (s ? s.split(":") : []);
  let left = groups(head);
  let right = groups(tail);
  const expand = (gs: string[]): string[] =>
    gs.flatMap((g) => {
      if (!g.includes(".")) return [g];
      const n = Number(addressToBigInt(g, 4));
      return [(n >>> 16).toString(16), (n & 0xffff).toString(16)];
    });
  left = expand(left);
  right = expand(right);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToAddress(value: bigint, family: Family): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 0xffn)).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** "127.0.0.1:9180", "[::1]:9180" or "0.0.0.0:9180". */
export function parseListenAddr(value: string): ListenAddr {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(value.trim());
  const host = m?.[1] ?? m?.[2];
  if (!m || host === undefined || !(isIPv4(host) || isIPv6(host))) {
    throw new Error(`"${value}" is not HOST:PORT with an IP address (e.g. 127.0.0.1:9180 or [::1]:9180)`);
  }
  return { host, port: parsePort(m[3] ?? "") };
}

export function parseEnum<T extends string>(allowed: readonly T[]) {
  return (value: string): T => {
    const v = value.trim().toLowerCase();
    if (!(allowed as readonly string[]).includes(v)) throw new Error(`"${value}" is not one of ${allowed.join(", ")}`);
    return v as T;
  };
}

export function parseBool(value: string): boolean {
  const v = value.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off", ""].includes(v)) return false;
  throw new Error(`"${value}" is not a boolean (true/false, 1/0, yes/no)`);
}

export function parseCount(min: number, max: number) {
  return (value: string): number => {
    const v = value.trim();
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      throw new Error(`"${value}" is not a whole number in ${min}-${max}`);
    }
    return Number(v);
  };
}

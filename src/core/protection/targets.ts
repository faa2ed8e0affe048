/**
 * What knockgate protects: targets, each a (destination, protocol, port) that belongs to exactly
 * one door. A packet is filtered only when it goes to a target: to this host (any of its addresses,
 * or the one address a port is bound to) or to a labelled container's own address. Anything else,
 * traffic this host forwards to other hosts above all (container and pod egress, routed traffic),
 * is none of knockgate's business. Pure.
 *
 * Ownership. Claims come from the configuration (a door's _PORTS) and from Docker labels. They are
 * decided in order: the configuration first, then containers oldest first. A label's claim on a
 * target that another door already owns (the same one, or one that overlaps it: a port bound to one
 * host address lies inside the same port on every host address) is refused and changes nothing: a
 * label can never put a door's port behind a second door, and a later container cannot take a port
 * from an earlier one while that one exists. Only the operator can put one port behind several
 * doors, by naming it in each door's _PORTS (as knockd takes several sequences for one port).
 */
import { formatIPv4, formatIPv6, parseAddress } from "../packet/address.js";
import { byProtoThenPort, portName, type Family, type PortSpec } from "../types.js";

/** Where a filtered packet is going. */
export type Destination =
  /** Any address of this host (iptables addrtype LOCAL, nftables fib daddr type local). */
  | { kind: "host" }
  /** One address of this host: a port published on it alone. */
  | { kind: "bound"; family: Family; address: string }
  /**
   * A labelled container's own address. Its network's other members (`peers`, the network as a
   * CIDR, null when unknown) reach it without a grant when they come from where that network is
   * routed (reverse path), so a spoofed peer address from outside gains nothing.
   */
  | { kind: "container"; family: Family; address: string; peers: string | null };

export interface Target {
  door: string;
  dest: Destination;
  port: PortSpec;
}

/** Who asked for a target: "env" (the door's _PORTS), or a container. */
export interface Claim extends Target {
  origin: string;
}

export const ENV_ORIGIN = "env";

/** A refused claim: the target belongs to `owner` (a door and the origin that gave it). */
export interface Conflict {
  claim: Claim;
  owner: Claim;
}

export interface Protection {
  /** The targets in force, each once, with every origin that asked for it. */
  targets: OwnedTarget[];
  conflicts: Conflict[];
}

export interface OwnedTarget extends Target {
  origins: string[];
}

/** The address a destination names, for display and keys; "" for every host address. */
const destText = (d: Destination): string => (d.kind === "host" ? "" : d.address);

/** One target in words: "22/tcp", "22/tcp on 192.0.2.2", "22/tcp on container 172.17.0.2". */
export function targetText(t: Pick<Target, "dest" | "port">): string {
  const where = t.dest.kind === "host" ? "" : t.dest.kind === "bound" ? ` on ${t.dest.address}` : ` on container ${t.dest.address}`;
  return `${portName(t.port)}${where}`;
}

const keyOf = (t: Pick<Target, "dest" | "port">): string => `${t.dest.kind === "container" ? "c" : "h"} ${destText(t.dest)} ${portName(t.port)}`;

/** Whether one packet can go to both: the same port, and destinations that meet. */
export function overlaps(a: Pick<Target, "dest" | "port">, b: Pick<Target, "dest" | "port">): boolean {
  if (a.port.port !== b.port.port || a.port.proto !== b.port.proto) return false;
  const onHost = (d: Destination) => d.kind !== "container";
  if (onHost(a.dest) !== onHost(b.dest)) return false;
  return a.dest.kind === "host" || b.dest.kind === "host" || destText(a.dest) === destText(b.dest);
}

/**
 * Decides the claims in the order given (the configuration's first, then containers oldest
 * first): each is granted unless another door owns an overlapping target.
 */
export function decideProtection(claims: readonly Claim[]): Protection {
  const owned = new Map<string, OwnedTarget & { first: Claim }>();
  const conflicts: Conflict[] = [];
  for (const claim of claims) {
    const shared = (t: { first: Claim }) => claim.origin === ENV_ORIGIN && t.first.origin === ENV_ORIGIN;
    const owner = [...owned.values()].find((t) => t.door !== claim.door && !shared(t) && overlaps(t, claim));
    if (owner) {
      conflicts.push({ claim, owner: owner.first });
      continue;
    }
    const key = `${claim.door} ${keyOf(claim)}`;
    const known = owned.get(key);
    if (known) {
      if (!known.origins.includes(claim.origin)) known.origins.push(claim.origin);
    } else {
      owned.set(key, { door: claim.door, dest: claim.dest, port: claim.port, origins: [claim.origin], first: claim });
    }
  }
  const targets = [...owned.values()].map(({ door, dest, port, origins }) => ({ door, dest, port, origins }));
  return { targets, conflicts };
}

/** A door's configured ports as claims on every address of this host. */
export function envClaims(doors: readonly { name: string; ports: readonly PortSpec[] }[]): Claim[] {
  return doors.flatMap((d) => d.ports.map((port) => ({ door: d.name, dest: { kind: "host" as const }, port, origin: ENV_ORIGIN })));
}

/** The host ports a door opens (what a signed datagram may ask for, what %PORTS% names), sorted. */
export function doorPorts(targets: readonly Target[], door: string): PortSpec[] {
  const ports = new Map<string, PortSpec>();
  for (const t of targets) if (t.door === door && t.dest.kind !== "container") ports.set(portName(t.port), t.port);
  return [...ports.values()].sort(byProtoThenPort);
}

/** Loopback is not reachable from outside: a port bound only there needs no rule. */
export function isLoopback(address: string): boolean {
  const parsed = parseAddress(address);
  if (!parsed) return false;
  return parsed.family === 4 ? parsed.addr[0] === 127 : parsed.addr.every((b, i) => b === (i === 15 ? 1 : 0));
}

const formatted = (family: Family, addr: Uint8Array): string => (family === 4 ? formatIPv4(addr, 0) : formatIPv6(addr, 0));

/** An address in canonical text, or null when it is not an IP address of `family` (any, if none given). */
export function canonicalAddress(text: string, family?: Family): { family: Family; address: string } | null {
  const parsed = parseAddress(text);
  if (!parsed || (family !== undefined && parsed.family !== family)) return null;
  return { family: parsed.family, address: formatted(parsed.family, parsed.addr) };
}

/** The network `address/prefixLen` lies in, host bits cleared ("172.17.0.0/16"); null for a prefix of 0 or a bad address. */
export function networkOf(address: string, prefixLen: number): string | null {
  const parsed = parseAddress(address);
  const bits = parsed ? parsed.addr.length * 8 : 0;
  if (!parsed || !Number.isInteger(prefixLen) || prefixLen < 1 || prefixLen > bits) return null;
  const net = parsed.addr.map((b, i) => b & (0xff << Math.max(0, Math.min(8, 8 * (i + 1) - prefixLen)) & 0xff));
  return `${formatted(parsed.family, net)}/${prefixLen}`;
}

/**
 * The destination a published host port is reached at: every host address, the one it is bound to,
 * or none (loopback, or an address that does not parse: it would end up on a firewall command line).
 */
export function hostDestination(hostIp: string): Destination | null {
  if (hostIp === "") return { kind: "host" };
  const parsed = canonicalAddress(hostIp);
  if (!parsed || isLoopback(hostIp)) return null;
  return { kind: "bound", ...parsed };
}

/** The part of the targets the firewall plan depends on, to tell whether a rewrite is needed. */
export function protectionKey(targets: readonly Target[]): string {
  return JSON.stringify(targets.map((t) => `${t.door} ${keyOf(t)} ${t.dest.kind === "container" ? (t.dest.peers ?? "") : ""}`).sort());
}

/**
 * The firewall side of signed doors, planned as data like the rest of plan.ts.
 *
 * A signed datagram opens only the ports it asks for, so its grants cannot live in the door's
 * address set (which opens every port of the door): each signed door gets a second set per family
 * keyed by (address, protocol, port), with kernel timeouts, and one rule that accepts a packet whose
 * source, protocol and destination port are in it. Sequence grants are untouched.
 *
 *   iptables+ipset: `knockgate-<DOOR>:4|6`, hash:ip,port, matched with `--match-set NAME src,dst`
 *   nftables:       `spa_<DOOR>_v4|v6`, ipv4_addr . inet_proto . inet_service
 *
 * Datagrams already accepted are kept in one more kernel set per signed door, so that a restarted
 * daemon still refuses them and one door's key holder cannot crowd out another door's datagrams:
 * `knockgate-<DOOR>:r` (hash:ip family inet6) or `spa_<DOOR>_replay` (ipv6_addr), holding the
 * first 128 bits of each datagram's SHA-256 written as an IPv6 address, each with a timeout that
 * runs until the datagram is stale anyway. Adding is the check: an add that finds the element
 * present fails, atomically, in the kernel. The daemon keeps an index of each set
 * (core/spa/replay-index.ts) and makes room in a full one itself.
 */
import type { Config, Door, Family, PortSpec } from "../types.js";
import { canonicalAddress, doorPorts, type OwnedTarget } from "../protection/targets.js";
import { FAMILIES, NFT_TABLE, nftPutLine, nftSetElements, nftTakeOutLine, type KernelGrant } from "./common.js";

/**
 * Datagrams remembered per signed door. Each stays until its timestamp is past the door's max age
 * (at most 2 x SPA_MAX_AGE, 240 s by default), so this holds about 270 accepted datagrams per
 * second, sustained; only datagrams with a valid HMAC get this far, so filling it takes the door's
 * key. At the bound the daemon deletes the entry that expires first (ReplayIndex) before adding:
 * a new datagram is never refused for want of room.
 */
export const REPLAY_SET_SIZE = 65536;

/** ipset's 31 characters: `knockgate-` + a 19-character door + `:4` just fits, as the door sets do with `-4`. */
export const ipsetSpaName = (door: string, family: Family): string => `knockgate-${door}:${family}`;
export const nftSpaSetName = (door: string, family: Family): string => `spa_${door}_v${family}`;
/** As the door's signed sets: `:r` fits ipset's 31 characters as `:4` does. */
export const ipsetReplayName = (door: string): string => `knockgate-${door}:r`;
export const nftReplaySetName = (door: string): string => `spa_${door}_replay`;

export const signedDoors = (config: Config): Door[] => config.doors.filter((d) => d.spa !== null);

/** Each (address, port) is an entry: room for KNOCK_MAX_GRANTS grants of every port of the door (`ports` of them). */
export const spaSetSize = (grantSetSize: number, ports: number): number => grantSetSize * Math.max(1, ports);

export const ipsetSpaSetSpec = (family: Family, size: number): string => `hash:ip,port family ${family === 4 ? "inet" : "inet6"} timeout 0 maxelem ${size}`;
export const IPSET_REPLAY_SPEC = `hash:ip family inet6 timeout 0 maxelem ${REPLAY_SET_SIZE}`;

/** The source and destination port in the door's signed set; the rule around it names the target. */
export const iptablesSpaMatch = (door: string, family: Family): string => `-m set --match-set ${ipsetSpaName(door, family)} src,dst`;

const nftSaddr = (family: Family) => (family === 4 ? "ip saddr" : "ip6 saddr");
export const nftSpaMatch = (door: string, family: Family): string => `${nftSaddr(family)} . meta l4proto . th dport @${nftSpaSetName(door, family)}`;

export function nftSpaSetLines(config: Config, targets: readonly OwnedTarget[], grantSetSize: number): string[] {
  const t = `inet ${NFT_TABLE}`;
  const doors = signedDoors(config);
  if (doors.length === 0) return [];
  const lines = doors.flatMap((door) =>
    FAMILIES.map(
      (f) =>
        `add set ${t} ${nftSpaSetName(door.name, f)} { type ${f === 4 ? "ipv4" : "ipv6"}_addr . inet_proto . inet_service; flags timeout; size ${spaSetSize(grantSetSize, doorPorts(targets, door.name).length)}; }`,
    ),
  );
  for (const door of doors) lines.push(`add set ${t} ${nftReplaySetName(door.name)} { type ipv6_addr; flags timeout; size ${REPLAY_SET_SIZE}; }`);
  return lines;
}

const seconds = (ms: number) => Math.max(1, Math.round(ms / 1000));
const ipsetMember = (src: string, p: PortSpec) => `${src},${p.proto}:${p.port}`;

/** One `ipset -` line per port: a repeated grant refreshes the timeout (-exist). */
export function ipsetSpaGrantLines(door: string, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): string[] {
  return ports.map((p) => `add ${ipsetSpaName(door, family)} ${ipsetMember(src, p)} timeout ${seconds(openForMs)} -exist`);
}
/** The ports the grant opened, each: what it holds goes, whatever the door protects now. */
export function ipsetSpaRevokeLines(door: string, family: Family, src: string, ports: readonly PortSpec[]): string[] {
  return ports.map((p) => `del ${ipsetSpaName(door, family)} ${ipsetMember(src, p)} -exist`);
}

const nftElement = (src: string, p: PortSpec) => `${src} . ${p.proto} . ${p.port}`;
/** As nftGrantLine: add, delete and add again with the timeout, so a repeat refreshes it. */
export function nftSpaGrantLine(door: string, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): string {
  return nftPutLine(`inet ${NFT_TABLE} ${nftSpaSetName(door, family)}`, ports.map((p) => nftElement(src, p)), seconds(openForMs));
}
export function nftSpaRevokeLine(door: string, family: Family, src: string, ports: readonly PortSpec[]): string {
  return nftTakeOutLine(`inet ${NFT_TABLE} ${nftSpaSetName(door, family)}`, ports.map((p) => nftElement(src, p)));
}

/**
 * The replay set's key for a datagram: the first 128 bits of its SHA-256 (hex), as canonical IPv6
 * text, the way both kernels list it, so that a listing adopted at start matches what is recorded.
 */
export function replayElement(sha256Hex: string): string {
  if (!/^[0-9a-f]{32}/.test(sha256Hex)) throw new RangeError("replayElement takes a hex SHA-256");
  return canonicalAddress(sha256Hex.slice(0, 32).match(/.{4}/g)!.join(":"), 6)!.address;
}

/**
 * The lines that change a door's replay set, each one command for `ipset -` or `nft -i`: an add
 * that fails when the element is there (ipset add without -exist, nft create), and a delete that
 * is fine when it is gone (the kernel may have expired it already).
 */
export const ipsetReplayAddLine = (door: string, element: string, ttlS: number): string => `add ${ipsetReplayName(door)} ${element} timeout ${ttlS}`;
export const ipsetReplayDelLine = (door: string, element: string): string => `del ${ipsetReplayName(door)} ${element} -exist`;
export const nftReplayAddLine = (door: string, element: string, ttlS: number): string =>
  `create element inet ${NFT_TABLE} ${nftReplaySetName(door)} { ${element} timeout ${ttlS}s }`;
export const nftReplayDelLine = (door: string, element: string): string => nftTakeOutLine(`inet ${NFT_TABLE} ${nftReplaySetName(door)}`, [element]);

/** What a failed record says: the element was there (a replay) or the set is full. */
export function replayFailure(stderr: string): "seen" | "full" | null {
  if (/already added|File exists/i.test(stderr)) return "seen";
  if (/is full|Too many open files/i.test(stderr)) return "full";
  return null;
}

/** A signed grant found in the kernel: one entry per port. */
export interface KernelSpaGrant extends KernelGrant {
  port: PortSpec;
}

/** `198.18.0.2,tcp:22` or `fd00::2,udp:53` (ipset list), with the time left. */
export function ipsetSpaMembers(members: readonly KernelGrant[]): KernelSpaGrant[] {
  return members.flatMap((m) => {
    const match = /^(.+),(tcp|udp):(\d+)$/.exec(m.src);
    return match ? [{ src: match[1]!, remainingMs: m.remainingMs, port: { proto: match[2] as PortSpec["proto"], port: Number(match[3]) } }] : [];
  });
}

/** Elements of `nft -j list set` of an SPA set: `{"concat": [addr, proto, port]}` values. */
export function nftSpaElements(json: string): KernelSpaGrant[] {
  return nftSetElements(json).flatMap(({ val, remainingMs }) => {
    const concat = typeof val === "object" && val !== null && "concat" in val && Array.isArray(val.concat) ? (val.concat as unknown[]) : [];
    const [src, proto, port] = concat;
    return typeof src === "string" && (proto === "tcp" || proto === "udp") && typeof port === "number" ? [{ src, port: { proto, port }, remainingMs }] : [];
  });
}

/**
 * The plan's sets (core/firewall/plan.ts) in our table `inet knockgate`, and the `nft -i` lines that
 * change them.
 *
 *   allow_v4|v6           interval sets                                  KNOCK_ALLOW
 *   door_DOOR_v4|v6       addresses, with timeouts                       door-wide grants
 *   spa_DOOR_v4|v6        address . inet_proto . inet_service, timeouts  grants of some ports
 *   spa_DOOR_replay       ipv6_addr, with timeouts                       a signed door's datagrams accepted
 *   ack                   always empty: listing it confirms a command (the long-lived session)
 */
import type { Family, PortSpec } from "../../../core/types.js";
import type { PlannedSet } from "../../../core/firewall/plan.js";

export const NFT_TABLE = "knockgate";
/** An always-empty set: listing it is how the long-lived nft session confirms a command. */
export const NFT_ACK_SET = "ack";

export function nftSetName(door: string, family: Family): string {
  return `door_${door}_v${family}`;
}
export function nftAllowName(family: Family): string {
  return `allow_v${family}`;
}
export const nftSpaSetName = (door: string, family: Family): string => `spa_${door}_v${family}`;
export const nftReplaySetName = (door: string): string => `spa_${door}_replay`;

/** A planned set's name. */
export function setName(set: PlannedSet): string {
  switch (set.kind) {
    case "allow":
      return nftAllowName(set.family);
    case "door":
      return nftSetName(set.door, set.family);
    case "ports":
      return nftSpaSetName(set.door, set.family);
    case "replay":
      return nftReplaySetName(set.door);
  }
}

const addrType = (family: Family) => (family === 4 ? "ipv4_addr" : "ipv6_addr");

/** A door set's flags, as the kernel lists them. */
export const setFlags = (set: Extract<PlannedSet, { kind: "door" }>): string => (set.dynamic ? "dynamic,timeout" : "timeout");

/** `add set` for a planned set: made if missing, its size set in place if not (grants kept). */
export function addSetLine(set: PlannedSet): string {
  const body = (() => {
    switch (set.kind) {
      case "allow":
        return `type ${addrType(set.family)}; flags interval; auto-merge;`;
      case "door":
        return `type ${addrType(set.family)}; flags ${setFlags(set)}; size ${set.size};`;
      case "ports":
        return `type ${addrType(set.family)} . inet_proto . inet_service; flags timeout; size ${set.size};`;
      case "replay":
        return `type ipv6_addr; flags timeout; size ${set.size};`;
    }
  })();
  return `add set inet ${NFT_TABLE} ${setName(set)} { ${body} }`;
}

/** Takes elements out of a set as one transaction; adding first makes one that already expired no error. */
export function takeOutLine(set: string, elements: readonly string[]): string {
  const all = elements.join(", ");
  return `add element ${set} { ${all} }; delete element ${set} { ${all} }`;
}

/**
 * How a grant's elements go in. "put": with a fresh timeout (null: none) whether or not they are
 * there; `add` alone would not refresh the timeout of an element that is already in the set, so:
 * make sure it is there, remove it, add it back. "create": one command instead of three, which
 * fails the whole transaction ("File exists") if any element is already there.
 */
export type PutForm = "put" | "create";

function putLine(set: string, elements: readonly string[], timeoutS: number | null, form: PutForm): string {
  const timeout = timeoutS === null ? "" : ` timeout ${timeoutS}s`;
  const timed = `{ ${elements.map((e) => e + timeout).join(", ")} }`;
  return form === "create" ? `create element ${set} ${timed}` : `${takeOutLine(set, elements)}; add element ${set} ${timed}`;
}

export const inTable = (set: string): string => `inet ${NFT_TABLE} ${set}`;

/** Door-wide grants of one door and family as one transaction. */
export function nftGrantLine(door: string, family: Family, srcs: readonly string[], openForMs: number, form: PutForm = "put"): string {
  return putLine(inTable(nftSetName(door, family)), srcs, openForMs > 0 ? Math.round(openForMs / 1000) : null, form);
}
export function nftRevokeLine(door: string, family: Family, srcs: readonly string[]): string {
  return takeOutLine(inTable(nftSetName(door, family)), srcs);
}

const seconds = (ms: number) => Math.max(1, Math.round(ms / 1000));
/** A per-port set's element: address, protocol, port. */
export const nftPortElement = (src: string, p: PortSpec): string => `${src} . ${p.proto} . ${p.port}`;

/** A grant of some ports: each (address, port) with the grant's timeout. */
export function nftSpaGrantLine(door: string, family: Family, src: string, ports: readonly PortSpec[], openForMs: number, form: PutForm = "put"): string {
  return putLine(inTable(nftSpaSetName(door, family)), ports.map((p) => nftPortElement(src, p)), seconds(openForMs), form);
}
export function nftSpaRevokeLine(door: string, family: Family, src: string, ports: readonly PortSpec[]): string {
  return takeOutLine(inTable(nftSpaSetName(door, family)), ports.map((p) => nftPortElement(src, p)));
}

/**
 * The lines that change a door's replay set: `create`, which fails when the element is there, and
 * a delete that is fine when it is gone (the kernel may have expired it already).
 */
export const nftReplayAddLine = (door: string, element: string, ttlS: number): string => `create element ${inTable(nftReplaySetName(door))} { ${element} timeout ${ttlS}s }`;
export const nftReplayDelLine = (door: string, elements: readonly string[]): string => takeOutLine(inTable(nftReplaySetName(door)), elements);

/**
 * What nft says when a line holding a replay `create` fails: the element was there (a replay), the
 * replay set is full, or an element of a grant created with it was there ("exists": the line's
 * "put" form goes next); null for anything else, a full grant set included (the grant's failure,
 * not the record's). nft echoes the line under each error and marks the failing command with
 * carets, so each error is told by the set its command names. A replay outweighs the rest.
 */
export function nftReplayFailure(stderr: string): "seen" | "full" | "exists" | null {
  const lines = stderr.split("\n");
  let full = false;
  let exists = false;
  for (const [i, line] of lines.entries()) {
    const error = /^Error: .*?(File exists|Too many open files)/.exec(line);
    const command = lines[i + 1] ?? "";
    const at = (lines[i + 2] ?? "").indexOf("^");
    if (!error || at < 0) continue;
    const end = command.indexOf(";", at);
    const failing = command.slice(command.lastIndexOf(";", at) + 1, end < 0 ? undefined : end);
    if (!/ spa_\S+_replay \{/.test(failing)) {
      exists ||= error[1] === "File exists" && failing.trimStart().startsWith("create element ");
      continue;
    }
    if (error[1] === "File exists") return "seen";
    full = true;
  }
  return full ? "full" : exists ? "exists" : null;
}

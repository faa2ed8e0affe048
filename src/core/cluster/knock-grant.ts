/**
 * KnockGrant objects (knockgate.io/v1alpha1): a grant made on one node, as every other node reads it
 * from the Kubernetes API. Pure: the wall clock comes in as an argument. Anyone who may write these
 * objects can open doors, so every field is checked against this node's own doors and clock before
 * a grant reaches the kernel, and what fails is counted by reason.
 */
import { formatIPv4, formatIPv6, isBogusSource, parseAddress } from "../packet/address.js";
import { portName, type Door, type Family, type PortSpec, type WayIn } from "../types.js";

export const GROUP = "knockgate.io";
export const VERSION = "v1alpha1";
export const PLURAL = "knockgrants";
export const KIND = "KnockGrant";

/** A grant as it travels between nodes. */
export interface ClusterGrant {
  door: string;
  /** Canonical text (dotted quad, or RFC 5952 IPv6). */
  address: string;
  family: Family;
  /** Wall-clock ms; null: until a close sequence (a door with OPEN_FOR=0). */
  expiresAt: number | null;
  /** Wall-clock ms of the local grant on the origin node: the cross-node lag runs from here. */
  grantedAt: number;
  origin: string;
  how: WayIn;
  /** A signed grant's ports among the door's ("22/tcp"); null: a sequence grant, of all of them. */
  ports: string[] | null;
}

export const REJECT_REASONS = ["malformed", "unknown_door", "not_signed", "no_sequence", "bad_address", "expired", "too_long", "bad_ports", "wrong_name"] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** door: the door the grant names, as this node has it. */
export type Validated = { ok: true; grant: ClusterGrant; door: Door } | { ok: false; reason: RejectReason; detail: string };

/** An origin's clock may run this far ahead of ours before its grant counts as too long. */
export const CLOCK_SKEW_MS = 2000;
/** Any node deletes objects expired this long ago: their origin, which should have, may be gone. */
export const ORPHAN_AFTER_MS = 60_000;

/**
 * One object per door and address, so a refresh on any node updates it and a close sequence on
 * any node finds it by name. A signed grant's objects are per port as well (`ssh.4.c6120002.22-tcp`),
 * as its kernel entries are, each with its own expiry: they never overwrite the sequence grant of
 * the same address, nor each other. Door names are [A-Z0-9_]; object names lowercase DNS labels.
 */
/** A door name ([A-Z0-9_]) as a DNS label, for object names and the door label. */
const doorLabel = (door: string): string => door.toLowerCase().replaceAll("_", "-");

export function objectName(door: string, family: Family, address: string, signedPorts: readonly string[] | null = null): string {
  const parsed = parseAddress(address);
  const hex = parsed ? Array.from(parsed.addr, (b) => b.toString(16).padStart(2, "0")).join("") : address;
  const ports = signedPorts === null ? "" : signedPorts.map((p) => `.${p.replace("/", "-")}`).join("");
  return `${doorLabel(door)}.${family}.${hex}${ports}`;
}

/** The name of a grant's object: a signed grant's names its ports. */
export const grantName = (g: Pick<ClusterGrant, "door" | "family" | "address" | "how" | "ports">): string =>
  objectName(g.door, g.family, g.address, g.how === "signed" ? (g.ports ?? []) : null);

/** The object a node publishes for one of its own grants. */
export function grantObject(g: ClusterGrant, namespace: string): Record<string, unknown> {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: KIND,
    metadata: { name: grantName(g), namespace, labels: { "knockgate.io/door": doorLabel(g.door) } },
    spec: {
      door: g.door,
      address: g.address,
      family: g.family,
      ...(g.expiresAt === null ? {} : { expiresAt: new Date(g.expiresAt).toISOString() }),
      grantedAt: new Date(g.grantedAt).toISOString(),
      originNode: g.origin,
      how: g.how,
      ...(g.ports === null ? {} : { ports: g.ports }),
    },
  };
}

/** The ports among `own` (the door's here) that a validated grant names (null: all of them). */
export const grantPorts = (own: readonly PortSpec[], ports: readonly string[] | null): PortSpec[] => (ports === null ? [...own] : own.filter((p) => ports.includes(portName(p))));

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const MAX_TEXT = 253;
const text = (v: unknown): string | null => (typeof v === "string" && v.length > 0 && v.length <= MAX_TEXT ? v : null);
/** RFC 3339 as the API server and toISOString write it; anything else is malformed, not guessed at. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
function time(v: unknown): number | null {
  if (typeof v !== "string" || !RFC3339.test(v)) return null;
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? ms : null;
}

/** The object's name, if it has one (for deleting it, whatever else is wrong with it). */
export function nameOf(obj: unknown): string | null {
  return isRecord(obj) && isRecord(obj["metadata"]) ? text(obj["metadata"]["name"]) : null;
}

/** The object's resourceVersion, as the watch resumes from it. */
export function resourceVersionOf(obj: unknown): string | null {
  return isRecord(obj) && isRecord(obj["metadata"]) ? text(obj["metadata"]["resourceVersion"]) : null;
}

/**
 * Reads an object from the API into a grant this node may apply: its door must be one of ours (its
 * ports, `portsOf`, as this node protects them now), its
 * address a unicast one of the family it names, its time not yet up. A sequence grant opens the
 * whole door for at most its OPEN_FOR (plus CLOCK_SKEW_MS); a signed one needs the door signed here,
 * names some of its ports, and lasts at most what a datagram may get (SPA_MAX_OPEN_FOR, or OPEN_FOR
 * when longer; plus CLOCK_SKEW_MS).
 */
export function validateGrant(obj: unknown, doors: ReadonlyMap<string, Door>, portsOf: (door: string) => readonly PortSpec[], now: number): Validated {
  const bad = (reason: RejectReason, detail: string): Validated => ({ ok: false, reason, detail });
  const spec = isRecord(obj) ? obj["spec"] : undefined;
  if (!isRecord(spec)) return bad("malformed", "no spec");
  const doorName = text(spec["door"]);
  const address = text(spec["address"]);
  const family = spec["family"];
  const origin = text(spec["originNode"]);
  const how = spec["how"];
  const grantedAt = time(spec["grantedAt"]);
  const expiresAt = spec["expiresAt"] === undefined ? null : time(spec["expiresAt"]);
  if (doorName === null || address === null || origin === null || grantedAt === null) return bad("malformed", "door, address, originNode and grantedAt are required");
  if (family !== 4 && family !== 6) return bad("malformed", "family must be 4 or 6");
  if (how !== "sequence" && how !== "signed") return bad("malformed", "how must be sequence or signed");
  if (spec["expiresAt"] !== undefined && expiresAt === null) return bad("malformed", "expiresAt is not an RFC 3339 time");
  const door = doors.get(doorName);
  if (!door) return bad("unknown_door", `no door ${doorName} on this node`);

  const parsed = parseAddress(address);
  if (!parsed || parsed.family !== family || isBogusSource(parsed.addr, 0, family)) return bad("bad_address", `${address} is not an IPv${family} address a remote client can have`);
  // Canonical text, so the kernel set, the grant book and the object name agree on one spelling.
  const canonical = family === 4 ? formatIPv4(parsed.addr, 0) : formatIPv6(parsed.addr, 0);

  if (how === "signed" && door.spa === null) return bad("not_signed", `door ${door.name} is not signed on this node`);
  if (how === "sequence" && door.sequence.length === 0) return bad("no_sequence", `door ${door.name} has no knock sequence on this node`);
  if (expiresAt !== null && expiresAt <= now) return bad("expired", `expired ${new Date(expiresAt).toISOString()}`);
  // Only a sequence grant of a door open until its close sequence lasts without end.
  if (expiresAt === null && !(how === "sequence" && door.openForMs === 0)) {
    return bad("too_long", `door ${door.name}'s ${how} grants expire, and this object has no expiresAt`);
  }
  // A signed grant always ends (a datagram cannot ask for "until the close sequence"), and lasts as
  // long as a datagram may get: its -f up to SPA_MAX_OPEN_FOR, or without -f the door's OPEN_FOR.
  const maxMs = how === "signed" ? Math.max(door.openForMs, (door.spa?.maxOpenForS ?? 0) * 1000) : door.openForMs;
  if (expiresAt !== null && maxMs > 0 && expiresAt - now > maxMs + CLOCK_SKEW_MS) {
    return bad("too_long", `door ${door.name} grants at most ${maxMs / 1000} s${how === "signed" ? " to a signed datagram" : ""}`);
  }

  let ports: string[] | null = null;
  const own = new Set(portsOf(door.name).map(portName));
  if (spec["ports"] !== undefined) {
    const given = spec["ports"];
    if (!Array.isArray(given) || given.length === 0 || given.length > own.size || !given.every((p) => typeof p === "string" && own.has(p))) {
      return bad("bad_ports", `ports must be a non-empty list among door ${door.name}'s ${[...own].join(",")}`);
    }
    ports = [...new Set(given as string[])];
  }
  // A sequence grant opens the door's address set, which holds every port of the door; only the
  // signed sets hold single ports, so a signed grant must say which.
  if (how === "sequence" && ports !== null && ports.length < own.size) return bad("bad_ports", `a sequence grant opens all of door ${door.name}'s ports`);
  if (how === "signed" && ports === null) return bad("bad_ports", `a signed grant names the ports it opens, among door ${door.name}'s ${[...own].join(",")}`);
  const grant: ClusterGrant = { door: door.name, address: canonical, family, expiresAt, grantedAt, origin, how, ports };
  // A close sequence and the collector find an object by the name its grant gives: one under
  // another name would outlive them, or its deletion would revoke a grant it does not describe.
  const expected = grantName(grant);
  if (nameOf(obj) !== expected) return bad("wrong_name", `its grant's object is named ${expected}`);
  return { ok: true, grant, door };
}

/** Who made an object and when it runs out, for collecting it whatever else is wrong with it. */
export function lifetimeOf(obj: unknown): { origin: string; expiresAt: number | null } | null {
  const spec = isRecord(obj) ? obj["spec"] : undefined;
  if (!isRecord(spec)) return null;
  const origin = text(spec["originNode"]);
  const expiresAt = time(spec["expiresAt"]);
  return origin === null || expiresAt === null ? null : { origin, expiresAt };
}

/**
 * Whether this node should delete an object: its own once expired, anyone's once expired for
 * ORPHAN_AFTER_MS. `expiresAt` null (until the close sequence) never expires.
 */
export function shouldCollect(expiresAt: number | null, origin: string, self: string, now: number): boolean {
  if (expiresAt === null) return false;
  return origin === self ? expiresAt <= now : expiresAt + ORPHAN_AFTER_MS <= now;
}

/** Backoff before the `attempt`th retry (1-based): doubling from `baseMs`, capped, with jitter in [0.5, 1) from `random`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling * (0.5 + random / 2));
}

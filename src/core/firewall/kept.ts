/**
 * Targets that Docker labels gave, written into the kernel beside the rules, so that a restarted
 * daemon keeps them protected before (and whether or not) the engine answers: fail closed across a
 * compose restart, an image update or a rollout. One record per target, each a rule comment in a
 * chain of ours that no packet ever enters (each backend names it):
 *
 *   kept DOOR DEST PROTO/PORT ID [NAME]    DEST: host | bound=ADDR | container=ADDR,PEERS (PEERS: CIDR or -)
 *
 * Read back, every field is checked like any other input: a record that does not parse, or names a
 * door that is not configured, is ignored (what it protected is then as open as the configuration says).
 */
import { canonicalAddress, ENV_ORIGIN, networkOf, type Claim, type Destination, type OwnedTarget } from "../protection/targets.js";
import type { Proto } from "../types.js";

/** nftables' limit on a comment; iptables allows 256. */
const MAX_RECORD = 128;
const PREFIX = "kept ";
/** Docker's container names. */
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** What labels gave (targets without the configuration among their origins), one record each. */
export function keptRecords(targets: readonly OwnedTarget[]): string[] {
  return targets.filter((t) => !t.origins.includes(ENV_ORIGIN)).map(recordOf);
}

function recordOf(t: OwnedTarget): string {
  const dest = t.dest.kind === "host" ? "host" : t.dest.kind === "bound" ? `bound=${t.dest.address}` : `container=${t.dest.address},${t.dest.peers ?? "-"}`;
  // "container NAME (ID)", or a kept one's origin: the first names the container whose claim made the target.
  const origin = /container (\S+) \(([0-9a-f]{12})\)$/.exec(t.origins[0] ?? "");
  const base = `${PREFIX}${t.door} ${dest} ${t.port.proto}/${t.port.port} ${origin?.[2] ?? "-"}`;
  const named = origin && NAME.test(origin[1]!) ? `${base} ${origin[1]}` : base;
  return named.length <= MAX_RECORD ? named : base;
}

/** The origin a kept target shows until Docker answers for its container. */
export const keptOrigin = (id: string, name: string | undefined): string => `kept from before the restart: container ${name ?? "?"} (${id})`;

/** Records read back as claims of configured doors; anything malformed is left out. */
export function parseKept(records: readonly string[], doors: ReadonlySet<string>): Claim[] {
  return records.flatMap((r) => {
    const claim = parseRecord(r, doors);
    return claim ? [claim] : [];
  });
}

function parseRecord(record: string, doors: ReadonlySet<string>): Claim | null {
  if (!record.startsWith(PREFIX) || record.length > MAX_RECORD) return null;
  const [door, dest, port, id, name, ...rest] = record.slice(PREFIX.length).split(" ");
  if (door === undefined || !doors.has(door) || rest.length > 0) return null;
  const destination = parseDest(dest ?? "");
  const portMatch = /^(tcp|udp)\/(\d{1,5})$/.exec(port ?? "");
  const number = Number(portMatch?.[2]);
  if (!destination || !portMatch || number < 1 || number > 65535) return null;
  if (id === undefined || !/^([0-9a-f]{12}|-)$/.test(id) || (name !== undefined && !NAME.test(name))) return null;
  return { door, dest: destination, port: { proto: portMatch[1] as Proto, port: number }, origin: keptOrigin(id, name) };
}

function parseDest(text: string): Destination | null {
  if (text === "host") return { kind: "host" };
  const bound = /^bound=(.+)$/.exec(text);
  if (bound) {
    const a = canonicalAddress(bound[1]!);
    return a && { kind: "bound", ...a };
  }
  const container = /^container=([^,]+),(.+)$/.exec(text);
  const a = container ? canonicalAddress(container[1]!) : null;
  if (!container || !a) return null;
  const peers = container[2]!;
  if (peers === "-") return { kind: "container", ...a, peers: null };
  const [net, len] = peers.split("/");
  // The peers must be the network the address lies in, written as networkOf writes it.
  return net !== undefined && networkOf(a.address, Number(len)) === peers && canonicalAddress(net, a.family) ? { kind: "container", ...a, peers } : null;
}

/**
 * libpcap filter for the knock ports, so the kernel drops everything else before
 * it reaches userland. The decoder still does the authoritative parsing; the filter
 * only has to be a superset of what can be a knock.
 */
import type { LinkType } from "./decode.js";
import type { Door, PortSpec, Proto } from "../types.js";

/**
 * Bytes capture keeps of each packet. A knock needs only its headers: link header with VLAN tags,
 * IPv4 with options or IPv6 with some extension headers, TCP/UDP; short slots make the kernel ring
 * hold many packets. A signed datagram needs its whole payload (fwknop's at most 1500 bytes) behind
 * Ethernet with 4 VLAN tags (30 bytes), IPv6 (40) and UDP (8); one that does not fit is refused as
 * truncated. Only a configuration with a signed door pays for the larger slots.
 */
export const KNOCK_SNAPLEN = 256;
export const SPA_SNAPLEN = 1600;
export const captureSnaplen = (doors: readonly Door[]): number => (doors.some((d) => d.spa !== null) ? SPA_SNAPLEN : KNOCK_SNAPLEN);

/**
 * IPv6 packets whose first next-header is one the decoder walks (hop-by-hop 0,
 * routing 43, fragment 44, AH 51, destination options 60). libpcap's
 * "tcp dst port" only looks at the fixed header's next-header, so knocks behind
 * extension headers would otherwise be dropped in the kernel.
 */
const IPV6_EXT = "(ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 51 or ip6[6] == 60))";

function validate(spec: PortSpec): void {
  // Values are interpolated into the filter text; reject anything but a plain port.
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) {
    throw new Error(`invalid port for BPF filter: ${String(spec.port)}`);
  }
  if (spec.proto !== "tcp" && spec.proto !== "udp") {
    throw new Error(`invalid protocol for BPF filter: ${String(spec.proto)}`);
  }
}

/**
 * Build e.g. `(tcp dst port 7000 or tcp dst port 9000) or (udp dst port 8000) or (ip6 and (...))`.
 * For ETHERNET the whole expression is repeated under one and two in-band VLAN tags
 * (802.1Q/802.1ad), because libpcap only looks past a tag after a `vlan` keyword.
 * Without a link type, or for link types libpcap cannot apply `vlan` to (SLL, SLL2,
 * RAW, NULL), the VLAN part is omitted so the filter compiles everywhere.
 */
export function buildBpfFilter(ports: readonly PortSpec[], linkType?: LinkType): string {
  if (ports.length === 0) throw new Error("buildBpfFilter: at least one knock port is required");
  const byProto = new Map<Proto, Set<number>>([
    ["tcp", new Set()],
    ["udp", new Set()],
  ]);
  for (const spec of ports) {
    validate(spec);
    byProto.get(spec.proto)?.add(spec.port);
  }
  const clauses: string[] = [];
  for (const [proto, set] of byProto) {
    if (set.size === 0) continue;
    const sorted = [...set].sort((a, b) => a - b);
    clauses.push(`(${sorted.map((p) => `${proto} dst port ${p}`).join(" or ")})`);
  }
  clauses.push(IPV6_EXT);
  const base = clauses.join(" or ");
  if (linkType !== "ETHERNET") return base;
  // `vlan` shifts the offsets of everything after it, so it must come last and nest:
  // untagged, then one tag, then a second (QinQ) tag.
  return `${base} or (vlan and (${base} or (vlan and (${base}))))`;
}

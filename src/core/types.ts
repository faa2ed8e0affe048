/** Shared value types of the pure core. */

export type Proto = "tcp" | "udp";
export type Family = 4 | 6;

/** One port+protocol of a knock sequence or of a protected service. */
export interface PortSpec {
  port: number;
  proto: Proto;
}

/** TCP flag bits as they sit in the TCP header's flags byte. */
export const TcpFlag = {
  fin: 0x01,
  syn: 0x02,
  rst: 0x04,
  psh: 0x08,
  ack: 0x10,
  urg: 0x20,
} as const;
export type TcpFlagName = keyof typeof TcpFlag;

/** A flag condition in knockd's syntax ("syn,!ack"): bits in `set` must be 1, bits in `clear` must be 0. */
export interface TcpFlagMatch {
  set: number;
  clear: number;
}

/** What the decoder extracts from a captured frame: only what knock recognition needs. */
export interface Knock {
  readonly family: Family;
  /** Source address bytes: the first 4 for IPv4, all 16 for IPv6. Knock state is keyed by these. */
  readonly addr: Uint8Array;
  /** Canonical textual source address (dotted quad, or RFC 5952 IPv6); may be formatted on read. */
  readonly src: string;
  readonly proto: Proto;
  readonly dstPort: number;
  /** TCP flags byte; 0 for UDP. */
  readonly tcpFlags: number;
}

/** A flag match in the notation of KNOCK_DOOR_<NAME>_TCPFLAGS ("syn,!ack", or "any" for no check). */
export function tcpFlagsText(match: TcpFlagMatch): string {
  const names = Object.entries(TcpFlag).flatMap(([name, bit]) => (match.set & bit ? [name] : match.clear & bit ? [`!${name}`] : []));
  return names.join(",") || "any";
}

/** Prefix lengths (bits) that count as one source network: an IPv4 /24, an IPv6 /64 by default. */
export interface SourcePrefixes {
  v4: number;
  v6: number;
}

export interface Cidr {
  family: Family;
  /** Network address with host bits cleared, and the prefix: "198.18.0.0/15". */
  text: string;
}

export interface ListenAddr {
  host: string;
  port: number;
}

/** In the notation of KNOCK_HTTP_ADDR: "127.0.0.1:9180", "[::1]:9180". */
export const listenAddrText = (addr: ListenAddr): string => (addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`);

/** Set names carry the door name and must fit ipset's 31-character limit ("knockgate-NAME-4"). */
export const MAX_DOOR_NAME = 19;

/** fwknop's HMAC digests (HMAC_DIGEST_TYPE), as a door's SPA_HMAC_DIGEST names them. */
export type SpaHmacDigest = "sha256" | "sha384" | "sha512";

/**
 * A signed door's keys. Secrets: they print as "[secret]" wherever the object is serialized or
 * inspected, so a door dumped into a log line or an error cannot carry them.
 */
export class SpaKeyMaterial {
  constructor(
    readonly encryptionKey: Uint8Array,
    readonly hmacKey: Uint8Array,
    readonly hmacDigest: SpaHmacDigest,
  ) {}
  toJSON(): string {
    return "[secret]";
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "[secret]";
  }
}

/** How a signed door reads fwknop SPA datagrams (KNOCK_DOOR_<NAME>_SPA_*). */
export interface SpaSettings {
  /** UDP port the datagrams arrive on. */
  port: number;
  keys: SpaKeyMaterial;
  /** Largest |now - client timestamp| accepted, seconds (fwknopd MAX_SPA_PACKET_AGE). */
  maxAgeS: number;
  /** Cap on the client's -f timeout, seconds (fwknopd MAX_FW_TIMEOUT). */
  maxOpenForS: number;
  /** Refuse 0.0.0.0 (fwknop -s) in the message (fwknopd REQUIRE_SOURCE_ADDRESS). */
  requireSourceAddress: boolean;
  /** Only this username; null: any (fwknopd REQUIRE_USERNAME). */
  username: string | null;
}

/**
 * A way in: a knock sequence opens the door's ports, a signed datagram the ports it asks for. A
 * grant made on another node keeps the way in it came by there.
 */
export type WayIn = "sequence" | "signed";

export interface Door {
  name: string;
  /** Empty for a door opened only by signed datagrams. */
  sequence: PortSpec[];
  closeSequence: PortSpec[] | null;
  /** KNOCK_DOOR_<NAME>_PORTS, as configured: what Docker labels add is in the protection (app/protection.ts). */
  readonly ports: readonly PortSpec[];
  seqTimeoutMs: number;
  /** Grant lifetime; 0 = until the close sequence. */
  openForMs: number;
  tcpFlags: TcpFlagMatch;
  /** argv templates (shell-word syntax, %IP% %DOOR% %PORTS%) run without a shell; null: none. */
  onOpen: string[] | null;
  onClose: string[] | null;
  /** null: the door has no SPA keys (unsigned). */
  spa: SpaSettings | null;
}

/** A door's protected ports in the notation of KNOCK_DOOR_<NAME>_PORTS ("22/tcp,2222/tcp"), for logs and %PORTS%. */
export const portsText = (door: { readonly ports: readonly PortSpec[] }): string => door.ports.map(portName).join(",");

/** One port in that notation: "22/tcp". */
export const portName = (p: PortSpec): string => `${p.port}/${p.proto}`;

/** Whether `list` holds `p`: the same number and protocol. */
export const hasPort = (list: readonly PortSpec[], p: PortSpec): boolean => list.some((q) => q.port === p.port && q.proto === p.proto);

/** Ports in the order they are shown: by protocol, then number. */
export const byProtoThenPort = (a: PortSpec, b: PortSpec): number => a.proto.localeCompare(b.proto) || a.port - b.port;


/** KNOCK_DOCKER: auto follows the socket when there is one; on requires it; off never looks. */
export type DockerMode = "auto" | "on" | "off";

export interface DockerConfig {
  mode: DockerMode;
  /** unix:///path or tcp://host:port, as given (KNOCK_DOCKER_HOST, else DOCKER_HOST, else the default socket). */
  host: string;
  /** Where `host` came from, for check: the variable, or "default". */
  hostFrom: "KNOCK_DOCKER_HOST" | "DOCKER_HOST" | "default";
}
/** Grants shared between nodes through KnockGrant objects (KNOCK_CLUSTER). */
export type ClusterConfig = { mode: "off" } | { mode: "kubernetes"; nodeName: string; namespace: string };

export type FirewallChoice = "auto" | "iptables" | "nftables";
/** KNOCK_ENGINE: knocks recognised by the daemon from captured packets, or by the kernel's rules (nftables). */
export type KnockEngine = "capture" | "kernel";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  /** null: the interfaces of the default routes, resolved at start. */
  interfaces: string[] | null;
  doors: Door[];
  allow: Cidr[];
  httpAddr: ListenAddr;
  firewall: FirewallChoice;
  engine: KnockEngine;
  onExit: "keep" | "remove";
  dryRun: boolean;
  maxTracked: number;
  reconcileIntervalMs: number;
  /** Knock attempts in progress at most from one source prefix (see sourcePrefixes). */
  maxTrackedPerPrefix: number;
  /** Prefix lengths that count as one source network for the per-prefix caps. */
  sourcePrefixes: SourcePrefixes;
  /** Grants per door at most (each kernel grant set is sized from it). */
  maxGrants: number;
  /** Grants per door at most from one source prefix. */
  maxGrantsPerPrefix: number;
  hookTimeoutMs: number;
  /** Bearer token that unlocks the full /metrics (KNOCK_METRICS_TOKEN_FILE); null: public set only. A secret. */
  metricsToken: string | null;
  /** Secret variable -> the file its value was read from (for messages that must not show it). */
  secretFiles: Record<string, string>;
  /** Most ON_OPEN/ON_CLOSE commands running at once; more wait in a bounded queue. */
  hookConcurrency: number;
  logLevel: LogLevel;
  logFormat: "json" | "pretty";
  docker: DockerConfig;
  cluster: ClusterConfig;
}

/**
 * A door's signed-datagram settings (KNOCK_DOOR_<NAME>_SPA_*): fwknop's access.conf stanza as
 * variables. The keys are secrets: no message here ever shows a value, only what is wrong with it.
 */
import type { ConfigProblem } from "../core/errors.js";
import { SpaKeyMaterial, type ClusterConfig, type Door, type SpaHmacDigest, type SpaSettings } from "../core/types.js";
import { parseBool, parseCount, parseEnum, parsePort } from "./values.js";

export const SPA_FIELDS = [
  "SPA_KEY",
  "SPA_HMAC_KEY",
  "SPA_PORT",
  "SPA_HMAC_DIGEST",
  "SPA_MAX_AGE",
  "SPA_MAX_OPEN_FOR",
  "SPA_REQUIRE_SOURCE_ADDRESS",
  "SPA_REQUIRE_USERNAME",
] as const;
export type SpaField = (typeof SPA_FIELDS)[number];

/** fwknopd's defaults: port 62201, SHA-256, MAX_SPA_PACKET_AGE 120, MAX_FW_TIMEOUT 300, REQUIRE_SOURCE_ADDRESS on. */
export const SPA_DEFAULTS = {
  SPA_PORT: "62201/udp",
  SPA_HMAC_DIGEST: "sha256",
  SPA_MAX_AGE: "120",
  SPA_MAX_OPEN_FOR: "300",
  SPA_REQUIRE_SOURCE_ADDRESS: "true",
} as const;

/**
 * Key sizes libfko takes: a Rijndael key of at most 32 bytes, an HMAC key of at most 128 (SHA-512's
 * block). `fwknop --key-gen` writes 32 and 64; fewer than 16 bytes is a guessable key, refused.
 */
const KEY_BYTES = { SPA_KEY: [16, 32], SPA_HMAC_KEY: [16, 128] } as const;

/** Standard base64 with optional padding, as `fwknop --key-gen` prints KEY_BASE64 and HMAC_KEY_BASE64 (and fwknopd's is_base64 takes it). */
export const isBase64Key = (text: string): boolean => /^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.replace(/=+$/, "").length % 4 !== 1;

function parseKey(field: "SPA_KEY" | "SPA_HMAC_KEY", value: string): Buffer {
  const text = value.trim();
  const fwknopName = field === "SPA_KEY" ? "KEY_BASE64" : "HMAC_KEY_BASE64";
  if (!isBase64Key(text)) {
    throw new Error(`is not base64; give ${fwknopName} exactly as \`fwknop --key-gen\` prints it`);
  }
  const bytes = Buffer.from(text, "base64");
  const [min, max] = KEY_BYTES[field];
  if (bytes.length < min || bytes.length > max) {
    throw new Error(`decodes to ${bytes.length} bytes, fwknop takes ${min}-${max}; make one with \`fwknop --key-gen\` (${fwknopName})`);
  }
  return bytes;
}

/** "62201" or "62201/udp": fwknop's default transport; its TCP mode would need a connection per datagram. */
function parseSpaPort(value: string): number {
  const [port = "", proto, extra] = value.trim().split("/");
  if (extra !== undefined || (proto !== undefined && proto.toLowerCase() !== "udp")) {
    throw new Error(`"${value}" is not PORT or PORT/udp; signed datagrams are read over UDP only (fwknop's default, -P udp)`);
  }
  return parsePort(port);
}

function parseUsername(value: string): string {
  const name = value.trim();
  if (!/^[\x20-\x7e]{1,64}$/.test(name)) throw new Error("is not 1-64 printable characters (the name fwknop -U sends)");
  return name;
}

const asDigest = parseEnum<SpaHmacDigest>(["sha256", "sha384", "sha512"]);
const asSeconds = parseCount(1, 86_400);
const asMaxAge = parseCount(1, 3600);

/**
 * Reads one of the door's variables: undefined when it is not set, else its parsed value, or
 * `fallback` after reporting a parse failure under the variable (or its _FILE) as parseConfig does.
 */
export type FieldReader = <T>(field: SpaField, parse: (text: string) => T, fallback: T) => T | undefined;

/**
 * The door's SPA settings, or null when it has neither key. A door with one key and not the other
 * is reported by the caller (which knows which variables are set); here both are present.
 */
export function parseDoorSpa(has: (field: SpaField) => boolean, read: FieldReader): SpaSettings | null {
  if (!has("SPA_KEY") || !has("SPA_HMAC_KEY")) return null;
  const encryptionKey = read("SPA_KEY", (v) => parseKey("SPA_KEY", v), Buffer.alloc(0)) ?? Buffer.alloc(0);
  const hmacKey = read("SPA_HMAC_KEY", (v) => parseKey("SPA_HMAC_KEY", v), Buffer.alloc(0)) ?? Buffer.alloc(0);
  const orDefault = <T>(field: keyof typeof SPA_DEFAULTS, parse: (text: string) => T, fallback: T): T =>
    read(field, parse, fallback) ?? parse(SPA_DEFAULTS[field]);
  return {
    port: orDefault("SPA_PORT", parseSpaPort, Number(SPA_DEFAULTS.SPA_PORT.split("/")[0])),
    keys: new SpaKeyMaterial(encryptionKey, hmacKey, orDefault("SPA_HMAC_DIGEST", asDigest, "sha256")),
    maxAgeS: orDefault("SPA_MAX_AGE", asMaxAge, Number(SPA_DEFAULTS.SPA_MAX_AGE)),
    maxOpenForS: orDefault("SPA_MAX_OPEN_FOR", asSeconds, Number(SPA_DEFAULTS.SPA_MAX_OPEN_FOR)),
    requireSourceAddress: orDefault("SPA_REQUIRE_SOURCE_ADDRESS", parseBool, true),
    username: read("SPA_REQUIRE_USERNAME", parseUsername, null) ?? null,
  };
}

/** Whether both keys decoded to the same bytes: fwknop refuses an HMAC key equal to the encryption key. */
const sameKeys = (spa: SpaSettings): boolean =>
  spa.keys.encryptionKey.length > 0 && Buffer.from(spa.keys.encryptionKey).equals(Buffer.from(spa.keys.hmacKey));

/** Whether two doors' datagrams authenticate alike: the same HMAC key under the same digest. */
const sameHmac = (a: SpaSettings, b: SpaSettings): boolean =>
  a.keys.hmacDigest === b.keys.hmacDigest && Buffer.from(a.keys.hmacKey).equals(Buffer.from(b.keys.hmacKey));

/** The checks a signed door needs beyond its own variables: its keys, its port, the cluster. */
export function checkSignedDoors(doors: readonly Door[], cluster: ClusterConfig, problems: ConfigProblem[]): void {
  for (const door of doors) {
    if (door.spa && sameKeys(door.spa)) {
      problems.push({ variable: `KNOCK_DOOR_${door.name}_SPA_HMAC_KEY`, message: `is the same key as KNOCK_DOOR_${door.name}_SPA_KEY; fwknop needs two different keys (fwknop --key-gen makes both)` });
    }
  }
  checkSpaPorts(doors, problems);
  checkSharedSpaKeys(doors, problems);
  checkClusterSpaSources(doors, cluster, problems);
}

/**
 * An SPA port that is also a knock port would be read two ways; doors may share an SPA port (the
 * HMAC tells their datagrams apart), as fwknopd's stanzas share its one port.
 */
function checkSpaPorts(doors: readonly Door[], problems: ConfigProblem[]): void {
  const knockPorts = new Map<number, string>();
  for (const door of doors) {
    for (const p of [...door.sequence, ...(door.closeSequence ?? [])]) if (p.proto === "udp") knockPorts.set(p.port, door.name);
  }
  for (const door of doors) {
    const owner = door.spa && knockPorts.get(door.spa.port);
    if (owner) problems.push({ variable: `KNOCK_DOOR_${door.name}_SPA_PORT`, message: `is also a udp knock port of door ${owner}; give signed datagrams a port of their own` });
  }
}

/**
 * Doors sharing an SPA port are told apart by their HMAC: the first door whose key matches a
 * datagram decides, so a later door with the same HMAC key and digest could never open.
 */
function checkSharedSpaKeys(doors: readonly Door[], problems: ConfigProblem[]): void {
  const signed = doors.flatMap((door) => (door.spa && door.spa.keys.hmacKey.length > 0 ? [{ name: door.name, spa: door.spa }] : []));
  signed.forEach(({ name, spa }, i) => {
    const first = signed.slice(0, i).find((d) => d.spa.port === spa.port && sameHmac(d.spa, spa));
    if (first) {
      problems.push({
        variable: `KNOCK_DOOR_${name}_SPA_HMAC_KEY`,
        message: `is the same key as KNOCK_DOOR_${first.name}_SPA_HMAC_KEY on the same SPA port: door ${first.name} takes every datagram, so door ${name} could never open; give each door keys of its own (fwknop --key-gen)`,
      });
    }
  });
}

/**
 * Each node keeps its own replay record. A datagram bound to its sender's address (fwknop -a) opens
 * nothing new when replayed to another node: that node's grant goes to the same address, which the
 * cluster shares anyway. A `0.0.0.0` datagram (fwknop -s) opens for whoever sends it, so one
 * accepted on node 1 and replayed to node 2 would open node 2 for the replayer: refused here.
 */
function checkClusterSpaSources(doors: readonly Door[], cluster: ClusterConfig, problems: ConfigProblem[]): void {
  if (cluster.mode !== "kubernetes") return;
  for (const door of doors) {
    if (door.spa && !door.spa.requireSourceAddress) {
      problems.push({
        variable: `KNOCK_DOOR_${door.name}_SPA_REQUIRE_SOURCE_ADDRESS`,
        message:
          "is false, which KNOCK_CLUSTER=kubernetes refuses: each node keeps its own replay record, so a 0.0.0.0 datagram (fwknop -s) accepted on one node could be replayed to another from any address; set it to true and have clients name their address (fwknop -a or -R)",
      });
    }
  }
}

/**
 * The decrypted SPA plaintext (libfko's "encoded data" plus its digest):
 * `RAND:b64(user):TS:VERSION:TYPE:b64(message)[:b64(nat)][:b64(server_auth)][:TIMEOUT]:DIGEST`,
 * all base64 unpadded, DIGEST the base64 hash of everything before its colon (the hash told by
 * its length).
 */
import { hash } from "node:crypto";
import { hasPort, type PortSpec } from "../types.js";
import { b64, unb64 } from "./wire.js";

/** libfko's message types. */
export const SpaType = {
  command: 0,
  access: 1,
  natAccess: 2,
  clientTimeoutAccess: 3,
  clientTimeoutNatAccess: 4,
  localNatAccess: 5,
  clientTimeoutLocalNatAccess: 6,
} as const;
export type SpaType = (typeof SpaType)[keyof typeof SpaType];

const NAT_TYPES: ReadonlySet<number> = new Set([SpaType.natAccess, SpaType.clientTimeoutNatAccess, SpaType.localNatAccess, SpaType.clientTimeoutLocalNatAccess]);
const TIMEOUT_TYPES: ReadonlySet<number> = new Set([SpaType.clientTimeoutAccess, SpaType.clientTimeoutNatAccess, SpaType.clientTimeoutLocalNatAccess]);
export const isNatType = (type: SpaType): boolean => NAT_TYPES.has(type);

/** The hash of the inner digest, by the length of its base64 text. */
const DIGEST_BY_B64_LENGTH: ReadonlyMap<number, string> = new Map([
  [22, "md5"],
  [27, "sha1"],
  [43, "sha256"],
  [64, "sha384"],
  [86, "sha512"],
]);

/** libfko's bounds on the fields it reads. */
const RAND_DIGITS = 16;
const MAX_USERNAME = 64;
const MAX_TIMESTAMP_DIGITS = 12;
const RAND_FIELD = new RegExp(`^[0-9]{${RAND_DIGITS}}:`);
const TIMESTAMP_FIELD = new RegExp(`^[0-9]{1,${MAX_TIMESTAMP_DIGITS}}$`);

export interface SpaMessage {
  username: string;
  /** Unix seconds, as the client's clock saw them. */
  timestamp: number;
  version: string;
  type: SpaType;
  /** "IP,proto/port[,...]" for access kinds, "IP,command" for a command. */
  message: string;
  /** "internal IP,port" for the NAT kinds, else null. */
  natAccess: string | null;
  /** Seconds asked for by the client (-f), only in the client-timeout kinds; else null. */
  clientTimeoutS: number | null;
}

export type ParsedPlaintext =
  | { ok: true; message: SpaMessage }
  | { ok: false; result: "bad_key" | "bad_format" | "bad_digest"; detail: string };

const fail = (result: "bad_key" | "bad_format" | "bad_digest", detail: string): ParsedPlaintext => ({ ok: false, result, detail });

function isPrintable(bytes: Uint8Array): boolean {
  for (const c of bytes) if (c < 0x20 || c > 0x7e) return false;
  return true;
}

/** Unpadded base64 of printable, non-empty text, or null. */
function b64Text(field: string): string | null {
  const bytes = unb64(field);
  return bytes && bytes.length > 0 && isPrintable(bytes) ? bytes.toString("latin1") : null;
}

export function parsePlaintext(plaintext: Uint8Array): ParsedPlaintext {
  const text = Buffer.from(plaintext).toString("latin1");
  // libfko's own test that decryption worked: the random digits and their colon come first.
  if (!RAND_FIELD.test(text)) {
    return fail("bad_key", "the HMAC matched but the packet does not decrypt to an SPA message: the door's encryption key differs from the client's KEY_BASE64");
  }
  if (!isPrintable(plaintext)) return fail("bad_format", "the decrypted message holds unprintable bytes");

  const cut = text.lastIndexOf(":");
  const body = text.slice(0, cut);
  const digest = text.slice(cut + 1);
  const algorithm = DIGEST_BY_B64_LENGTH.get(digest.length);
  if (!algorithm) return fail("bad_digest", `the message digest is ${digest.length} characters, which is no digest fwknop makes`);
  if (b64(hash(algorithm, plaintext.subarray(0, cut), "buffer")) !== digest) return fail("bad_digest", `the ${algorithm} digest does not match the message`);

  const fields = body.split(":");
  const typeField = fields[4];
  if (typeField === undefined || !/^[0-6]$/.test(typeField)) return fail("bad_format", "no known message type");
  const type = Number(typeField) as SpaType;
  const hasNat = NAT_TYPES.has(type);
  const hasTimeout = TIMEOUT_TYPES.has(type);
  const required = 6 + (hasNat ? 1 : 0) + (hasTimeout ? 1 : 0);
  // One more field than required is the server-auth string, which fwknop's client never sends and we do not use.
  if (fields.length !== required && fields.length !== required + 1) {
    return fail("bad_format", `message type ${type} takes ${required} fields, the message has ${fields.length}`);
  }

  const username = b64Text(fields[1]!);
  if (username === null || username.length > MAX_USERNAME) return fail("bad_format", "the username is not base64 of 1-64 printable characters");
  const tsField = fields[2]!;
  if (!TIMESTAMP_FIELD.test(tsField)) return fail("bad_format", "the timestamp is not a number");
  const version = fields[3]!;
  if (version === "") return fail("bad_format", "the version is empty");
  const message = b64Text(fields[5]!);
  if (message === null) return fail("bad_format", "the access message is not base64 of printable text");
  const natAccess = hasNat ? b64Text(fields[6]!) : null;
  if (hasNat && natAccess === null) return fail("bad_format", "the NAT access field is not base64 of printable text");
  let clientTimeoutS: number | null = null;
  if (hasTimeout) {
    const timeoutField = fields[fields.length - 1]!;
    if (!/^[0-9]{1,10}$/.test(timeoutField)) return fail("bad_format", "the client timeout is not a number");
    clientTimeoutS = Number(timeoutField);
  }
  return { ok: true, message: { username, timestamp: Number(tsField), version, type, message, natAccess, clientTimeoutS } };
}

/** "IP,proto/port[,proto/port...]" read into the address text and the ports; null if it is not that. */
export function parseAccessMessage(message: string): { address: string; ports: PortSpec[] } | null {
  const [address, ...specs] = message.split(",");
  if (!address || specs.length === 0) return null;
  const ports: PortSpec[] = [];
  for (const spec of specs) {
    const m = /^(tcp|udp)\/([0-9]{1,5})$/.exec(spec);
    const port = Number(m?.[2]);
    if (!m || port < 1 || port > 65535) return null;
    // The same port twice is one port: it must not count twice against the door's or a grant's bounds.
    const given: PortSpec = { proto: m[1] as PortSpec["proto"], port };
    if (!hasPort(ports, given)) ports.push(given);
  }
  return { address, ports };
}

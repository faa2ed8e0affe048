/**
 * Builds SPA datagrams as the fwknop client does (FKO protocol 3.0.0, Rijndael with HMAC): the
 * inverse of message.ts and wire.ts. Pure: the caller brings the randomness (the salt and the 16
 * random digits) and the clock (the timestamp), so the same inputs give the same datagram, byte
 * for byte what the real client writes (held to it by the unit tests).
 */
import { createCipheriv, createHash } from "node:crypto";
import type { PortSpec } from "../types.js";
import { SpaType } from "./message.js";
import { MAX_SPA_LENGTH, type SpaKeys } from "./verify.js";
import { b64, bytesToKey, hmacText, SALT_LENGTH, SALTED_B64_PREFIX, SALTED_MAGIC } from "./wire.js";

/** The protocol version the fwknop 2.6 client writes into every message. */
export const SPA_VERSION = "3.0.0";

/** Fields of one plaintext; every kind fwknop has, so tests can also make what fwknopd refuses. */
export interface SpaFields {
  /** 16 decimal digits from the caller's randomness (libfko's RAND). */
  rand: string;
  username: string;
  /** Unix seconds from the caller's clock. */
  timestamp: number;
  type: SpaType;
  /** "IP,proto/port[,...]" for access kinds, "IP,command" for a command. */
  message: string;
  nat?: string;
  clientTimeoutS?: number;
  /** The inner digest (fwknop -m); sha256 unless given. */
  digest?: "md5" | "sha1" | "sha256" | "sha384" | "sha512";
}

const enc = (text: string): string => b64(Buffer.from(text, "latin1"));

/** The plaintext with its digest: `RAND:b64(user):TS:VERSION:TYPE:b64(message)[:b64(nat)][:TIMEOUT]:DIGEST`. */
export function spaPlaintext(f: SpaFields): string {
  if (!/^[0-9]{16}$/.test(f.rand)) throw new RangeError("rand must be 16 decimal digits");
  if (!/^[\x20-\x7e]{1,64}$/.test(f.username)) throw new RangeError("the username must be 1-64 printable characters");
  const fields = [f.rand, enc(f.username), String(f.timestamp), SPA_VERSION, String(f.type), enc(f.message)];
  if (f.nat !== undefined) fields.push(enc(f.nat));
  if (f.clientTimeoutS !== undefined) fields.push(String(f.clientTimeoutS));
  const body = fields.join(":");
  return `${body}:${b64(createHash(f.digest ?? "sha256").update(body, "latin1").digest())}`;
}

/** What `fwknop -A PORTS -a ADDRESS [-f SECONDS] [-U USER]` asks for. */
export interface AccessRequestFields {
  rand: string;
  username: string;
  timestamp: number;
  /** The address to open for, as text; "0.0.0.0" for "the datagram's source" (fwknop -s). */
  address: string;
  ports: readonly PortSpec[];
  /** fwknop -f: the grant's length the client asks for; null leaves it to the server. */
  clientTimeoutS: number | null;
}

/** The plaintext of an access request: type 1, or 3 when it carries a client timeout, as the client picks. */
export function accessPlaintext(r: AccessRequestFields): string {
  if (r.ports.length === 0) throw new RangeError("an access request names at least one port");
  const message = [r.address, ...r.ports.map((p) => `${p.proto}/${p.port}`)].join(",");
  const timed = r.clientTimeoutS !== null && r.clientTimeoutS > 0;
  return spaPlaintext({
    rand: r.rand,
    username: r.username,
    timestamp: r.timestamp,
    type: timed ? SpaType.clientTimeoutAccess : SpaType.access,
    message,
    ...(timed ? { clientTimeoutS: r.clientTimeoutS! } : {}),
  });
}

/** The datagram's payload text, `E' || H`, for a plaintext under `keys` with the caller's 8-byte salt. */
export function encodeSpa(plaintext: string, keys: SpaKeys, salt: Uint8Array): string {
  if (salt.length !== SALT_LENGTH) throw new RangeError(`the salt must be ${SALT_LENGTH} bytes`);
  const { aesKey, iv } = bytesToKey(keys.encryptionKey, salt);
  const cipher = createCipheriv("aes-256-cbc", aesKey, iv);
  const e = b64(Buffer.concat([SALTED_MAGIC, salt, cipher.update(plaintext, "latin1"), cipher.final()]));
  const payload = e.slice(SALTED_B64_PREFIX.length) + hmacText(e, keys.hmacKey, keys.hmacDigest);
  if (payload.length > MAX_SPA_LENGTH) throw new RangeError(`the datagram would be ${payload.length} bytes, more than the ${MAX_SPA_LENGTH} fwknopd reads: ask for fewer ports`);
  return payload;
}

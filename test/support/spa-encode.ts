/**
 * Builds SPA datagrams the way the fwknop client does, for what the client itself will not write
 * (an IPv6 address in the message: `fwknop -a` takes IPv4 only). Held to the real client by a test
 * that rebuilds a client-written vector byte for byte from its plaintext and salt.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from "node:crypto";
import { b64, HMAC_B64_LENGTH, SALTED_B64_PREFIX, type HmacDigest } from "../../src/core/spa/wire.js";

export interface SpaFields {
  rand?: string;
  username: string;
  timestamp: number;
  type: number;
  message: string;
  nat?: string;
  clientTimeoutS?: number;
  digest?: "md5" | "sha1" | "sha256" | "sha384" | "sha512";
}

const enc = (text: string) => b64(Buffer.from(text, "latin1"));

/** The plaintext with its digest. */
export function spaPlaintext(f: SpaFields): string {
  const fields = [f.rand ?? "1234567890123456", enc(f.username), String(f.timestamp), "3.0.0", String(f.type), enc(f.message)];
  if (f.nat !== undefined) fields.push(enc(f.nat));
  if (f.clientTimeoutS !== undefined) fields.push(String(f.clientTimeoutS));
  const body = fields.join(":");
  return `${body}:${b64(createHash(f.digest ?? "sha256").update(body, "latin1").digest())}`;
}

/** E' || H for a plaintext, with a given or random salt. */
export function spaDatagram(plaintext: string, keys: { encryptionKey: Uint8Array; hmacKey: Uint8Array; hmacDigest: HmacDigest }, salt: Uint8Array = randomBytes(8)): string {
  const d: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 0; i < 3; i++) d.push((prev = createHash("md5").update(prev).update(keys.encryptionKey).update(salt).digest()));
  const cipher = createCipheriv("aes-256-cbc", Buffer.concat([d[0]!, d[1]!]), d[2]!);
  const raw = Buffer.concat([Buffer.from("Salted__"), salt, cipher.update(plaintext, "latin1"), cipher.final()]);
  const e = b64(raw);
  const h = b64(createHmac(keys.hmacDigest, keys.hmacKey).update(e).digest());
  if (!e.startsWith(SALTED_B64_PREFIX) || h.length !== HMAC_B64_LENGTH[keys.hmacDigest]) throw new Error("encoder bug");
  return e.slice(SALTED_B64_PREFIX.length) + h;
}

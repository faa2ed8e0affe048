/**
 * The outer layer of an fwknop SPA datagram (FKO protocol 3.0.0, Rijndael with HMAC): the text
 * `E' || H`, where E is the unpadded base64 of `"Salted__" || salt || AES-256-CBC(plaintext)` with
 * its constant first 10 characters cut off, and H the unpadded base64 HMAC over the ASCII text of
 * the whole E. Key and IV come from OpenSSL's EVP_BytesToKey (MD5, one round) over the key bytes
 * and the salt, as `openssl enc -md md5` and libfko do.
 */
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from "node:crypto";

export type HmacDigest = "sha256" | "sha384" | "sha512";

/** Unpadded base64 length of each HMAC the client can append. */
export const HMAC_B64_LENGTH: Record<HmacDigest, number> = { sha256: 43, sha384: 64, sha512: 86 };

/** base64("Salted__") up to the last character it fully determines: every E starts with it, so the client leaves it out. */
export const SALTED_B64_PREFIX = "U2FsdGVkX1";
export const SALTED_MAGIC = Buffer.from("Salted__", "latin1");
export const SALT_LENGTH = 8;
const AES_BLOCK = 16;

const B64_TEXT = /^[A-Za-z0-9+/]*$/;

/** Standard base64 without padding, as libfko writes it. */
export const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64").replace(/=+$/, "");

/**
 * Strict unpadded base64 decoding: null for any character outside the standard alphabet, for '='
 * and for a length no encoding produces (Buffer.from would skip or guess instead).
 */
export function unb64(text: string): Buffer | null {
  if (!B64_TEXT.test(text) || text.length % 4 === 1) return null;
  return Buffer.from(text, "base64");
}

/** Whether every byte is in the base64 alphabet: a cheap filter before any hashing. */
export function isB64Text(payload: Uint8Array): boolean {
  for (const c of payload) {
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f;
    if (!ok) return false;
  }
  return true;
}

/** The full E (prefix restored) and the HMAC text H, split by the HMAC's known length. */
export function splitPayload(text: string, digest: HmacDigest): { e: string; h: string } {
  const cut = text.length - HMAC_B64_LENGTH[digest];
  return { e: SALTED_B64_PREFIX + text.slice(0, cut), h: text.slice(cut) };
}

/** H for the full E text: the unpadded base64 HMAC over its ASCII. */
export const hmacText = (e: string, hmacKey: Uint8Array, digest: HmacDigest): string => b64(createHmac(digest, hmacKey).update(e, "latin1").digest());

/** Constant-time comparison of H with the HMAC of E under the door's key. */
export function hmacMatches(e: string, h: string, hmacKey: Uint8Array, digest: HmacDigest): boolean {
  const expected = Buffer.from(hmacText(e, hmacKey, digest), "latin1");
  const given = Buffer.from(h, "latin1");
  // Equal by construction after splitPayload; the check keeps timingSafeEqual from throwing otherwise.
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Key (32 bytes) and IV (16) from EVP_BytesToKey with MD5 and one round: D_i = MD5(D_{i-1} || key || salt). */
export function bytesToKey(key: Uint8Array, salt: Uint8Array): { aesKey: Buffer; iv: Buffer } {
  const blocks: Buffer[] = [];
  let prev = Buffer.alloc(0);
  while (blocks.length < 3) {
    prev = createHash("md5").update(prev).update(key).update(salt).digest();
    blocks.push(prev);
  }
  return { aesKey: Buffer.concat(blocks.slice(0, 2)), iv: blocks[2]! };
}

export type Decrypted = { ok: true; plaintext: Buffer } | { ok: false; reason: "not_salted" | "bad_length" | "bad_padding" };

/** Decrypts the full E text (already authenticated by its HMAC). */
export function decryptE(e: string, key: Uint8Array): Decrypted {
  const raw = unb64(e);
  if (!raw || raw.length < SALTED_MAGIC.length + SALT_LENGTH || !raw.subarray(0, SALTED_MAGIC.length).equals(SALTED_MAGIC)) {
    return { ok: false, reason: "not_salted" };
  }
  const salt = raw.subarray(SALTED_MAGIC.length, SALTED_MAGIC.length + SALT_LENGTH);
  const ciphertext = raw.subarray(SALTED_MAGIC.length + SALT_LENGTH);
  if (ciphertext.length === 0 || ciphertext.length % AES_BLOCK !== 0) return { ok: false, reason: "bad_length" };
  const { aesKey, iv } = bytesToKey(key, salt);
  const decipher = createDecipheriv("aes-256-cbc", aesKey, iv);
  try {
    return { ok: true, plaintext: Buffer.concat([decipher.update(ciphertext), decipher.final()]) };
  } catch {
    // PKCS#7 padding that does not check out: almost always a different encryption key.
    return { ok: false, reason: "bad_padding" };
  }
}

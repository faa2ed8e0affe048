/**
 * The outer layer of an fwknop SPA datagram (FKO protocol 3.0.0, Rijndael with HMAC): the text
 * `E' || H`, where E is the unpadded base64 of `"Salted__" || salt || AES-256-CBC(plaintext)` with
 * its constant first 10 characters cut off, and H the unpadded base64 HMAC over the ASCII text of
 * the whole E. Key and IV come from OpenSSL's EVP_BytesToKey (MD5, one round) over the key bytes
 * and the salt, as `openssl enc -md md5` and libfko do.
 */
import { createDecipheriv, createHmac, hash, type KeyObject } from "node:crypto";

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

/** 1 for each byte of the standard base64 alphabet. */
const B64_BYTE = new Uint8Array(256);
for (const c of Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "latin1")) B64_BYTE[c] = 1;
const SALTED_B64_PREFIX_BYTES = Buffer.from(SALTED_B64_PREFIX, "latin1");

/** Whether every byte is in the base64 alphabet: a cheap filter before any hashing. */
export function isB64Text(payload: Uint8Array): boolean {
  for (let i = 0; i < payload.length; i++) if (B64_BYTE[payload[i]!] === 0) return false;
  return true;
}

/** Whether the payload starts with the prefix every E has and every client cuts off. */
export function hasSaltedPrefix(payload: Uint8Array): boolean {
  return payload.length >= SALTED_B64_PREFIX_BYTES.length && SALTED_B64_PREFIX_BYTES.every((c, i) => payload[i] === c);
}

/** H for the full E text: the unpadded base64 HMAC over its ASCII (what a client appends). */
export const hmacText = (e: string, hmacKey: Uint8Array | KeyObject, digest: HmacDigest): string => b64(createHmac(digest, hmacKey).update(e, "latin1").digest());

/**
 * Whether the payload ends in the unpadded base64 HMAC, under the door's key, of the full E (the
 * cut-off prefix restored, then the rest of the payload). Works on the bytes as captured, making no
 * strings: this is all a forged datagram costs. The comparison takes the same time wherever the
 * texts differ.
 */
export function payloadHmacMatches(payload: Uint8Array, hmacKey: Uint8Array | KeyObject, digest: HmacDigest): boolean {
  const length = HMAC_B64_LENGTH[digest];
  const cut = payload.length - length;
  if (cut < 0) return false;
  const expected = createHmac(digest, hmacKey).update(SALTED_B64_PREFIX_BYTES).update(payload.subarray(0, cut)).digest("base64");
  let diff = 0;
  for (let i = 0; i < length; i++) diff |= expected.charCodeAt(i) ^ payload[cut + i]!;
  return diff === 0;
}

/** The full E text (prefix restored) of a payload whose HMAC checked out. */
export function fullE(payload: Uint8Array, digest: HmacDigest): string {
  const body = Buffer.from(payload.buffer, payload.byteOffset, payload.length - HMAC_B64_LENGTH[digest]);
  return SALTED_B64_PREFIX + body.toString("latin1");
}

/** Key (32 bytes) and IV (16) from EVP_BytesToKey with MD5 and one round: D_i = MD5(D_{i-1} || key || salt). */
export function bytesToKey(key: Uint8Array, salt: Uint8Array): { aesKey: Buffer; iv: Buffer } {
  const keySalt = Buffer.concat([key, salt]);
  const d1 = hash("md5", keySalt, "buffer");
  const d2 = hash("md5", Buffer.concat([d1, keySalt]), "buffer");
  const d3 = hash("md5", Buffer.concat([d2, keySalt]), "buffer");
  return { aesKey: Buffer.concat([d1, d2]), iv: d3 };
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

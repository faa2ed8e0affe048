/**
 * The source network an address belongs to, for the per-prefix caps: the address text (as the
 * kernel and the knock machine print it) masked to a prefix length and written as hex, so that
 * every address of one /24 or /64 gives the same key.
 */
import type { Family, SourcePrefixes } from "../types.js";

/** The bytes of an IPv4 or IPv6 address text; null when it is not one. */
export function addressBytes(text: string, family: Family): Uint8Array | null {
  if (family === 4) return ipv4Bytes(text);
  const [head = "", tail, extra] = text.split("::");
  if (extra !== undefined) return null;
  const groups = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const words = part.split(":");
    for (const [i, word] of words.entries()) {
      if (i === words.length - 1 && word.includes(".")) {
        const v4 = ipv4Bytes(word);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-f]{1,4}$/i.test(word)) out.push(parseInt(word, 16));
      else return null;
    }
    return out;
  };
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  if (!left || !right) return null;
  const missing = 8 - left.length - right.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return null;
  const words = [...left, ...Array<number>(missing).fill(0), ...right];
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

function ipv4Bytes(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return Uint8Array.from(parts.map(Number));
}

/** "4/c61200" for 198.18.0.x in a /24; the text itself when it is no address (a key of its own). */
export function prefixKey(src: string, family: Family, prefixes: SourcePrefixes): string {
  const bytes = addressBytes(src, family);
  if (!bytes) return `?${src}`;
  const bits = family === 4 ? prefixes.v4 : prefixes.v6;
  let key = `${family}/`;
  for (let i = 0; i * 8 < bits; i++) {
    const keep = Math.min(8, bits - i * 8);
    key += (bytes[i]! & ((0xff00 >> keep) & 0xff)).toString(16).padStart(2, "0");
  }
  return key;
}

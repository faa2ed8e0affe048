/**
 * The source network an address belongs to, for the per-prefix caps: the address text (as the
 * kernel and the knock machine print it) masked to a prefix length and written as hex, so that
 * every address of one /24 or /64 gives the same key.
 */
import { maskToPrefix, parseAddress } from "../packet/address.js";
import type { Family, SourcePrefixes } from "../types.js";

/** "4/c61200" for 198.18.0.x in a /24; the text itself when it is no address of `family` (a key of its own). */
export function prefixKey(src: string, family: Family, prefixes: SourcePrefixes): string {
  const parsed = parseAddress(src);
  if (!parsed || parsed.family !== family) return `?${src}`;
  const masked = maskToPrefix(parsed.addr, family, prefixes, parsed.addr);
  const bits = family === 4 ? prefixes.v4 : prefixes.v6;
  let key = `${family}/`;
  for (let i = 0; i * 8 < bits; i++) key += masked[i]!.toString(16).padStart(2, "0");
  return key;
}

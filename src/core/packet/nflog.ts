/**
 * An NFLOG message as libpcap hands it over (LINKTYPE_NFLOG, 239): a 4-byte header (family,
 * version, group), then TLVs (length and type little-endian, each padded to 4 bytes). The kernel
 * engine reads two of them: the log prefix (which door and sequence) and the packet (who knocked).
 * Never throws: a message that does not parse is null.
 */
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;

export interface NflogParts {
  prefix: string;
  /** The logged packet (from its IP header) is frame[payloadAt, payloadEnd). */
  payloadAt: number;
  payloadEnd: number;
}

export function nflogParts(frame: Uint8Array, length: number): NflogParts | null {
  let prefix: string | null = null;
  let payloadAt = -1;
  let payloadEnd = -1;
  for (let at = 4; at + 4 <= length; ) {
    const size = frame[at]! | (frame[at + 1]! << 8);
    const type = (frame[at + 2]! | (frame[at + 3]! << 8)) & 0x7fff;
    if (size < 4 || at + size > length) return null;
    if (type === NFULA_PREFIX) {
      // NUL-terminated.
      let end = at + 4;
      while (end < at + size && frame[end] !== 0) end++;
      prefix = new TextDecoder().decode(frame.subarray(at + 4, end));
    } else if (type === NFULA_PAYLOAD) {
      payloadAt = at + 4;
      payloadEnd = at + size;
    }
    at += (size + 3) & ~3;
  }
  return prefix !== null && payloadAt >= 0 ? { prefix, payloadAt, payloadEnd } : null;
}

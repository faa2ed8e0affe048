/** Address text to the bytes the decoder would hand on, for tests that build knocks by hand. */
import net from "node:net";

function groups(part: string): number[] {
  if (part === "") return [];
  return part.split(":").flatMap((g) => {
    if (!g.includes(".")) return [parseInt(g, 16)];
    const [a = 0, b = 0, c = 0, d = 0] = g.split(".").map(Number);
    return [(a << 8) | b, (c << 8) | d];
  });
}

/** 16 bytes: an IPv4 address in the first 4, an IPv6 address in all. */
export function addressBytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  if (net.isIPv4(text)) {
    text.split(".").forEach((octet, i) => (out[i] = Number(octet)));
    return out;
  }
  if (!net.isIPv6(text)) throw new Error(`not an IP address: ${text}`);
  const [head = "", tail] = text.split("::");
  const before = groups(head);
  const after = tail === undefined ? [] : groups(tail);
  const all = [...before, ...new Array<number>(8 - before.length - after.length).fill(0), ...after];
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 255;
  });
  return out;
}

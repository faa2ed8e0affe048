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

/** nfnetlink's NFLOG subsystem (NFNL_SUBSYS_ULOG) and its config message, NFULNL_MSG_CONFIG. */
const NFULNL_MSG_CONFIG = (4 << 8) | 1;
const NLM_F_REQUEST = 1;
/** NFULA_CFG_TIMEOUT: how long the kernel holds an NFLOG group's messages for a batch, big-endian u32. */
const NFULA_CFG_TIMEOUT = 4;

/**
 * The netlink request setting NFLOG group `group`'s flush timeout to `hundredths` of a second. The
 * netlink header is in the host's byte order (`littleEndian`), the nfnetlink parts in network order.
 * No ACK asked for: it would reach libpcap's reader, which skips it; the result is read back from
 * /proc instead (nflogFlushTimeout).
 */
export function nflogFlushTimeoutRequest(group: number, hundredths: number, littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(28);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, littleEndian); // nlmsg_len
  v.setUint16(4, NFULNL_MSG_CONFIG, littleEndian);
  v.setUint16(6, NLM_F_REQUEST, littleEndian);
  // nlmsg_seq and nlmsg_pid stay 0: to the kernel.
  out[16] = 0; // nfgen_family AF_UNSPEC
  out[17] = 0; // NFNETLINK_V0
  v.setUint16(18, group); // res_id
  v.setUint16(20, 8, littleEndian); // nla_len
  v.setUint16(22, NFULA_CFG_TIMEOUT, littleEndian);
  v.setUint32(24, hundredths);
  return out;
}

/**
 * Group `group`'s flush timeout in hundredths of a second, from the kernel's table of NFLOG
 * instances (/proc/net/netfilter/nfnetlink_log: group, peer portid, queue length, copy mode, copy
 * range, flush timeout, use count); undefined when the group has no reader.
 */
export function nflogFlushTimeout(table: string, group: number): number | undefined {
  for (const line of table.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 6 && Number(f[0]) === group) return Number(f[5]);
  }
  return undefined;
}

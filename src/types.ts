/** Shared value types of the pure core. */

export type Proto = "tcp" | "udp";
export type Family = 4 | 6;

/** One port+protocol of a knock sequence or of a protected service. */
export interface PortSpec {
  port: number;
  proto: Proto;
}

/** TCP flag bits as they sit in the TCP header's flags byte. */
export const TcpFlag = {
  fin: 0x01,
  syn: 0x02,
  rst: 0x04,
  psh: 0x08,
  ack: 0x10,
  urg: 0x20,
} as const;
export type TcpFlagName = keyof typeof TcpFlag;

/** A flag condition in knockd's syntax ("syn,!ack"): bits in `set` must be 1, bits in `clear` must be 0. */
export interface TcpFlagMatch {
  set: number;
  clear: number;
}

/** What the decoder extracts from a captured frame: only what knock recognition needs. */
export interface Knock {
  family: Family;
  /** Canonical textual source address (dotted quad, or RFC 5952 IPv6). */
  src: string;
  proto: Proto;
  dstPort: number;
  /** TCP flags byte; 0 for UDP. */
  tcpFlags: number;
}

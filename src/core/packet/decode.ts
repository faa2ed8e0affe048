/**
 * Pure frame decoder: turns a captured link-layer frame into the few fields knock
 * recognition needs. It runs once per sniffed packet, so it reads bytes directly,
 * reuses one result object and allocates nothing: the source stays bytes until read as text.
 */
import { SourceAddress, isBogusSource } from "./address.js";
import type { Family, Knock, Proto } from "../types.js";

/**
 * Link types as npm `cap`'s Cap#open names them ("ETHERNET", "LINKTYPE_LINUX_SLL",
 * "RAW", "NULL"); "LINUX_SLL2" (DLT 276) is ours, cap reports it as unknown.
 */
export type LinkType = "ETHERNET" | "LINKTYPE_LINUX_SLL" | "LINUX_SLL2" | "RAW" | "NULL";

/**
 * "knock": `Decoder#knock` holds a TCP/UDP packet; "ignored": well-formed but not a candidate;
 * "bogus_source": from an address no client has (loopback, multicast, broadcast, unspecified,
 * IPv4-mapped); "malformed": truncated or invalid.
 */
export type DecodeOutcome = "knock" | "ignored" | "bogus_source" | "malformed";

const LINK_TYPES: readonly LinkType[] = ["ETHERNET", "LINKTYPE_LINUX_SLL", "LINUX_SLL2", "RAW", "NULL"];

export function isLinkType(value: string): value is LinkType {
  return (LINK_TYPES as readonly string[]).includes(value);
}

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_VLAN = 0x8100;
const ETH_QINQ = 0x88a8;
const ETH_QINQ_OLD = 0x9100;
/** More stacked tags than this is not a real network; stop walking rather than loop on garbage. */
const MAX_VLAN_TAGS = 4;
const MAX_IPV6_EXT_HEADERS = 8;
/** sll_pkttype PACKET_OUTGOING: our own transmissions, never a knock. */
const SLL_OUTGOING = 4;

const PROTO_TCP = 6;
const PROTO_UDP = 17;

/** The decoder's one reusable result. */
class DecodedKnock extends SourceAddress implements Knock {
  proto: Proto = "tcp";
  dstPort = 0;
  tcpFlags = 0;
}

export class Decoder {
  readonly linkType: LinkType;
  /** Valid only right after decode() returned "knock"; overwritten by the next call. Copy what you keep. */
  readonly knock: Knock;
  private readonly slot = new DecodedKnock();
  /** Exceptions the guard in decode() caught: each one is a decoder bug (the fuzz tests expect 0). */
  caught = 0;
  /**
   * After a UDP "knock": where its payload lies in the frame, [payloadStart, payloadEnd), as the UDP
   * length field says. payloadEnd is -1 when that length is invalid or reaches past the IP packet
   * or past what was captured (a short snaplen, a first fragment): then there is no whole datagram.
   */
  payloadStart = 0;
  payloadEnd = -1;

  constructor(linkType: LinkType) {
    if (!isLinkType(linkType)) {
      // Fail at startup rather than silently ignoring every packet (e.g. cap's "IEEE802_11_RADIO").
      throw new Error(`unsupported link type: ${String(linkType)}`);
    }
    this.linkType = linkType;
    this.knock = this.slot;
  }

  /** Decode buf[0..len). Never throws. */
  decode(buf: Buffer, len: number): DecodeOutcome {
    try {
      if (!(buf instanceof Uint8Array)) return "malformed";
      if (!(len >= 0) || len > buf.length) return "malformed";
      return this.link(buf, Math.floor(len));
    } catch {
      // Unreachable with the bounds checks below; a guard so a decoder bug can never kill the sniffer.
      this.caught++;
      return "malformed";
    }
  }

  private link(b: Uint8Array, len: number): DecodeOutcome {
    switch (this.linkType) {
      case "ETHERNET":
        if (len < 14) return "malformed";
        return this.ether(b, len, 14, (b[12]! << 8) | b[13]!);
      case "LINKTYPE_LINUX_SLL":
        // packet type(2) hatype(2) addrlen(2) addr(8) protocol(2)
        if (len < 16) return "malformed";
        if (((b[0]! << 8) | b[1]!) === SLL_OUTGOING) return "ignored";
        return this.ether(b, len, 16, (b[14]! << 8) | b[15]!);
      case "LINUX_SLL2":
        // protocol(2) reserved(2) ifindex(4) hatype(2) packet type(1) addrlen(1) addr(8)
        if (len < 20) return "malformed";
        if (b[10] === SLL_OUTGOING) return "ignored";
        return this.ether(b, len, 20, (b[0]! << 8) | b[1]!);
      case "RAW":
        return this.ipAnyVersion(b, len, 0);
      case "NULL": {
        if (len < 4) return "malformed";
        // The AF value is in the capturing host's byte order; all valid values fit in
        // one byte, so accept it at either end and stay endian-agnostic.
        let af: number;
        if (b[1] === 0 && b[2] === 0 && b[3] === 0) af = b[0]!;
        else if (b[0] === 0 && b[1] === 0 && b[2] === 0) af = b[3]!;
        else return "malformed";
        if (af === 2) return this.ipv4(b, len, 4);
        // AF_INET6 differs per OS: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS 30.
        if (af === 10 || af === 24 || af === 28 || af === 30) return this.ipv6(b, len, 4);
        return "ignored";
      }
    }
    return "ignored";
  }

  /** Walk stacked VLAN tags (802.1Q / 802.1ad), then dispatch on the inner ethertype. */
  private ether(b: Uint8Array, len: number, off: number, etype: number): DecodeOutcome {
    let tags = 0;
    while (etype === ETH_VLAN || etype === ETH_QINQ || etype === ETH_QINQ_OLD) {
      if (++tags > MAX_VLAN_TAGS) return "ignored";
      // TCI(2) then the next ethertype(2)
      if (off + 4 > len) return "malformed";
      etype = (b[off + 2]! << 8) | b[off + 3]!;
      off += 4;
    }
    if (etype === ETH_IPV4) return this.ipv4(b, len, off);
    if (etype === ETH_IPV6) return this.ipv6(b, len, off);
    return "ignored";
  }

  private ipAnyVersion(b: Uint8Array, len: number, off: number): DecodeOutcome {
    if (off >= len) return "malformed";
    const version = b[off]! >> 4;
    if (version === 4) return this.ipv4(b, len, off);
    if (version === 6) return this.ipv6(b, len, off);
    return "malformed";
  }

  private ipv4(b: Uint8Array, len: number, off: number): DecodeOutcome {
    if (off + 20 > len) return "malformed";
    const vihl = b[off]!;
    if (vihl >> 4 !== 4) return "malformed";
    const ihl = (vihl & 0x0f) * 4;
    if (ihl < 20) return "malformed";
    const total = (b[off + 2]! << 8) | b[off + 3]!;
    if (total < ihl) return "malformed";
    if (off + ihl > len) return "malformed";
    // Non-first fragments carry no L4 header.
    if ((((b[off + 6]! << 8) | b[off + 7]!) & 0x1fff) !== 0) return "ignored";
    // Bound L4 by the IP length (excludes Ethernet padding) and by what was captured
    // (a short snaplen may cut the payload; headers are all we need).
    const end = Math.min(off + total, len);
    const src = off + 12;
    return this.l4(b, off + ihl, end, b[off + 9]!, 4, src);
  }

  private ipv6(b: Uint8Array, len: number, off: number): DecodeOutcome {
    if (off + 40 > len) return "malformed";
    if (b[off]! >> 4 !== 6) return "malformed";
    const payload = (b[off + 4]! << 8) | b[off + 5]!;
    // Payload length 0 means a jumbogram (or a TSO packet): only the capture bounds it.
    const end = payload === 0 ? len : Math.min(off + 40 + payload, len);
    const src = off + 8;
    let next = b[off + 6]!;
    let p = off + 40;
    for (let n = 0; n <= MAX_IPV6_EXT_HEADERS; n++) {
      switch (next) {
        case PROTO_TCP:
        case PROTO_UDP:
          return this.l4(b, p, end, next, 6, src);
        case 0: // hop-by-hop
        case 43: // routing
        case 60: // destination options
          if (p + 2 > end) return "malformed";
          next = b[p]!;
          p += (b[p + 1]! + 1) * 8;
          break;
        case 44: // fragment
          if (p + 8 > end) return "malformed";
          if ((((b[p + 2]! << 8) | b[p + 3]!) >> 3) !== 0) return "ignored";
          next = b[p]!;
          p += 8;
          break;
        case 51: // AH counts 32-bit words minus 2
          if (p + 2 > end) return "malformed";
          next = b[p]!;
          p += (b[p + 1]! + 2) * 4;
          break;
        default:
          // ESP (50) hides what follows, 59 = no next header, the rest is not TCP/UDP.
          return "ignored";
      }
      if (p > end) return "malformed";
    }
    // A chain this long is legal but not something a knock client sends.
    return "ignored";
  }

  private l4(b: Uint8Array, off: number, end: number, proto: number, family: Family, src: number): DecodeOutcome {
    let flags = 0;
    let kind: Proto;
    if (proto === PROTO_TCP) {
      if (off + 20 > end) return "malformed";
      if (b[off + 12]! >> 4 < 5) return "malformed";
      flags = b[off + 13]!;
      kind = "tcp";
      this.payloadEnd = -1;
    } else if (proto === PROTO_UDP) {
      if (off + 8 > end) return "malformed";
      kind = "udp";
      const udpLength = (b[off + 4]! << 8) | b[off + 5]!;
      this.payloadStart = off + 8;
      this.payloadEnd = udpLength >= 8 && off + udpLength <= end ? off + udpLength : -1;
    } else {
      return "ignored";
    }
    const port = (b[off + 2]! << 8) | b[off + 3]!;
    if (port === 0) return "malformed";
    if (isBogusSource(b, src, family)) return "bogus_source";
    const k = this.slot;
    k.setAddress(family, b, src);
    k.proto = kind;
    k.dstPort = port;
    k.tcpFlags = flags;
    return "knock";
  }
}

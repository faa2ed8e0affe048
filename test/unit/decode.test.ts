import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net, { BlockList } from "node:net";
import { BOGUS_SOURCE_PREFIXES, formatIPv6 } from "../../src/core/packet/address.js";
import { Decoder, isLinkType, type LinkType } from "../../src/core/packet/decode.js";
import { TcpFlag, type Knock } from "../../src/core/types.js";
import { buildFrame, macBytes } from "../support/frames.js";

// ---- frame builders -------------------------------------------------------

const b = (...parts: (Buffer | number[])[]): Buffer => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
const u16 = (v: number): number[] => [(v >> 8) & 0xff, v & 0xff];

function tcp(dstPort: number, flags: number = TcpFlag.syn, srcPort = 40000, dataOffset = 5): Buffer {
  const h = Buffer.alloc(Math.max(20, dataOffset * 4));
  h.writeUInt16BE(srcPort, 0);
  h.writeUInt16BE(dstPort, 2);
  h.writeUInt32BE(1, 4);
  h[12] = dataOffset << 4;
  h[13] = flags;
  h.writeUInt16BE(65535, 14);
  return h;
}

function udp(dstPort: number, payload = Buffer.alloc(4)): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(5353, 0);
  h.writeUInt16BE(dstPort, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return b(h, payload);
}

interface V4Opts {
  options?: number[];
  fragOffset?: number;
  moreFragments?: boolean;
  totalLength?: number;
}

function ipv4(src: string, proto: number, l4: Buffer, o: V4Opts = {}): Buffer {
  const opts = Buffer.from(o.options ?? []);
  assert.equal(opts.length % 4, 0);
  const ihl = 20 + opts.length;
  const h = Buffer.alloc(20);
  h[0] = 0x40 | (ihl / 4);
  h.writeUInt16BE(o.totalLength ?? ihl + l4.length, 2);
  h.writeUInt16BE(((o.moreFragments ? 1 : 0) << 13) | (o.fragOffset ?? 0), 6);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(src.split(".").map(Number)).copy(h, 12);
  Buffer.from([192, 0, 2, 1]).copy(h, 16);
  return b(h, opts, l4);
}

/** Full 16 bytes of an IPv6 address written as 8 hex groups (no "::"). */
function v6bytes(full: string): Buffer {
  const groups = full.split(":");
  assert.equal(groups.length, 8);
  return Buffer.from(groups.flatMap((g) => u16(parseInt(g, 16))));
}

interface Ext {
  type: number;
  body?: Buffer;
}

/** Extension header bytes: `next` is filled in by ipv6(). */
function extHeader(type: number, next: number, body?: Buffer): Buffer {
  if (type === 44) {
    const h = body ?? Buffer.alloc(8);
    h[0] = next;
    return h;
  }
  if (type === 51) {
    // AH: (len + 2) * 4 bytes; 12 bytes minimum + 12-byte ICV = 24 -> len 4
    const h = body ?? Buffer.alloc(24);
    h[0] = next;
    h[1] = h.length / 4 - 2;
    return h;
  }
  const h = body ?? Buffer.alloc(8);
  assert.equal(h.length % 8, 0);
  h[0] = next;
  h[1] = h.length / 8 - 1;
  return h;
}

function fragHeader(offsetUnits: number, more: boolean): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE((offsetUnits << 3) | (more ? 1 : 0), 2);
  h.writeUInt32BE(0x1234, 4);
  return h;
}

function ipv6(src: string, proto: number, l4: Buffer, exts: Ext[] = [], payloadLength?: number): Buffer {
  const chain: Buffer[] = [];
  for (let i = 0; i < exts.length; i++) {
    const e = exts[i]!;
    const next = i + 1 < exts.length ? exts[i + 1]!.type : proto;
    chain.push(extHeader(e.type, next, e.body));
  }
  const rest = b(...chain, l4);
  const h = Buffer.alloc(8);
  h[0] = 0x60;
  h.writeUInt16BE(payloadLength ?? rest.length, 4);
  h[6] = exts[0]?.type ?? proto;
  h[7] = 64;
  return b(h, v6bytes(src), v6bytes("2001:db8:0:0:0:0:0:1"), rest);
}

const MAC_A = [0x02, 0, 0, 0, 0, 1];
const MAC_B = [0x02, 0, 0, 0, 0, 2];

function eth(ethertype: number, payload: Buffer, tags: { tpid: number; vid: number }[] = []): Buffer {
  const tagBytes = tags.flatMap((t) => [...u16(t.tpid), ...u16(t.vid)]);
  const frame = b(MAC_A, MAC_B, tagBytes, u16(ethertype), payload);
  // Real Ethernet pads to 60 bytes; the decoder must bound by the IP length instead.
  return frame.length < 60 ? b(frame, Buffer.alloc(60 - frame.length, 0xee)) : frame;
}

function sll(pktType: number, protocol: number, payload: Buffer): Buffer {
  return b(u16(pktType), u16(1), u16(6), [...MAC_A, 0, 0], u16(protocol), payload);
}

function sll2(pktType: number, protocol: number, payload: Buffer): Buffer {
  return b(u16(protocol), [0, 0], [0, 0, 0, 2], u16(1), [pktType, 6], [...MAC_A, 0, 0], payload);
}

function nullLink(af: number, payload: Buffer, bigEndian = false): Buffer {
  const h = Buffer.alloc(4);
  if (bigEndian) h.writeUInt32BE(af, 0);
  else h.writeUInt32LE(af, 0);
  return b(h, payload);
}

const SRC6 = "2001:db8:0:0:0:0:0:42";
const v4syn = (port = 7000): Buffer => eth(0x0800, ipv4("198.51.100.7", 6, tcp(port)));

function decodeOk(link: LinkType, frame: Buffer) {
  const d = new Decoder(link);
  const outcome = d.decode(frame, frame.length);
  assert.equal(outcome, "knock");
  return fields(d.knock);
}

/** The knock's values (the decoder's object is reused and formats `src` on read). */
function fields({ family, src, proto, dstPort, tcpFlags }: Knock) {
  return { family, src, proto, dstPort, tcpFlags };
}

function outcomeOf(link: LinkType, frame: Buffer, len = frame.length) {
  return new Decoder(link).decode(frame, len);
}

// ---- tests ----------------------------------------------------------------

describe("Ethernet", () => {
  test("an IPv4 TCP SYN yields family, source, port, proto and flags", () => {
    assert.deepEqual(decodeOk("ETHERNET", v4syn(7000)), {
      family: 4,
      src: "198.51.100.7",
      proto: "tcp",
      dstPort: 7000,
      tcpFlags: TcpFlag.syn,
    });
  });

  test("TCP flags byte is reported verbatim (SYN+ACK, FIN+PSH+URG)", () => {
    const sa = decodeOk("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 6, tcp(22, TcpFlag.syn | TcpFlag.ack))));
    assert.equal(sa.tcpFlags, 0x12);
    const odd = decodeOk("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 6, tcp(22, 0x29))));
    assert.equal(odd.tcpFlags, 0x29);
  });

  test("an IPv4 UDP datagram yields proto udp and flags 0", () => {
    assert.deepEqual(decodeOk("ETHERNET", eth(0x0800, ipv4("203.0.113.255", 17, udp(8000)))), {
      family: 4,
      src: "203.0.113.255",
      proto: "udp",
      dstPort: 8000,
      tcpFlags: 0,
    });
  });

  test("IPv4 options are skipped using IHL", () => {
    // NOP NOP NOP EOL + 4-byte router alert: IHL 7 (28 bytes)
    const frame = eth(0x0800, ipv4("10.1.2.3", 6, tcp(4444), { options: [1, 1, 1, 0, 0x94, 4, 0, 0] }));
    const k = decodeOk("ETHERNET", frame);
    assert.equal(k.dstPort, 4444);
    assert.equal(k.src, "10.1.2.3");
  });

  test("a TCP header with options (data offset > 5) still decodes", () => {
    const k = decodeOk("ETHERNET", eth(0x0800, ipv4("10.1.2.3", 6, tcp(4445, TcpFlag.syn, 1, 10))));
    assert.equal(k.dstPort, 4445);
  });

  test("a single 802.1Q tag is skipped", () => {
    const k = decodeOk("ETHERNET", eth(0x0800, ipv4("10.9.9.9", 6, tcp(7001)), [{ tpid: 0x8100, vid: 100 }]));
    assert.equal(k.dstPort, 7001);
    assert.equal(k.src, "10.9.9.9");
  });

  test("QinQ stacks with 0x88a8 and 0x9100 outer tags are skipped", () => {
    for (const outer of [0x88a8, 0x9100, 0x8100]) {
      const frame = eth(0x86dd, ipv6(SRC6, 17, udp(7002)), [
        { tpid: outer, vid: 10 },
        { tpid: 0x8100, vid: 20 },
      ]);
      const k = decodeOk("ETHERNET", frame);
      assert.equal(k.dstPort, 7002, `outer 0x${outer.toString(16)}`);
      assert.equal(k.src, "2001:db8::42");
      assert.equal(k.family, 6);
    }
  });

  test("an absurd stack of VLAN tags is ignored rather than walked forever", () => {
    const tags = Array.from({ length: 5 }, () => ({ tpid: 0x8100, vid: 1 }));
    assert.equal(outcomeOf("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 6, tcp(1)), tags)), "ignored");
  });

  test("non-IP ethertypes (ARP) are ignored", () => {
    assert.equal(outcomeOf("ETHERNET", eth(0x0806, Buffer.alloc(28))), "ignored");
  });

  test("IPv4 protocols other than TCP/UDP (ICMP) are ignored", () => {
    assert.equal(outcomeOf("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 1, Buffer.alloc(8)))), "ignored");
  });

  test("destination port 0 is malformed", () => {
    assert.equal(outcomeOf("ETHERNET", v4syn(0)), "malformed");
    assert.equal(outcomeOf("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 17, udp(0)))), "malformed");
  });

  test("port 65535 decodes without sign problems", () => {
    assert.equal(decodeOk("ETHERNET", v4syn(65535)).dstPort, 65535);
  });
});

describe("IPv4 validation", () => {
  test("a non-first fragment is ignored even though its bytes look like TCP", () => {
    const frame = eth(0x0800, ipv4("10.0.0.1", 6, tcp(7000), { fragOffset: 185 }));
    assert.equal(outcomeOf("ETHERNET", frame), "ignored");
  });

  test("a first fragment with MF set decodes when the L4 header fits", () => {
    const k = decodeOk("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 6, tcp(7003), { moreFragments: true })));
    assert.equal(k.dstPort, 7003);
  });

  test("IHL below 5 is malformed", () => {
    const frame = eth(0x0800, ipv4("10.0.0.1", 6, tcp(7000)));
    frame[14] = 0x44;
    assert.equal(outcomeOf("ETHERNET", frame), "malformed");
  });

  test("a version nibble other than 4 under ethertype IPv4 is malformed", () => {
    const frame = eth(0x0800, ipv4("10.0.0.1", 6, tcp(7000)));
    frame[14] = 0x55;
    assert.equal(outcomeOf("ETHERNET", frame), "malformed");
  });

  test("a total length too short to hold the TCP header is malformed", () => {
    // Ethernet padding would otherwise supply the missing bytes
    const frame = eth(0x0800, ipv4("10.0.0.1", 6, tcp(7000).subarray(0, 8), { totalLength: 28 }));
    assert.equal(outcomeOf("ETHERNET", frame), "malformed");
    const tiny = eth(0x0800, ipv4("10.0.0.1", 6, tcp(7000), { totalLength: 19 }));
    assert.equal(outcomeOf("ETHERNET", tiny), "malformed");
  });

  test("a payload cut by a short snaplen still decodes once the headers fit", () => {
    const frame = eth(0x0800, ipv4("10.0.0.1", 17, udp(9000, Buffer.alloc(1000))));
    assert.equal(new Decoder("ETHERNET").decode(frame, 14 + 20 + 8), "knock");
  });

  test("TCP data offset below 5 is malformed", () => {
    assert.equal(outcomeOf("ETHERNET", eth(0x0800, ipv4("10.0.0.1", 6, tcp(7000, 2, 1, 4)))), "malformed");
  });
});

describe("IPv6", () => {
  test("a plain IPv6 TCP SYN yields the canonical source text", () => {
    assert.deepEqual(decodeOk("ETHERNET", eth(0x86dd, ipv6("2001:0db8:0000:0000:0001:0000:0000:0001", 6, tcp(7000)))), {
      family: 6,
      src: "2001:db8::1:0:0:1",
      proto: "tcp",
      dstPort: 7000,
      tcpFlags: TcpFlag.syn,
    });
  });

  test("hop-by-hop, destination options, routing, AH and a first fragment are walked", () => {
    const exts: Ext[] = [
      { type: 0 },
      { type: 60, body: Buffer.alloc(16) },
      { type: 43, body: Buffer.alloc(24) },
      { type: 44, body: fragHeader(0, true) },
      { type: 51 },
      { type: 60 },
    ];
    const k = decodeOk("ETHERNET", eth(0x86dd, ipv6(SRC6, 6, tcp(7777, TcpFlag.syn | TcpFlag.psh), exts)));
    assert.equal(k.dstPort, 7777);
    assert.equal(k.tcpFlags, TcpFlag.syn | TcpFlag.psh);
    assert.equal(k.src, "2001:db8::42");
  });

  test("a non-first IPv6 fragment is ignored", () => {
    const frame = eth(0x86dd, ipv6(SRC6, 17, udp(7000), [{ type: 0 }, { type: 44, body: fragHeader(3, false) }]));
    assert.equal(outcomeOf("ETHERNET", frame), "ignored");
  });

  test("ESP and no-next-header stop the walk as ignored", () => {
    const esp = ipv6(SRC6, 50, Buffer.alloc(32));
    assert.equal(outcomeOf("ETHERNET", eth(0x86dd, esp)), "ignored");
    const none = ipv6(SRC6, 59, Buffer.alloc(0), [{ type: 0 }]);
    assert.equal(outcomeOf("ETHERNET", eth(0x86dd, none)), "ignored");
  });

  test("ICMPv6 is ignored", () => {
    assert.equal(outcomeOf("ETHERNET", eth(0x86dd, ipv6(SRC6, 58, Buffer.alloc(8)))), "ignored");
  });

  test("eight extension headers are walked, a ninth makes the packet ignored", () => {
    const eight: Ext[] = Array.from({ length: 8 }, () => ({ type: 60 }));
    assert.equal(decodeOk("RAW", ipv6(SRC6, 17, udp(7004), eight)).dstPort, 7004);
    const nine: Ext[] = Array.from({ length: 9 }, () => ({ type: 60 }));
    assert.equal(outcomeOf("RAW", ipv6(SRC6, 17, udp(7004), nine)), "ignored");
  });

  test("an extension header longer than the payload is malformed", () => {
    const frame = ipv6(SRC6, 6, tcp(7000), [{ type: 0 }]);
    frame[40 + 1] = 200; // hop-by-hop claims 1608 bytes
    assert.equal(outcomeOf("RAW", frame), "malformed");
  });

  test("the payload length bounds the headers (padding does not count)", () => {
    const frame = eth(0x86dd, ipv6(SRC6, 17, udp(7000), [], 4));
    assert.equal(outcomeOf("ETHERNET", frame), "malformed");
  });

  test("IPv4-mapped and IPv4-compatible addresses print with a dotted tail like Node", () => {
    // The decoder refuses such sources (bogus_source); the formatter still prints them right for logs.
    assert.equal(formatIPv6(v6bytes("0:0:0:0:0:ffff:c633:6407"), 0), "::ffff:198.51.100.7");
    assert.equal(formatIPv6(v6bytes("0:0:0:0:0:0:c633:6407"), 0), "::198.51.100.7");
    assert.equal(formatIPv6(v6bytes("0:0:0:0:0:0:0:1"), 0), "::1");
    assert.equal(outcomeOf("RAW", ipv6("0:0:0:0:0:ffff:c633:6407", 6, tcp(1))), "bogus_source");
  });
});

describe("IPv6 text", () => {
  const cases: [string, string][] = [
    ["0:0:0:0:0:0:0:0", "::"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["fe80:0:0:0:0:0:0:0", "fe80::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["2001:db8:0:1:0:1:0:1", "2001:db8:0:1:0:1:0:1"],
    ["ABCD:EF01:0:0:0:0:0:FFFF", "abcd:ef01::ffff"],
    ["0:0:0:0:0:0:0:ffff", "::ffff"],
    ["0:0:0:0:ffff:0:102:304", "::ffff:0:102:304"],
    ["0:0:0:0:0:ffff:0:0", "::ffff:0.0.0.0"],
    ["64:ff9b:0:0:0:0:102:304", "64:ff9b::102:304"],
  ];
  for (const [full, text] of cases) {
    test(`${full} prints as ${text}`, () => {
      assert.equal(formatIPv6(v6bytes(full), 0), text);
    });
  }

  test("formatting agrees with Node's own address text on 5000 zero-heavy random addresses", () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 8;
    };
    const buf = Buffer.alloc(16);
    for (let i = 0; i < 5000; i++) {
      for (let g = 0; g < 8; g++) {
        const r = rnd() % 8;
        // Mostly zeros so that runs, ties and the IPv4 tail cases all come up.
        const w = r < 4 ? 0 : r === 4 ? 0xffff : r === 5 ? rnd() % 16 : rnd() & 0xffff;
        buf.writeUInt16BE(w, g * 2);
      }
      if (i % 50 === 0) buf.fill(0, 0, 10).writeUInt16BE(0xffff, 10);
      const full = Array.from({ length: 8 }, (_, g) => buf.readUInt16BE(g * 2).toString(16)).join(":");
      const node = new net.SocketAddress({ address: full, family: "ipv6" }).address;
      assert.equal(formatIPv6(buf, 0), node, full);
    }
  });
});

describe("Linux cooked capture", () => {
  test("an incoming SLL packet decodes", () => {
    const k = decodeOk("LINKTYPE_LINUX_SLL", sll(0, 0x0800, ipv4("10.2.3.4", 6, tcp(7100))));
    assert.deepEqual([k.src, k.dstPort, k.proto], ["10.2.3.4", 7100, "tcp"]);
  });

  test("an outgoing SLL packet is ignored", () => {
    assert.equal(outcomeOf("LINKTYPE_LINUX_SLL", sll(4, 0x0800, ipv4("10.2.3.4", 6, tcp(7100)))), "ignored");
  });

  test("SLL broadcast/multicast/otherhost packet types still decode", () => {
    for (const t of [1, 2, 3]) {
      assert.equal(outcomeOf("LINKTYPE_LINUX_SLL", sll(t, 0x86dd, ipv6(SRC6, 17, udp(7101)))), "knock");
    }
  });

  test("a VLAN tag re-inserted after the SLL header is skipped", () => {
    const frame = sll(0, 0x8100, b(u16(5), u16(0x0800), ipv4("10.2.3.5", 17, udp(7102))));
    assert.equal(decodeOk("LINKTYPE_LINUX_SLL", frame).dstPort, 7102);
  });

  test("an incoming SLL2 packet decodes from the protocol at offset 0", () => {
    const k = decodeOk("LINUX_SLL2", sll2(0, 0x86dd, ipv6(SRC6, 6, tcp(7200, TcpFlag.ack))));
    assert.deepEqual([k.src, k.dstPort, k.tcpFlags, k.family], ["2001:db8::42", 7200, TcpFlag.ack, 6]);
  });

  test("an outgoing SLL2 packet (type byte at offset 10) is ignored", () => {
    assert.equal(outcomeOf("LINUX_SLL2", sll2(4, 0x0800, ipv4("10.2.3.4", 6, tcp(7200)))), "ignored");
  });
});

describe("RAW and NULL", () => {
  test("RAW picks IPv4 or IPv6 from the version nibble", () => {
    assert.equal(decodeOk("RAW", ipv4("172.16.0.9", 17, udp(7300))).src, "172.16.0.9");
    assert.equal(decodeOk("RAW", ipv6(SRC6, 17, udp(7301))).dstPort, 7301);
  });

  test("RAW with a version nibble other than 4/6 is malformed", () => {
    const frame = ipv4("172.16.0.9", 17, udp(7300));
    frame[0] = 0x55;
    assert.equal(outcomeOf("RAW", frame), "malformed");
  });

  test("NULL reads AF_INET=2 and the AF_INET6 values of Linux/BSD/macOS", () => {
    assert.equal(decodeOk("NULL", nullLink(2, ipv4("198.18.0.7", 6, tcp(7400)))).src, "198.18.0.7");
    for (const af of [10, 24, 28, 30]) {
      assert.equal(decodeOk("NULL", nullLink(af, ipv6("fd00:198:18:0:0:0:0:7", 6, tcp(7401)))).src, "fd00:198:18::7");
    }
  });

  test("NULL accepts the family in either byte order", () => {
    assert.equal(decodeOk("NULL", nullLink(2, ipv4("198.18.0.8", 17, udp(7402)), true)).dstPort, 7402);
  });

  test("NULL with an unknown family is ignored, with a garbage family malformed", () => {
    assert.equal(outcomeOf("NULL", nullLink(7, ipv4("127.0.0.1", 6, tcp(7400)))), "ignored");
    assert.equal(outcomeOf("NULL", nullLink(0x01020304, ipv4("127.0.0.1", 6, tcp(7400)))), "malformed");
  });
});

describe("robustness", () => {
  test("an unsupported link type is rejected at construction", () => {
    assert.throws(() => new Decoder("IEEE802_11_RADIO" as LinkType), /unsupported link type/);
    assert.equal(isLinkType("LINKTYPE_LINUX_SLL"), true);
    assert.equal(isLinkType("LINUX_SLL"), false);
  });

  test("len beyond the buffer, negative or NaN is malformed", () => {
    const frame = v4syn();
    const d = new Decoder("ETHERNET");
    assert.equal(d.decode(frame, frame.length + 1), "malformed");
    assert.equal(d.decode(frame, -1), "malformed");
    assert.equal(d.decode(frame, Number.NaN), "malformed");
    assert.equal(d.decode(null as unknown as Buffer, 10), "malformed");
  });

  test("len shorter than the buffer hides the bytes after it", () => {
    const frame = v4syn();
    assert.equal(new Decoder("ETHERNET").decode(frame, 14 + 20 + 19), "malformed");
    assert.equal(new Decoder("ETHERNET").decode(frame, 14 + 20 + 20), "knock");
  });

  test("the result object is reused and updated per packet", () => {
    const d = new Decoder("ETHERNET");
    const first = d.knock;
    assert.equal(d.decode(v4syn(1111), 60), "knock");
    assert.equal(d.knock.dstPort, 1111);
    const f2 = eth(0x86dd, ipv6(SRC6, 17, udp(2222)));
    assert.equal(d.decode(f2, f2.length), "knock");
    assert.equal(d.knock, first);
    assert.deepEqual(fields(d.knock), { family: 6, src: "2001:db8::42", proto: "udp", dstPort: 2222, tcpFlags: 0 });
    // The text is cached once read: a new source must not reuse it.
    const f3 = eth(0x86dd, ipv6("2001:db8:0:0:0:0:0:43", 17, udp(2222)));
    d.decode(f3, f3.length);
    assert.equal(d.knock.src, "2001:db8::43");
    const f4 = eth(0x0800, ipv4("198.51.100.8", 6, tcp(1)));
    d.decode(f4, f4.length);
    assert.equal(d.knock.src, "198.51.100.8");
  });

  const samples: [LinkType, Buffer, number][] = [
    ["ETHERNET", v4syn(7000), 7000],
    ["ETHERNET", eth(0x0800, ipv4("10.1.2.3", 17, udp(7001), { options: [1, 1, 1, 0] }), [{ tpid: 0x88a8, vid: 1 }, { tpid: 0x8100, vid: 2 }]), 7001],
    ["ETHERNET", eth(0x86dd, ipv6(SRC6, 6, tcp(7002), [{ type: 0 }, { type: 44, body: fragHeader(0, true) }, { type: 51 }, { type: 60 }])), 7002],
    ["LINKTYPE_LINUX_SLL", sll(0, 0x86dd, ipv6(SRC6, 17, udp(7003), [{ type: 43 }])), 7003],
    ["LINUX_SLL2", sll2(0, 0x0800, ipv4("10.0.0.1", 6, tcp(7004))), 7004],
    ["RAW", ipv6(SRC6, 6, tcp(7005), [{ type: 60 }]), 7005],
    ["NULL", nullLink(2, ipv4("198.18.0.9", 17, udp(7006))), 7006],
  ];

  test("every truncation of valid frames is malformed or a knock with the right port, never a throw", () => {
    for (const [link, frame, port] of samples) {
      const d = new Decoder(link);
      assert.equal(d.decode(frame, frame.length), "knock");
      let knocks = 0;
      for (let len = 0; len <= frame.length; len++) {
        // Both a shorter len over the full buffer and an exactly-sized copy.
        for (const [buf, l] of [[frame, len], [Buffer.from(frame.subarray(0, len)), len]] as const) {
          const out = d.decode(buf, l);
          assert.ok(out === "malformed" || out === "knock", `${link} len ${len}: ${out}`);
          if (out === "knock") {
            assert.equal(d.knock.dstPort, port);
            knocks++;
          }
        }
      }
      // Only lengths that include the whole L4 header (the tail of the frame) can be knocks.
      assert.ok(knocks > 0 && knocks < frame.length, `${link}: ${knocks}`);
    }
  });

  test("20,000 random buffers and 20,000 mutated frames never throw and yield valid results", () => {
    let seed = 987654321;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed ^ (seed >>> 15), 2246822519) + 3266489917) >>> 0;
      return seed % n;
    };
    const links: LinkType[] = ["ETHERNET", "LINKTYPE_LINUX_SLL", "LINUX_SLL2", "RAW", "NULL"];
    const decoders = links.map((l) => new Decoder(l));
    const check = (d: Decoder, buf: Buffer, len: number): void => {
      const out = d.decode(buf, len);
      assert.ok(out === "knock" || out === "ignored" || out === "bogus_source" || out === "malformed");
      if (out === "knock") {
        const k = d.knock;
        assert.ok(k.dstPort >= 1 && k.dstPort <= 65535);
        assert.ok(k.proto === "tcp" || k.proto === "udp");
        assert.ok(k.tcpFlags >= 0 && k.tcpFlags <= 255);
        assert.ok(k.family === 4 ? net.isIPv4(k.src) : net.isIPv6(k.src), k.src);
      }
    };
    for (let i = 0; i < 20000; i++) {
      const buf = Buffer.alloc(rnd(120));
      for (let j = 0; j < buf.length; j++) buf[j] = rnd(256);
      // Bias the first bytes so deeper layers get reached, not just rejected at the link header.
      if (buf.length > 0 && rnd(2) === 0) buf[0] = rnd(2) === 0 ? 0x45 : 0x60;
      check(decoders[rnd(decoders.length)]!, buf, rnd(4) === 0 ? rnd(buf.length + 3) : buf.length);
    }
    for (let i = 0; i < 20000; i++) {
      const [link, frame] = samples[rnd(samples.length)]!;
      const buf = Buffer.from(frame);
      for (let m = rnd(4) + 1; m > 0; m--) buf[rnd(buf.length)] = rnd(256);
      check(decoders[links.indexOf(link)]!, buf, rnd(3) === 0 ? rnd(buf.length + 1) : buf.length);
    }
    // decode() catches everything, so "never throws" alone could not fail: no exception may reach that guard.
    assert.deepEqual(
      decoders.map((d) => d.caught),
      links.map(() => 0),
    );
  });

  test("an exception inside the decoder is caught, reported as malformed, and counted", () => {
    const d = new Decoder("ETHERNET");
    const exploding = new Proxy(Buffer.alloc(60), {
      get(target, key) {
        if (typeof key === "string" && /^\d+$/.test(key)) throw new Error("read past the capture");
        return Reflect.get(target, key) as unknown;
      },
    });
    assert.equal(d.decode(exploding, 60), "malformed");
    assert.equal(d.caught, 1);
  });
});

describe("sources no client has", () => {
  const frameFrom = (src: string) =>
    buildFrame({
      srcMac: macBytes("02:00:00:00:00:02"),
      dstMac: macBytes("02:00:00:00:00:01"),
      src,
      dst: src.includes(":") ? "fd00:198:18::1" : "198.18.0.1",
      proto: "tcp",
      srcPort: 40000,
      dstPort: 7000,
    });
  const outcome = (src: string) => {
    const frame = frameFrom(src);
    return new Decoder("ETHERNET").decode(frame, frame.length);
  };

  const BOGUS = ["0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "169.254.0.1", "169.254.255.255", "224.0.0.1", "239.255.255.255", "240.0.0.1", "255.255.255.255"];
  // Link-local, and NAT64 addresses that carry a refused IPv4 address (loopback, link-local, unspecified, multicast).
  const BOGUS6 = ["::", "::1", "fe80::1", "febf:ffff::1", "ff02::1", "ff05::2", "::ffff:198.18.0.2", "::198.18.0.2", "64:ff9b::7f00:1", "64:ff9b::a9fe:1", "64:ff9b::", "64:ff9b::e000:1"];
  for (const src of [...BOGUS, ...BOGUS6]) {
    test(`a knock from ${src} is bogus_source, never a knock`, () => assert.equal(outcome(src), "bogus_source"));
  }

  // Carrier-grade NAT space (100.64/10) is where clients behind CGNAT knock from.
  const FINE = ["1.0.0.0", "100.64.0.1", "100.127.255.254", "126.255.255.255", "128.0.0.1", "169.253.255.255", "169.255.0.1", "198.18.0.2", "223.255.255.255", "fec0::1", "fe7f::1", "fd00:198:18::2", "2001:db8::1", "::1:0:0:1", "64:ff9b::c612:2", "64:ff9b:0:0:1::7f00:1"];
  for (const src of FINE) {
    test(`a knock from ${src} (the edge of a bogus range, or an ordinary address) is a knock`, () => assert.equal(outcome(src), "knock"));
  }

  test("the kernel engine's prefixes of refused sources hold the same addresses as the decoder's test", () => {
    const inPrefixes = (src: string) => {
      const family = src.includes(":") ? 6 : 4;
      const list = new BlockList();
      for (const p of BOGUS_SOURCE_PREFIXES[family]) {
        const [net, bits] = p.split("/");
        list.addSubnet(net as string, Number(bits), family === 4 ? "ipv4" : "ipv6");
      }
      return list.check(src, family === 4 ? "ipv4" : "ipv6");
    };
    assert.deepEqual([...BOGUS, ...BOGUS6].filter((s) => !inPrefixes(s)), []);
    assert.deepEqual(FINE.filter(inPrefixes), []);
  });
});

describe("UDP payload bounds (signed datagrams)", () => {
  const decoded = (frame: Buffer, len = frame.length) => {
    const d = new Decoder("ETHERNET");
    assert.equal(d.decode(frame, len), "knock");
    return d.payloadEnd < 0 ? null : frame.subarray(d.payloadStart, d.payloadEnd).toString("latin1");
  };

  test("the payload is what the UDP length says, without Ethernet padding, over IPv4 and IPv6", () => {
    assert.equal(decoded(eth(0x0800, ipv4("203.0.113.9", 17, udp(62201, Buffer.from("abc"))))), "abc");
    assert.equal(decoded(eth(0x86dd, ipv6(SRC6, 17, udp(62201, Buffer.from("datagram"))))), "datagram");
  });

  test("a datagram cut short by the capture or the IP length has no payload", () => {
    const frame = eth(0x0800, ipv4("203.0.113.9", 17, udp(62201, Buffer.alloc(300, 0x41))));
    assert.equal(decoded(frame, frame.length - 1), null);
    const lying = udp(62201, Buffer.alloc(10, 0x41));
    lying.writeUInt16BE(400, 4);
    assert.equal(decoded(eth(0x0800, ipv4("203.0.113.9", 17, lying))), null);
  });

  test("a UDP length below the header's own 8 bytes has no payload", () => {
    const short = udp(62201, Buffer.alloc(10, 0x41));
    short.writeUInt16BE(7, 4);
    assert.equal(decoded(eth(0x0800, ipv4("203.0.113.9", 17, short))), null);
  });
});

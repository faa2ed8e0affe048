import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { buildBpfFilter } from "../../src/core/packet/bpf.js";
import type { LinkType } from "../../src/core/packet/decode.js";
import type { PortSpec } from "../../src/core/types.js";

const EXT6 = "(ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 51 or ip6[6] == 60))";

const KNOCKS: PortSpec[] = [
  { port: 9000, proto: "tcp" },
  { port: 8000, proto: "udp" },
  { port: 7000, proto: "tcp" },
  { port: 7000, proto: "tcp" },
];

describe("buildBpfFilter strings", () => {
  test("ports are deduplicated, sorted and grouped per protocol, plus the IPv6 extension-header clause", () => {
    assert.equal(
      buildBpfFilter(KNOCKS),
      `(tcp dst port 7000 or tcp dst port 9000) or (udp dst port 8000) or ${EXT6}`,
    );
  });

  test("a protocol without ports gets no clause", () => {
    assert.equal(buildBpfFilter([{ port: 53, proto: "udp" }], "RAW"), `(udp dst port 53) or ${EXT6}`);
  });

  test("the same port on tcp and udp yields one clause per protocol", () => {
    assert.equal(
      buildBpfFilter([{ port: 1234, proto: "udp" }, { port: 1234, proto: "tcp" }], "NULL"),
      `(tcp dst port 1234) or (udp dst port 1234) or ${EXT6}`,
    );
  });

  test("ETHERNET repeats the expression under one and two VLAN tags", () => {
    const base = `(tcp dst port 7000) or ${EXT6}`;
    assert.equal(
      buildBpfFilter([{ port: 7000, proto: "tcp" }], "ETHERNET"),
      `${base} or (vlan and (${base} or (vlan and (${base}))))`,
    );
  });

  test("cooked, raw and loopback link types get no vlan clause (libpcap rejects it there)", () => {
    for (const lt of ["LINKTYPE_LINUX_SLL", "LINUX_SLL2", "RAW", "NULL"] as const) {
      assert.doesNotMatch(buildBpfFilter(KNOCKS, lt), /vlan/, lt);
    }
  });

  test("an empty port list throws", () => {
    assert.throws(() => buildBpfFilter([]), /at least one/);
  });

  test("ports outside 1..65535 or non-integers throw instead of reaching the filter text", () => {
    for (const port of [0, 65536, 1.5, Number.NaN, -1]) {
      assert.throws(() => buildBpfFilter([{ port, proto: "tcp" }]), /invalid port/, String(port));
    }
    assert.throws(() => buildBpfFilter([{ port: 1, proto: "icmp or 1=1" as "tcp" }]), /invalid protocol/);
  });
});

// ---- checks against real libpcap via tcpdump --------------------------------

const hasTcpdump = spawnSync("tcpdump", ["--version"]).status === 0;
const NO_TCPDUMP = hasTcpdump ? false : "tcpdump not on PATH: cannot check the filter against libpcap";

const DLT: Record<LinkType, { name: string; num: number }> = {
  ETHERNET: { name: "EN10MB", num: 1 },
  LINKTYPE_LINUX_SLL: { name: "LINUX_SLL", num: 113 },
  LINUX_SLL2: { name: "LINUX_SLL2", num: 276 },
  RAW: { name: "RAW", num: 101 },
  NULL: { name: "NULL", num: 0 },
};

const u16 = (v: number): number[] => [(v >> 8) & 0xff, v & 0xff];
const cat = (...parts: (Buffer | number[])[]): Buffer => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));

function l4(proto: 6 | 17, port: number): Buffer {
  const h = Buffer.alloc(proto === 6 ? 20 : 8);
  h.writeUInt16BE(40000, 0);
  h.writeUInt16BE(port, 2);
  if (proto === 6) {
    h[12] = 0x50;
    h[13] = 0x02;
  } else {
    h.writeUInt16BE(8, 4);
  }
  return h;
}

function v4(proto: number, payload: Buffer, fragOffset = 0): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(fragOffset, 6);
  h[8] = 64;
  h[9] = proto;
  h.writeUInt32BE(0x0a000001, 12);
  h.writeUInt32BE(0xc0000201, 16);
  return cat(h, payload);
}

/** `exts` are next-header values of 8-byte extension headers placed before the L4 header. */
function v6(proto: number, payload: Buffer, exts: number[] = []): Buffer {
  const chain = exts.map((_, i) => {
    const e = Buffer.alloc(8);
    e[0] = exts[i + 1] ?? proto;
    return e;
  });
  const rest = cat(...chain, payload);
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(rest.length, 4);
  h[6] = exts[0] ?? proto;
  h[7] = 64;
  h.writeUInt16BE(0x2001, 8);
  h[23] = 1;
  h.writeUInt16BE(0x2001, 24);
  h[39] = 2;
  return cat(h, rest);
}

function eth(ethertype: number, payload: Buffer, tpids: number[] = []): Buffer {
  return cat(Buffer.alloc(12, 2), tpids.flatMap((t) => [...u16(t), 0, 7]), u16(ethertype), payload);
}

function sll(ethertype: number, payload: Buffer): Buffer {
  return cat(u16(0), u16(1), u16(6), Buffer.alloc(8, 2), u16(ethertype), payload);
}

/** pcap file with packet i stamped at second i+1, so tcpdump -tt output identifies it. */
function pcap(dlt: number, frames: Buffer[]): Buffer {
  const g = Buffer.alloc(24);
  g.writeUInt32LE(0xa1b2c3d4, 0);
  g.writeUInt16LE(2, 4);
  g.writeUInt16LE(4, 6);
  g.writeUInt32LE(65535, 16);
  g.writeUInt32LE(dlt, 20);
  const recs = frames.map((f, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(i + 1, 0);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return cat(r, f);
  });
  return cat(g, ...recs);
}

/** Indexes of the frames libpcap's compiled filter accepts (read from stdin, no files). */
function accepted(link: LinkType, filter: string, frames: Buffer[]): number[] {
  const r = spawnSync("tcpdump", ["-r", "-", "-nn", "-tt", filter], { input: pcap(DLT[link].num, frames), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .split("\n")
    .filter((l) => /^\d+\.\d+ /.test(l))
    .map((l) => Number(l.split(".")[0]) - 1);
}

describe("buildBpfFilter against libpcap", () => {
  test("the filter compiles for every link type", { skip: NO_TCPDUMP }, () => {
    for (const lt of Object.keys(DLT) as LinkType[]) {
      const r = spawnSync("tcpdump", ["-y", DLT[lt].name, "-d", buildBpfFilter(KNOCKS, lt)], { encoding: "utf8" });
      assert.equal(r.status, 0, `${lt}: ${r.stderr}`);
      assert.match(r.stdout, /ret\s+#0/, lt);
    }
    // Compiled for a live interface, as the daemon does, it needs root: every daemon the integration
    // tests start does that on a real interface.
  });

  test("on Ethernet exactly the knock ports pass, also under VLAN/QinQ tags and IPv6 extension headers", { skip: NO_TCPDUMP }, () => {
    const frames: [Buffer, boolean][] = [
      [eth(0x0800, v4(6, l4(6, 7000))), true],
      [eth(0x0800, v4(6, l4(6, 7001))), false],
      [eth(0x0800, v4(17, l4(17, 8000))), true],
      [eth(0x0800, v4(6, l4(6, 8000))), false], // right port, wrong protocol
      [eth(0x0800, v4(17, l4(17, 7000))), false],
      [eth(0x86dd, v6(6, l4(6, 9000))), true],
      [eth(0x86dd, v6(6, l4(6, 9001))), false],
      [eth(0x86dd, v6(6, l4(6, 7001), [0, 60])), true], // ext headers: left to the decoder
      [eth(0x86dd, v6(58, Buffer.alloc(8))), false],
      [eth(0x0800, v4(6, l4(6, 7000)), [0x8100]), true],
      [eth(0x0800, v4(6, l4(6, 7001)), [0x8100]), false],
      [eth(0x86dd, v6(17, l4(17, 8000)), [0x88a8, 0x8100]), true],
      [eth(0x86dd, v6(17, l4(17, 8001), [44]), [0x88a8, 0x8100]), true],
      [eth(0x86dd, v6(17, l4(17, 8001)), [0x88a8, 0x8100]), false],
      [eth(0x0800, v4(6, l4(6, 7000), 100)), false], // non-first fragment
      [eth(0x0806, Buffer.alloc(28)), false],
    ];
    const got = accepted("ETHERNET", buildBpfFilter(KNOCKS, "ETHERNET"), frames.map(([f]) => f));
    const want = frames.flatMap(([, pass], i) => (pass ? [i] : []));
    assert.deepEqual(got, want);
  });

  test("on Linux cooked capture the knock ports and IPv6 extension headers pass", { skip: NO_TCPDUMP }, () => {
    const frames = [
      sll(0x0800, v4(6, l4(6, 7000))),
      sll(0x0800, v4(6, l4(6, 7002))),
      sll(0x86dd, v6(17, l4(17, 1), [0])),
      sll(0x86dd, v6(17, l4(17, 8000))),
    ];
    assert.deepEqual(accepted("LINKTYPE_LINUX_SLL", buildBpfFilter(KNOCKS, "LINKTYPE_LINUX_SLL"), frames), [0, 2, 3]);
  });

  test("on RAW the knock ports pass and others do not", { skip: NO_TCPDUMP }, () => {
    const frames = [v4(17, l4(17, 8000)), v4(17, l4(17, 8002)), v6(6, l4(6, 7000), [43])];
    assert.deepEqual(accepted("RAW", buildBpfFilter(KNOCKS, "RAW"), frames), [0, 2]);
  });
});

/**
 * Decoder throughput: 2,000,000 decodes over a pool of generated Ethernet frames
 * (mostly IPv4 TCP SYN, some VLAN-tagged, some IPv6 TCP/UDP with and without
 * extension headers). Prints {"decodePps": N}.
 */
import { Decoder } from "../src/core/packet/decode.js";

const FRAMES = 2_000_000;
const POOL = 1024;

function frame(i: number): Buffer {
  const v6 = i % 4 === 3;
  const vlan = i % 8 === 1;
  const udp = i % 16 === 7;
  const l4 = Buffer.alloc(20);
  l4.writeUInt16BE(40000 + (i % 1000), 0);
  l4.writeUInt16BE(7000 + (i % 3), 2);
  l4[12] = 5 << 4;
  l4[13] = 0x02; // SYN
  const proto = udp ? 17 : 6;
  const l4b = udp ? l4.subarray(0, 8) : l4;
  let ip: Buffer;
  if (v6) {
    const ext = i % 12 === 3; // some packets carry a hop-by-hop header
    const hbh = Buffer.alloc(ext ? 8 : 0);
    if (ext) hbh[0] = proto;
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(hbh.length + l4b.length, 4);
    ip[6] = ext ? 0 : proto;
    ip[7] = 64;
    ip.writeUInt16BE(0x2001, 8);
    ip.writeUInt16BE(0x0db8, 10);
    ip.writeUInt16BE(i % 97, 22); // a few distinct sources
    ip.writeUInt16BE(0x2001, 24);
    ip = Buffer.concat([ip, hbh, l4b]);
  } else {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + l4b.length, 2);
    ip[8] = 64;
    ip[9] = proto;
    ip.writeUInt32BE((0xc6336400 + (i % 251)) >>> 0, 12);
    ip.writeUInt32BE(0xc0000201, 16);
    ip = Buffer.concat([ip, l4b]);
  }
  const tag = vlan ? Buffer.from([0x81, 0x00, 0x00, 0x64]) : Buffer.alloc(0);
  const type = Buffer.from(v6 ? [0x86, 0xdd] : [0x08, 0x00]);
  const f = Buffer.concat([Buffer.alloc(12, 0x02), tag, type, ip]);
  return f.length < 60 ? Buffer.concat([f, Buffer.alloc(60 - f.length)]) : f;
}

const pool = Array.from({ length: POOL }, (_, i) => frame(i));
const decoder = new Decoder("ETHERNET");

let knocks = 0;
let portSum = 0;
// Warm-up so the JIT has optimized decode() before timing.
for (let i = 0; i < 100_000; i++) {
  const f = pool[i % POOL]!;
  decoder.decode(f, f.length);
}
const t0 = process.hrtime.bigint();
for (let i = 0; i < FRAMES; i++) {
  const f = pool[i % POOL]!;
  if (decoder.decode(f, f.length) === "knock") {
    knocks++;
    portSum += decoder.knock.dstPort;
  }
}
const ns = Number(process.hrtime.bigint() - t0);
if (knocks !== FRAMES || portSum === 0) {
  // Guards the bench against silently measuring a decoder that rejects everything.
  throw new Error(`expected ${FRAMES} knocks, got ${knocks}`);
}
console.log(JSON.stringify({ decodePps: Math.round(FRAMES / (ns / 1e9)) }));

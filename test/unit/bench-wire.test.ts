/** The bench agent's reading of its listener's frames (bench/wire.ts readListenedFrame): what dates a knock-to-open round. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readListenedFrame, SPA_PORT } from "../../bench/wire.js";
import { buildFrame, ipBytes, macBytes, type FrameSpec } from "../support/frames.js";
import { TcpFlag } from "../../src/core/types.js";

const LAST = 9000;
const frame = (spec: Partial<FrameSpec> & Pick<FrameSpec, "src" | "dst">): Buffer =>
  buildFrame({ srcMac: macBytes("02:00:00:00:00:01"), dstMac: macBytes("02:00:00:00:00:02"), proto: "tcp", srcPort: 40000, dstPort: LAST, ...spec });
const read = (buf: Buffer) => readListenedFrame(buf, buf.length, LAST);

describe("readListenedFrame", () => {
  for (const [client, server] of [
    ["198.18.1.7", "198.18.0.1"],
    ["fd00:198:18::1:7", "fd00:198:18::1"],
  ] as const) {
    test(`${client}: the last knock by its source, a SYN-ACK by the probe's port and destination`, () => {
      const knock = read(frame({ src: client, dst: server }));
      assert.equal(knock?.kind, "knock");
      assert.deepEqual(knock?.kind === "knock" && [...knock.source], [...ipBytes(client)]);

      const answer = read(frame({ src: server, dst: client, srcPort: 22, dstPort: 20017, flags: TcpFlag.syn | TcpFlag.ack }));
      assert.equal(answer?.kind, "syn-ack");
      assert.equal(answer?.kind === "syn-ack" && answer.port, 20017);
      assert.deepEqual(answer?.kind === "syn-ack" && [...answer.destination], [...ipBytes(client)]);

      const spa = read(frame({ src: client, dst: server, proto: "udp", dstPort: SPA_PORT, payload: Buffer.from("x") }));
      assert.equal(spa?.kind, "knock");
    });

    test(`${client}: a refusal, an earlier knock, another datagram or a short frame are nothing`, () => {
      assert.equal(read(frame({ src: server, dst: client, srcPort: 22, dstPort: 20017, flags: TcpFlag.rst | TcpFlag.ack })), null);
      assert.equal(read(frame({ src: client, dst: server, dstPort: 8000 })), null);
      // A SYN-ACK to the last knock's port is no knock.
      assert.notEqual(read(frame({ src: client, dst: server, flags: TcpFlag.syn | TcpFlag.ack }))?.kind, "knock");
      assert.equal(read(frame({ src: client, dst: server, proto: "udp", dstPort: 53 })), null);
      const whole = frame({ src: server, dst: client, srcPort: 22, dstPort: 20017, flags: TcpFlag.syn | TcpFlag.ack });
      assert.equal(readListenedFrame(whole, whole.length - 8, LAST), null);
      const knock = frame({ src: client, dst: server });
      assert.equal(readListenedFrame(knock, knock.length - 20, LAST), null);
    });
  }

  test("an IPv4 header with options: the ports are read after them", () => {
    const plain = frame({ src: "198.18.1.7", dst: "198.18.0.1", srcPort: 22, dstPort: 20017, flags: TcpFlag.syn | TcpFlag.ack });
    // Four bytes of options (NOPs) after the 20-byte header: IHL 6.
    const withOptions = Buffer.concat([plain.subarray(0, 34), Buffer.alloc(4, 1), plain.subarray(34)]);
    withOptions[14] = 0x46;
    const answer = read(withOptions);
    // A fixed 20-byte header would read the options as the ports.
    assert.equal(answer?.kind === "syn-ack" && answer.port, 20017);
  });

  test("IPv6 with another next header (ICMPv6) is nothing", () => {
    const knock = frame({ src: "fd00:198:18::1:7", dst: "fd00:198:18::1" });
    knock[20] = 58;
    assert.equal(read(knock), null);
  });
});

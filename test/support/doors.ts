/** Doors for the knock tests: a sequence in short notation ("7000,8000:udp"), knockd's defaults otherwise. */
import { TcpFlag, type Door, type PortSpec, type Proto } from "../../src/core/types.js";

export function seq(text: string): PortSpec[] {
  return text.split(",").map((item) => {
    const [port = "", proto = "tcp"] = item.split(":");
    return { port: Number(port), proto: proto as Proto };
  });
}

export function door(name: string, sequence: string, extra: Partial<Door> = {}): Door {
  return {
    name,
    sequence: seq(sequence),
    closeSequence: null,
    ports: [{ port: 22, proto: "tcp" }],
    seqTimeoutMs: 5000,
    openForMs: 30000,
    tcpFlags: { set: TcpFlag.syn, clear: TcpFlag.ack },
    onOpen: null,
    onClose: null,
    spa: null,
    ...extra,
  };
}

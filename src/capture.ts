/** libpcap adapter (npm `cap`): one handle per interface, immediate mode, frames handed on as they come. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { CaptureError } from "./errors.js";
import { isLinkType, type LinkType } from "./decode.js";

interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  close(): void;
  on(event: "packet", listener: (nbytes: number, truncated: boolean) => void): void;
}
type CapModule = { Cap: new () => CapHandle };

const require = createRequire(import.meta.url);

export interface Capture {
  readonly iface: string;
  readonly linkType: LinkType;
  /** False once the interface has gone away; capture must be reopened. */
  alive(): boolean;
  close(): void;
}

export type FrameHandler = (frame: Buffer, length: number) => void;

/** pcap's kernel ring: big enough to ride out a flood burst while the event loop is busy. */
const RING_BYTES = 8 * 1024 * 1024;

/** Link type of an interface before opening it, so the BPF filter can include VLAN clauses on Ethernet. */
export function interfaceLinkType(iface: string): LinkType | undefined {
  if (iface === "any") return "LINKTYPE_LINUX_SLL";
  try {
    return readFileSync(`/sys/class/net/${iface}/type`, "utf8").trim() === "1" ? "ETHERNET" : undefined;
  } catch {
    return undefined;
  }
}

function ifindex(iface: string): string | undefined {
  if (iface === "any") return "any";
  try {
    return readFileSync(`/sys/class/net/${iface}/ifindex`, "utf8").trim();
  } catch {
    return undefined;
  }
}

export function openCapture(iface: string, filter: string, onFrame: FrameHandler): Capture {
  let cap: CapModule;
  try {
    cap = require("cap") as CapModule;
  } catch (err) {
    throw new CaptureError(iface, "the libpcap binding (npm cap) is not installed or not built", { cause: err });
  }
  const handle = new cap.Cap();
  const buffer = Buffer.alloc(65535);
  let linkType: string;
  try {
    linkType = handle.open(iface, filter, RING_BYTES, buffer);
  } catch (err) {
    throw new CaptureError(iface, `${(err as Error).message} (does the interface exist, and is NET_RAW granted?)`, { cause: err });
  }
  if (!isLinkType(linkType)) {
    handle.close();
    throw new CaptureError(iface, `link type ${linkType} is not supported`);
  }
  handle.on("packet", (nbytes) => onFrame(buffer, nbytes));
  let closed = false;
  const index = ifindex(iface);
  return {
    iface,
    linkType,
    // A handle on a deleted interface stays open but sees nothing, even if a namesake comes back.
    alive: () => !closed && ifindex(iface) === index,
    close: () => {
      if (!closed) handle.close();
      closed = true;
    },
  };
}

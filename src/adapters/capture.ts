/** libpcap adapter (npm `cap`): one handle per interface, immediate mode, frames handed on as they come. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { CaptureError } from "../core/errors.js";
import { isLinkType, type LinkType } from "../core/packet/decode.js";
import { KNOCK_SNAPLEN } from "../core/packet/bpf.js";

/** npm cap as patched by patches/cap.mjs (postinstall): snaplen, promisc and direction arguments, stats(). */
interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer, snaplen: number, promisc: boolean, inboundOnly: boolean): string;
  close(): void;
  stats?(): CaptureStats;
  on(event: "packet", listener: (nbytes: number, truncated: boolean) => void): void;
}

/** libpcap's counters since the capture was opened. */
export interface CaptureStats {
  /** Packets that passed the filter (Linux: including those then dropped). */
  received: number;
  /** Packets the kernel dropped because the capture ring was full. */
  dropped: number;
}
type CapModule = { Cap: new () => CapHandle };

const require = createRequire(import.meta.url);

export interface Capture {
  readonly iface: string;
  readonly linkType: LinkType;
  /** False once the interface has gone away; capture must be reopened. */
  alive(): boolean;
  stats(): CaptureStats;
  close(): void;
}

export type FrameHandler = (frame: Buffer, length: number) => void;

/**
 * pcap's kernel ring: big enough to ride out a flood burst while the event loop is busy. Slots are
 * sized by the snaplen, so the ring grows with it to keep about as many (some 20,000).
 */
const ringBytes = (snaplen: number) => Math.max(8 * 1024 * 1024, snaplen * 20_000);

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

/** `snaplen`: bytes kept per packet (core/packet/bpf.ts captureSnaplen). */
export function openCapture(iface: string, filter: string, onFrame: FrameHandler, snaplen = KNOCK_SNAPLEN): Capture {
  // Loaded here, not at import: cap is an optional dependency, and only the daemon's capture needs it.
  let cap: CapModule;
  try {
    cap = require("cap") as CapModule;
  } catch (err) {
    throw new CaptureError(
      iface,
      "the libpcap binding (npm cap) is not installed: install libpcap-dev, python3, make and g++ and reinstall, or use the image",
      { cause: err },
    );
  }
  const handle = new cap.Cap();
  if (typeof handle.stats !== "function") {
    throw new CaptureError(iface, "npm cap lacks knockgate's patch (patches/cap.mjs); reinstall with npm ci, whose postinstall applies it");
  }
  const buffer = Buffer.alloc(snaplen);
  let linkType: string;
  try {
    // Not promiscuous: knocks are addressed to this host. Inbound only: our own SYNs are no knocks.
    linkType = handle.open(iface, filter, ringBytes(snaplen), buffer, snaplen, false, true);
  } catch (err) {
    throw new CaptureError(iface, `${(err as Error).message} (does the interface exist, and is NET_RAW granted?)`, { cause: err });
  }
  if (!isLinkType(linkType)) {
    handle.close();
    throw new CaptureError(iface, `link type ${linkType} is not supported`);
  }
  handle.on("packet", (nbytes) => onFrame(buffer, nbytes));
  let closed = false;
  let last: CaptureStats = { received: 0, dropped: 0 };
  const index = ifindex(iface);
  const read = (): CaptureStats => {
    try {
      last = handle.stats!();
    } catch {
      // Counters of a vanished interface: keep the counts read last.
    }
    return last;
  };
  return {
    iface,
    linkType,
    // A handle on a deleted interface stays open but sees nothing, even if a namesake comes back.
    alive: () => !closed && ifindex(iface) === index,
    // After close: the final counts.
    stats: () => (closed ? last : read()),
    close: () => {
      if (closed) return;
      read();
      handle.close();
      closed = true;
    },
  };
}

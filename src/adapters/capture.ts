/** libpcap adapter (npm `cap`): one handle per interface, immediate mode, frames handed on as they come. */
import { readFileSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { endianness } from "node:os";
import { CaptureError } from "../core/errors.js";
import { isLinkType, type LinkType } from "../core/packet/decode.js";
import { KNOCK_SNAPLEN } from "../core/packet/bpf.js";
import { nflogFlushTimeout, nflogFlushTimeoutRequest } from "../core/packet/nflog.js";

/**
 * npm cap as patched by patches/cap.mjs (postinstall): snaplen, promisc and direction arguments,
 * stats(), fd(), and an "error" event instead of an abort when the interface goes down or away.
 */
interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer, snaplen: number, promisc: boolean, inboundOnly: boolean): string;
  close(): void;
  stats(): CaptureStats;
  fd(): number;
  on(event: "packet", listener: (nbytes: number, truncated: boolean) => void): void;
  on(event: "error", listener: (err: Error) => void): void;
}

/** libpcap's counters since the capture was opened. */
export interface CaptureStats {
  /** Packets that passed the filter (Linux: including those then dropped). */
  received: number;
  /** Packets the kernel dropped because the capture ring was full. */
  dropped: number;
}
/** The oldest patches/cap.mjs PATCH_LEVEL the daemon works with: an older build lacks fd(), and would abort the process when an interface goes down. Later levels only add (5: timestamps, for the bench). */
const CAP_PATCH_LEVEL = 4;
type CapModule = { Cap: new () => CapHandle; knockgatePatch?: number };

const require = createRequire(import.meta.url);

/**
 * Every cap handle that was opened, for the life of the process. cap's close() stops its libuv poll
 * handle but never uv_close()s it, so the handle stays in the event loop's handle list; once the
 * garbage collector frees the Pcap object that holds it, that list points into freed memory, and
 * the next handle added or removed beside it corrupts the heap (SIGSEGV, or "free(): invalid
 * pointer" seconds after an interface went down and its capture was reopened; found by the soak,
 * docs/soak.md). Kept here, a closed handle is never freed: about a kilobyte per reopened capture.
 */
const keptForever: CapHandle[] = [];

export interface Capture<L extends string = LinkType> {
  readonly iface: string;
  readonly linkType: L;
  /** False once the interface went down or away; the capture must be reopened. */
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

/** An interface as the kernel shows it now, read before opening a capture on it. */
export interface InterfaceState {
  index: number;
  /** Administratively up (IFF_UP): a capture cannot be opened on an interface that is down. */
  up: boolean;
  /** So that the BPF filter can include VLAN clauses on Ethernet; undefined: not Ethernet. */
  linkType: LinkType | undefined;
}

const IFF_UP = 0x1;

/** undefined: no interface of that name (now). A few small sysfs reads, cheap enough for every second. */
export function interfaceState(iface: string): InterfaceState | undefined {
  if (iface === "any") return { index: 0, up: true, linkType: "LINKTYPE_LINUX_SLL" };
  const read = (what: string) => readFileSync(`/sys/class/net/${iface}/${what}`, "utf8").trim();
  try {
    return { index: Number(read("ifindex")), up: (Number(read("flags")) & IFF_UP) !== 0, linkType: read("type") === "1" ? "ETHERNET" : undefined };
  } catch {
    return undefined;
  }
}

/** cap's name for LINKTYPE_NFLOG, which it has no name for. */
const NFLOG_LINK_TYPE = "Unknown linktype 239";

/** The kernel engine's reader of its reports, and the flush timeout the kernel holds for the group. */
export interface NflogCapture extends Capture<string> {
  /** What the kernel's table said when the capture opened, in ms; null if it could not be read. */
  readonly flushMs: number | null;
}

/**
 * The kernel engine's reports: NFLOG group `group` (libpcap's `nflog:N`), each message whole
 * (core/packet/nflog.ts reads it). No direction: NFLOG has none.
 *
 * The group's messages are held for a batch until `flushHundredths` have passed (the kernel's
 * default is a second, and libpcap leaves it). The kernel takes that setting only from the socket
 * bound to the group, so it goes through libpcap's socket; the answer is read back from /proc.
 */
export function openNflog(group: number, onFrame: FrameHandler, flushHundredths: number): NflogCapture {
  // 65535: libpcap reads a datagram into 128 + snaplen bytes, and one datagram holds a whole batch
  // of reports (a few KB); a longer one would end the capture ("Message truncated").
  const { capture, handle } = openDevice(`nflog:${group}`, "", onFrame, 65535, false, (linkType): linkType is string => linkType === NFLOG_LINK_TYPE);
  try {
    writeSync(handle.fd(), nflogFlushTimeoutRequest(group, flushHundredths, endianness() === "LE"));
  } catch (err) {
    capture.close();
    throw new CaptureError(`nflog:${group}`, `cannot set the NFLOG group's flush timeout: ${(err as Error).message}`, { cause: err });
  }
  let flushMs: number | null = null;
  try {
    const hundredths = nflogFlushTimeout(readFileSync("/proc/self/net/netfilter/nfnetlink_log", "utf8"), group);
    if (hundredths !== undefined) flushMs = hundredths * 10;
  } catch {
    // No table to read (no procfs here): flushMs stays unknown, and the caller says so.
  }
  return { ...capture, flushMs };
}

/** `snaplen`: bytes kept per packet (core/packet/bpf.ts captureSnaplen). */
export function openCapture(iface: string, filter: string, onFrame: FrameHandler, snaplen = KNOCK_SNAPLEN): Capture {
  // Inbound only: our own SYNs are no knocks.
  return openDevice(iface, filter, onFrame, snaplen, true, isLinkType).capture;
}

function openDevice<L extends string>(iface: string, filter: string, onFrame: FrameHandler, snaplen: number, inboundOnly: boolean, supported: (linkType: string) => linkType is L): { capture: Capture<L>; handle: CapHandle } {
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
  if ((cap.knockgatePatch ?? 0) < CAP_PATCH_LEVEL) {
    throw new CaptureError(
      iface,
      `npm cap lacks knockgate's patch (level ${CAP_PATCH_LEVEL} or later of patches/cap.mjs); reinstall with npm ci, whose postinstall applies it, or run node patches/cap.mjs`,
    );
  }
  const handle = new cap.Cap();
  keptForever.push(handle);
  const buffer = Buffer.alloc(snaplen);
  let linkType: string;
  try {
    // Not promiscuous: knocks are addressed to this host.
    linkType = handle.open(iface, filter, ringBytes(snaplen), buffer, snaplen, false, inboundOnly);
  } catch (err) {
    throw new CaptureError(iface, `${(err as Error).message} (does the interface exist, and is NET_RAW granted?)`, { cause: err });
  }
  if (!supported(linkType)) {
    handle.close();
    throw new CaptureError(iface, `link type ${linkType} is not supported`);
  }
  handle.on("packet", (nbytes) => onFrame(buffer, nbytes));
  // The interface went down or away: this handle sees nothing more, even when it comes back.
  let ended = false;
  handle.on("error", () => (ended = true));
  let closed = false;
  let last: CaptureStats = { received: 0, dropped: 0 };
  const index = interfaceState(iface)?.index;
  const read = (): CaptureStats => {
    try {
      last = handle.stats();
    } catch {
      // Counters of a vanished interface: keep the counts read last.
    }
    return last;
  };
  const capture: Capture<L> = {
    iface,
    linkType,
    alive: () => {
      if (closed || ended) return false;
      const state = interfaceState(iface);
      // A namesake of a deleted interface has a new index: this handle would not see its packets.
      // Down is not alive even without an "error" event: libpcap's own poll inside a read can take
      // the socket's ENETDOWN first and keep it, and then no event ever comes (seen in CI: a
      // capture that outlived its interface's going down). nflog:N has no interface, nor an index.
      return state?.index === index && (state === undefined || state.up);
    },
    // After close: the final counts.
    stats: () => (closed ? last : read()),
    close: () => {
      if (closed) return;
      read();
      handle.close();
      closed = true;
    },
  };
  return { capture, handle };
}

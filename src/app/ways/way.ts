/**
 * A way in that captured packets feed. The daemon asks each registered way (ways/index.ts) in turn
 * and hands a decoded packet to the first that takes it; what a way decides goes to the grant
 * lifecycle (grants.ts) as a GrantRequest. A new way is a folder here and one registration there.
 */
import type { Decoder } from "../../core/packet/decode.js";
import type { Knock, PortSpec } from "../../core/types.js";
import type { Check } from "../../adapters/http.js";

export interface PacketWay {
  /** The ports it listens on: the capture filter passes these. */
  ports(): PortSpec[];
  /** Whether this packet is its own. */
  takes(knock: Knock): boolean;
  /** The packet, in `frame` (reused after the call). Never throws: it runs in the capture callback. */
  handle(decoder: Decoder, frame: Uint8Array, capturedAt: number): void;
  /** Before capture starts: what the kernel kept for it across a restart. */
  start?(): Promise<void>;
  /** Once a second: timed-out state. */
  sweep?(now: number): void;
  /** What /readyz shows of it. */
  checks?(): Check[];
}

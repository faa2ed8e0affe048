/**
 * Signed doors in the daemon: a UDP datagram on an SPA port -> the doors listening there ->
 * verifySpa (length, HMAC in constant time, the in-memory replay cache, decryption, the checks;
 * the replay writer woken meanwhile) ->
 * a grant of the ports asked for, to the address the message names, written with the datagram's
 * record in the door's kernel replay set (one nftables transaction; ipset: the record first).
 *
 * Replays, per door (replay.ts): the in-memory ReplayCache turns away a repeat of a
 * datagram this process has seen before it is decrypted; the door's kernel set (spa-plan.ts) is
 * the authority: recording a datagram there is an atomic add that fails when it is present, and
 * the grant goes in only with it; the set outlives the daemon, so a datagram accepted before a
 * restart is refused after it (and by another daemon running at the same time). The set is
 * adopted at start (its listing, before capture starts), so the daemon knows what it holds and
 * makes room in a full set by deleting what expires first: a new datagram is never refused for
 * want of room, and one door's key holder cannot fill another door's set.
 */
import { createSecretKey, randomBytes } from "node:crypto";
import type { Clock } from "../../../core/clock.js";
import { errorFields } from "../../../core/errors.js";
import { REPLAY_SET_SIZE } from "../../../core/firewall/spa-plan.js";
import type { Decoder } from "../../../core/packet/decode.js";
import { accessPlaintext, encodeSpa } from "../../../core/spa/encode.js";
import { ReplayCache } from "../../../core/spa/replay.js";
import { verifySpa, type SpaKeys, type SpaLimits } from "../../../core/spa/verify.js";
import type { Door, Knock, PortSpec, SpaSettings } from "../../../core/types.js";
import type { Firewall } from "../../../adapters/firewall/firewall.js";
import type { Logger } from "../../../adapters/log.js";
import type { Metrics } from "../../../adapters/metrics/metrics.js";
import type { SpaResult } from "../../../adapters/metrics/table.js";
import { guard } from "../../guard.js";
import type { DoorPorts } from "../../protection.js";
import type { GrantRequest, OpenResult } from "../../grants.js";
import { DoorReplay } from "./replay.js";
import type { PacketWay } from "../way.js";
import type { Check } from "../../../adapters/http.js";

interface SignedDoor {
  door: Door;
  spa: SpaSettings;
  /** The door's keys as verifySpa takes them, the HMAC key made a KeyObject once. */
  keys: SpaKeys;
  limits: SpaLimits;
  replay: DoorReplay;
  /** Datagrams handed to the grant lifecycle whose write has not finished. */
  pending: number;
  /** Datagrams refused as busy since the queue last emptied: warned at the first, told at the end. */
  busy: number;
}

/**
 * Datagrams of one door waiting for their kernel write, beyond which a new one is refused (busy).
 * Only a holder of the door's keys gets a datagram this far, but one flooding would queue writes
 * without end: the helper writes about a thousand a second. A burst of real clients stays far below.
 */
export const MAX_PENDING_RECORDS = 1024;

/**
 * Throwaway datagrams (a key of their own) whose checks run at start, once per HMAC digest the doors
 * use. Datagrams are rare, and V8 runs a function it has seen a few times in its interpreter:
 * after this many the checks run compiled, and a real datagram's take about 0.05 ms less on a CPU
 * the packet has just woken (docs/bench.md, 8f). About 0.1 s of CPU per digest, before capture.
 * One more each sweep (a second) keeps them from being thrown away: V8 drops the compiled code and
 * then the bytecode of a function that has not run through a few full garbage collections, and
 * compiles it again at its next call (seen with %GetOptimizationStatus: after 12 full collections
 * the checks are gone without it, and still compiled, at V8's baseline tier, with it).
 */
export const WARM_UP_DATAGRAMS = 2000;

/**
 * At most one writer wake (ReplaySets.wake) per this many ms. A datagram asks for it before its
 * HMAC (the checks take about 0.3 ms on a CPU the datagram has just woken, the helper as long to
 * wake), so a forged one can too: a flood of them has the helper run its no-op at most 100 times a
 * second.
 */
export const WAKE_GAP_MS = 10;

export interface SpaDeps {
  firewall: Firewall;
  protection: DoorPorts;
  log: Logger;
  metrics: Metrics;
  clock: Clock;
  replaySetSize?: number;
}

/**
 * A datagram without -f gets the door's OPEN_FOR (fwknopd's FW_ACCESS_TIMEOUT); a door whose
 * OPEN_FOR is 0 ("until the close sequence", which a datagram cannot send) gets SPA_MAX_OPEN_FOR.
 */
function limitsOf(door: Door, spa: SpaSettings, ports: DoorPorts): SpaLimits {
  return {
    maxAgeS: spa.maxAgeS,
    defaultOpenForS: door.openForMs > 0 ? door.openForMs / 1000 : spa.maxOpenForS,
    maxOpenForS: spa.maxOpenForS,
    requireSourceAddress: spa.requireSourceAddress,
    username: spa.username,
    // Read at each datagram: Docker labels change a door's ports while the daemon runs.
    get ports() {
      return ports.portsOf(door.name);
    },
  };
}

export class SignedWay implements PacketWay {
  private readonly byPort = new Map<number, SignedDoor[]>();
  /** A door per HMAC digest in use, whose limits the warm-up runs the checks with: one with ports if any. */
  private readonly warm = new Map<SpaKeys["hmacDigest"], SignedDoor>();
  /** Why the last datagram could not be recorded in the kernel's replay set; null once one was. */
  private replayError: string | null = null;
  /** When the replay writer was last woken (monotonic ms). */
  private wokeAt = -Infinity;

  /** null when no door is signed. */
  static forDoors(doors: readonly Door[], deps: SpaDeps, grant: (g: GrantRequest) => Promise<OpenResult>): SignedWay | null {
    return doors.some((d) => d.spa !== null) ? new SignedWay(doors, deps, grant) : null;
  }

  private constructor(
    doors: readonly Door[],
    private readonly deps: SpaDeps,
    private readonly grant: (g: GrantRequest) => Promise<OpenResult>,
  ) {
    for (const door of doors) {
      if (!door.spa) continue;
      const list = this.byPort.get(door.spa.port) ?? [];
      const replay = new DoorReplay(door.name, door.spa.maxAgeS, deps.replaySetSize ?? REPLAY_SET_SIZE);
      const { encryptionKey, hmacKey, hmacDigest } = door.spa.keys;
      const keys = { encryptionKey, hmacKey: createSecretKey(hmacKey), hmacDigest };
      const signed: SignedDoor = { door, spa: door.spa, keys, limits: limitsOf(door, door.spa, deps.protection), replay, pending: 0, busy: 0 };
      list.push(signed);
      this.byPort.set(door.spa.port, list);
      if (!this.warm.get(hmacDigest)?.door.ports.length) this.warm.set(hmacDigest, signed);
    }
  }

  /**
   * Reads every signed door's kernel replay set: at start, before capture. A door that found its
   * set empty refuses datagrams stamped in the start's second or before; capture then waits for the
   * next second (at most 1 s), so that a client who sends once the daemon is up is not refused.
   */
  async start(): Promise<void> {
    const { clock, firewall, log } = this.deps;
    for (const [digest, d] of this.warm) {
      const started = clock.now();
      const results = warmUp(d, clock.wallNow() / 1000, WARM_UP_DATAGRAMS);
      log.debug({ event: "spa_warm_up", digest, results, ms: Math.round(clock.now() - started) }, `signed doors' checks (${digest}) warmed up`);
    }
    let guarded = false;
    for (const doors of this.byPort.values()) {
      for (const d of doors) guarded = (await d.replay.adopt(firewall, clock.wallNow() / 1000, clock.now() / 1000, log)) || guarded;
    }
    if (guarded) await new Promise<void>((resolve) => clock.after(1000 - (clock.wallNow() % 1000), resolve));
  }

  /** One throwaway datagram per HMAC digest (see WARM_UP_DATAGRAMS); returns how each ended. */
  sweep(): Map<SpaKeys["hmacDigest"], Record<string, number>> {
    return new Map([...this.warm].map(([digest, d]) => [digest, warmUp(d, this.deps.clock.wallNow() / 1000, 1)]));
  }

  ports(): PortSpec[] {
    return [...this.byPort.keys()].map((port) => ({ port, proto: "udp" }));
  }

  /** SPA ports are never knock ports (configuration checks it). */
  takes(knock: Knock): boolean {
    return knock.proto === "udp" && this.byPort.has(knock.dstPort);
  }

  checks(): Check[] {
    return [this.replayError === null ? { name: "spa_replay", ok: true } : { name: "spa_replay", ok: false, detail: this.replayError }];
  }

  /**
   * The decoder's UDP datagram, in `frame`, to a port it takes. Never throws: it runs in
   * the capture callback. Everything kept beyond this call is copied out here (the frame is reused).
   */
  handle(decoder: Decoder, frame: Uint8Array, capturedAt: number): void {
    const { knock } = decoder;
    const doors = this.byPort.get(knock.dstPort);
    if (!doors) return;
    try {
      if (decoder.payloadEnd < 0) {
        for (const d of doors) this.refused(d.door, "truncated", knock, "the datagram was cut short (capture length or IP length)");
        return;
      }
      // The knock formats its source's text only if it is read: for 0.0.0.0, or a debug line.
      const datagram = { payload: frame.subarray(decoder.payloadStart, decoder.payloadEnd), source: knock };
      const nowS = this.deps.clock.wallNow() / 1000;
      // Doors sharing a port are told apart by their HMAC keys: the first whose HMAC matches decides.
      for (const d of doors) {
        const verdict = verifySpa(datagram, d.keys, d.limits, d.replay.front, nowS, this.wakeWriter);
        if (!verdict.ok && verdict.result === "bad_hmac") {
          this.refused(d.door, "bad_hmac", knock, verdict.detail);
          continue;
        }
        if (!verdict.ok) {
          this.refused(d.door, verdict.result, knock, verdict.detail);
          return;
        }
        const { request } = verdict;
        if (d.replay.stampedBeforeStart(request.timestamp, nowS)) {
          this.refused(d.door, "replay", knock, "stamped before this daemon started, and the door's replay set held nothing to adopt (removed or flushed): it may have been accepted before");
          return;
        }
        const monoS = this.deps.clock.now() / 1000;
        if (d.replay.knows(verdict.replayKey, monoS)) {
          this.refused(d.door, "replay", knock, "this datagram was taken before (the replay index: this run's records and the kernel set adopted at start)");
          return;
        }
        // Before the claim: a datagram refused here leaves the index (and so the kernel set's room) alone.
        if (d.pending >= MAX_PENDING_RECORDS) {
          this.refuseBusy(d, knock);
          return;
        }
        // Kept until the timestamp check would refuse the datagram anyway: at most 2 x max age.
        const ttlS = Math.max(1, Math.ceil(request.timestamp + d.spa.maxAgeS - nowS) + 1);
        const grant: GrantRequest = {
          via: "signed",
          door: d.door,
          family: request.family,
          src: request.address,
          ports: request.ports,
          openForMs: request.openForS * 1000,
          username: request.username,
          capturedAt,
        };
        const replay = d.replay.claim(verdict.replayKey, ttlS, monoS);
        // Nothing may escape as an unhandled rejection: that would end the daemon and its protection.
        // Read now: the decoder's knock describes the next packet by the time the write is done.
        const from = knock.src;
        const written = this.grant({ ...grant, replay });
        d.pending++;
        written
          .then((result) => this.granted(grant.door, result, from))
          .catch((err: unknown) => this.failed(err))
          .finally(() => {
            if (--d.pending === 0 && d.busy > 0) this.drained(d);
          });
        return;
      }
    } catch (err) {
      this.failed(err);
    }
  }

  /** Handed to the checks: wakes the replay writer while they run, at most once per WAKE_GAP_MS. */
  private readonly wakeWriter = (): void => {
    const now = this.deps.clock.now();
    if (now - this.wokeAt < WAKE_GAP_MS) return;
    this.wokeAt = now;
    try {
      this.deps.firewall.replay.wake();
    } catch {
      // Only a head start for the record: a wake that throws must not cost the datagram.
    }
  };

  private failed(err: unknown): void {
    try {
      this.deps.log.error({ event: "spa_failed", ...errorFields(err) }, `handling a signed datagram: ${String(err)}`);
    } catch {
      // Logging itself failed: nothing left to tell, and nothing may escape.
    }
  }

  /** What the grant lifecycle did with the datagram's grant and its replay record, written together. */
  private granted(door: Door, result: OpenResult, from: string): void {
    const { log, metrics } = this.deps;
    if (result === "seen") {
      this.refused(door, "replay", { src: from }, "this datagram was accepted before (kernel replay set)");
      return;
    }
    if (result === "full") {
      // The index makes room before the kernel set fills; full means something else filled it.
      this.replayError = `door ${door.name}'s replay set is full though the daemon made room in it; signed datagrams of the door are refused until entries expire`;
      metrics.spa(door.name, "replay_set_full");
      log.warn({ event: "spa_refused", door: door.name, src: from, result: "replay_set_full" }, this.replayError);
      return;
    }
    if (result === "failed") {
      // The grant lifecycle logged and counted the failed write (grant_failed); here, what it meant for the datagram.
      this.replayError = `recording a datagram of door ${door.name} with its grant failed (see the error line before); the datagram was refused`;
      metrics.spa(door.name, "replay_check_failed");
      return;
    }
    this.replayError = null;
    metrics.spa(door.name, "accepted");
  }

  /** Refused while MAX_PENDING_RECORDS of the door's datagrams wait for the kernel: warned once per episode. */
  private refuseBusy(d: SignedDoor, from: { readonly src: string }): void {
    if (d.busy++ === 0) {
      this.deps.log.warn(
        { event: "spa_busy", door: d.door.name, pending: d.pending },
        `door ${d.door.name} has ${d.pending} signed datagrams waiting for their kernel write: new ones are refused (busy) until those are written; only a holder of the door's keys can send that many`,
      );
    }
    this.refused(d.door, "busy", from, `${d.pending} datagrams of the door wait for their kernel write`);
  }

  private drained(d: SignedDoor): void {
    const refused = d.busy;
    d.busy = 0;
    guard(this.deps.log, "spa_busy_over", { door: d.door.name }, () =>
      this.deps.log.info({ event: "spa_busy_over", door: d.door.name, refused }, `door ${d.door.name}'s datagrams are all written; ${refused} were refused as busy meanwhile`),
    );
  }

  /**
   * Counted, and logged at debug: under a flood of garbage this runs per datagram, so `from.src` is
   * read only for the line. A command or NAT request is logged at warn: only a holder of the door's
   * keys can make one (a copy of it is a replay), and it asks for what knockgate never does.
   */
  private refused(door: Door, result: SpaResult, from: { readonly src: string }, detail: string): void {
    const { log, metrics } = this.deps;
    metrics.spa(door.name, result);
    if (result === "command_refused" || result === "nat_refused") log.warn({ event: "spa_refused", door: door.name, src: from.src, result }, detail);
    else if (log.isLevelEnabled("debug")) log.debug({ event: "spa_refused", door: door.name, src: from.src, result, detail });
  }
}

/**
 * Runs the door's checks `count` times on datagrams under keys of their own, with the door's
 * limits, all the way (to a refusal at the last check when the door has no port yet). Nothing of
 * the door's is touched: its replay state, metrics and logs see none of it. Returns how many ended
 * how ("accepted" or the refusal).
 */
export function warmUp(door: Pick<SignedDoor, "keys" | "limits">, nowS: number, count: number): Record<string, number> {
  const keys = { encryptionKey: randomBytes(32), hmacKey: createSecretKey(randomBytes(32)), hmacDigest: door.keys.hmacDigest };
  const request = {
    username: door.limits.username ?? "warm-up",
    timestamp: Math.floor(nowS),
    address: "192.0.2.1",
    ports: [door.limits.ports[0] ?? { proto: "tcp" as const, port: 1 }],
    clientTimeoutS: null,
  };
  // Distinct datagrams, since a repeat stops at the replay check, and a replay cache of one entry.
  const payloads = Array.from({ length: Math.min(8, count) }, (_, i) => Buffer.from(encodeSpa(accessPlaintext({ ...request, rand: String(1e15 + i) }), keys, randomBytes(8)), "latin1"));
  const replay = new ReplayCache(1);
  const source = { family: 4 as const, src: request.address };
  const results: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const verdict = verifySpa({ payload: payloads[i % payloads.length]!, source }, keys, door.limits, replay, nowS);
    const result = verdict.ok ? "accepted" : verdict.result;
    results[result] = (results[result] ?? 0) + 1;
  }
  return results;
}

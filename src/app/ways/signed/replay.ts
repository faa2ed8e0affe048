/**
 * One signed door's replay state: the memory front that verifySpa looks up before decrypting, the
 * index of the door's kernel replay set (what it holds, so a full set makes room instead of
 * refusing), and what a restart that lost the kernel set must refuse.
 *
 * After a restart the kernel set is the record of what the last run accepted. When it was removed
 * (KNOCK_ON_EXIT=remove) or flushed, that record is gone, and a datagram accepted just before would
 * open again. So a door whose set is found empty at start refuses datagrams stamped before the
 * start until one max age has passed; by then every such datagram is stale anyway. A set found
 * holding entries is adopted into the index and nothing is refused for it.
 */
import { errorFields } from "../../../core/errors.js";
import { ReplayCache } from "../../../core/spa/replay.js";
import { ReplayIndex } from "../../../core/spa/replay-index.js";
import type { Firewall, ReplayEntry } from "../../../adapters/firewall/firewall.js";
import type { Logger } from "../../../adapters/log.js";

/**
 * Seconds an index entry outlives its kernel entry: nftables drops expired elements at its next
 * garbage collection, and until then they count against the set's size.
 */
const KERNEL_GRACE_S = 10;

export class DoorReplay {
  readonly front: ReplayCache;
  private readonly index: ReplayIndex;
  /** Datagrams stamped before `startS` are refused until `untilS` (wall seconds); null: nothing lost. */
  private guard: { startS: number; untilS: number } | null = null;

  constructor(
    readonly door: string,
    private readonly maxAgeS: number,
    capacity: number,
  ) {
    this.front = new ReplayCache(capacity);
    this.index = new ReplayIndex(capacity, KERNEL_GRACE_S);
  }

  /**
   * Reads the door's kernel set at start, before any datagram is read. `nowS` is wall seconds (what
   * datagrams are stamped in), `monoS` monotonic seconds (what kernel timeouts run on). Resolves
   * whether datagrams stamped before now are refused for a while.
   */
  async adopt(firewall: Firewall, nowS: number, monoS: number, log: Logger): Promise<boolean> {
    let listed;
    try {
      listed = await firewall.replay.list(this.door);
    } catch (err) {
      log.warn({ event: "spa_replay_not_adopted", door: this.door, ...errorFields(err, "KNOCK_E_FIREWALL") }, `could not list door ${this.door}'s replay set; datagrams stamped before now are refused for ${this.maxAgeS} s`);
      this.guard = { startS: nowS, untilS: nowS + this.maxAgeS };
      return true;
    }
    // A timeout-less entry (put there by hand) is kept as long as any datagram of the door can live.
    for (const e of listed) this.index.add(e.src, monoS + (e.remainingMs === null ? 2 * this.maxAgeS : e.remainingMs / 1000), monoS);
    if (listed.length > 0) {
      log.info({ event: "spa_replay_adopted", door: this.door, datagrams: listed.length }, `adopted ${listed.length} datagram record${listed.length === 1 ? "" : "s"} of door ${this.door}`);
      return false;
    }
    this.guard = { startS: nowS, untilS: nowS + this.maxAgeS };
    log.info(
      { event: "spa_replay_guard", door: this.door, seconds: this.maxAgeS },
      `door ${this.door}'s replay set is empty (new, removed or flushed): datagrams stamped before now are refused for ${this.maxAgeS} s`,
    );
    return true;
  }

  /** Whether a datagram stamped `timestamp` may have been accepted by a run whose record is lost. */
  stampedBeforeStart(timestamp: number, nowS: number): boolean {
    if (this.guard === null) return false;
    if (nowS >= this.guard.untilS) {
      this.guard = null;
      return false;
    }
    // Whole seconds, as datagrams are stamped: the start's own second may hold the last run's too.
    return timestamp <= Math.floor(this.guard.startS);
  }

  /** Whether the index holds `element`: this run's records and the kernel set adopted at start. */
  knows(element: string, monoS: number): boolean {
    return this.index.has(element, monoS);
  }

  /**
   * Claims `element` (which the index does not know: see knows) until `ttlS` from now in the index
   * at once (a copy arriving meanwhile is a replay). Returns the kernel entry the grant is written
   * with, which first takes out what the index pushed out to make room. `monoS`: monotonic seconds,
   * as the kernel's timeouts run, whatever the wall clock does.
   */
  claim(element: string, ttlS: number, monoS: number): ReplayEntry {
    const evict = this.index.add(element, monoS + ttlS, monoS);
    return { door: this.door, element, ttlS, evict };
  }
}

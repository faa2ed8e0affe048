/**
 * Grants shared between nodes through KnockGrant objects (KNOCK_CLUSTER=kubernetes).
 *
 * The API is never in a knock's path: the daemon opens its own door first and only then hands the
 * grant here, where a bounded queue writes it with retries and backoff. Every node lists and
 * watches the namespace's objects and puts those of other nodes into its own kernel sets for the
 * time they have left; a deleted object (a close sequence on some node) is revoked everywhere. The
 * watch resumes from its last resourceVersion, and re-lists after 410 Gone.
 */
import type { Cancel, Clock } from "../../../core/clock.js";
import {
  backoffMs,
  CLOCK_SKEW_MS,
  grantName,
  grantObject,
  grantPorts,
  lifetimeOf,
  nameOf,
  objectName,
  resourceVersionOf,
  shouldCollect,
  validateGrant,
  type ClusterGrant,
} from "../../../core/cluster/knock-grant.js";
import { errorFields } from "../../../core/errors.js";
import type { Door, Family } from "../../../core/types.js";
import type { ClusterMetrics } from "../../../adapters/metrics/metrics.js";
import type { Check } from "../../../adapters/http.js";
import type { KubeGrants, WatchEvent } from "../../../adapters/kube.js";
import type { DoorPorts } from "../../protection.js";
import type { Grants } from "../../grants.js";
import type { Logger } from "../../../adapters/log.js";

/**
 * The HTTP status of a failed call (404, 409, 410, ...), or undefined when there was no answer. The
 * client's ApiException carries it as a numeric `code` (a socket error's `code` is a string), the
 * watch's errors as `statusCode`. Duck-typed: the client, slow to load, is imported only in
 * cluster mode.
 */
function statusOf(err: unknown): number | undefined {
  const { code, statusCode } = (err ?? {}) as { code?: unknown; statusCode?: unknown };
  return typeof code === "number" ? code : typeof statusCode === "number" ? statusCode : undefined;
}

/**
 * A 4xx about the object, not about who asks or when. 401 and 403 are retried: an API server that
 * has just started accepts requests before its RBAC informers have synced and answers 403 meanwhile
 * (kubernetes/kubernetes#101422), a token being rotated gives 401; 408 and 429 say "later".
 */
function refusesObject(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status < 500 && ![401, 403, 408, 429].includes(status);
}

/** What this node does with grants of other nodes: the grant lifecycle (grants.ts), as for its own. */
export type RemoteGrants = Pick<Grants, "open" | "close">;

export interface ClusterSyncDeps {
  kube: KubeGrants;
  nodeName: string;
  namespace: string;
  doors: readonly Door[];
  /** Each door's ports on this node now: what a remote grant may name. */
  ports: DoorPorts;
  clock: Clock;
  log: Logger;
  metrics: ClusterMetrics;
  /** In [0, 1): jitter for the backoff. */
  random(): number;
  /** KNOCK_DRY_RUN: other nodes' grants are still read and applied (to the dry-run firewall), but nothing is written. */
  dryRun: boolean;
}

/** Unsent writes at most; beyond, the oldest is given up (counted). One per object: later ones replace earlier. */
export const MAX_PENDING = 10_000;
const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 10_000;
/** The server ends a watch after this; one still open after that (plus slack) is presumed dead. */
const WATCH_TIMEOUT_S = 240;
const WATCH_SLACK_MS = 30_000;
/**
 * A write, or the start of a watch, that has not answered by then counts as failed and is retried:
 * the client sets no timeout of its own, and one request hung on a half-open connection would hold
 * up every write behind it, or the watch for good. A list (10,000 objects are a few MB) gets longer.
 */
const WRITE_TIMEOUT_MS = 5_000;
const LIST_TIMEOUT_MS = 60_000;
/** How often objects whose time is up are looked for. */
const COLLECT_MS = 5_000;

type Write = { kind: "put"; grant: ClusterGrant } | { kind: "delete" };

interface Known {
  /** Origin and expiry, when the object has both: what collection goes by, valid here or not. */
  lifetime: ReturnType<typeof lifetimeOf>;
  /** Set when the object is valid here: what a DELETED event revokes. */
  grant: ClusterGrant | null;
}

export class ClusterSync {
  private readonly doors: Map<string, Door>;
  private readonly pending = new Map<string, Write>();
  private sending = false;
  private sendAttempt = 0;
  private readonly known = new Map<string, Known>();
  private resourceVersion: string | null = null;
  private watchAttempt = 0;
  private stopWatch: (() => void) | null = null;
  private cancelCollect: Cancel | null = null;
  private cancelSendWait: Cancel | null = null;
  private cancelWatchRetry: Cancel | null = null;
  private stopped = false;
  private watchProblem: string | null = "not connected to the API server yet";
  private publishProblem: string | null = null;
  /** The grant lifecycle, given at start: other nodes' grants are applied only once this node protects itself. */
  private target: RemoteGrants | null = null;

  constructor(private readonly deps: ClusterSyncDeps) {
    this.doors = new Map(deps.doors.map((d) => [d.name, d]));
  }

  /** Starts listing and watching in the background, applying what it finds to `target`: the daemon does not wait for the API. */
  start(target: RemoteGrants): void {
    this.target = target;
    this.relist();
    this.cancelCollect = this.deps.clock.every(COLLECT_MS, () => this.collect());
  }

  stop(): void {
    this.stopped = true;
    for (const cancel of [this.cancelCollect, this.cancelSendWait, this.cancelWatchRetry]) cancel?.();
    this.stopWatch?.();
  }

  /** Advisory: the API being away never stops this node protecting itself or opening its own doors. */
  check(): Check {
    const problem = [this.watchProblem, this.publishProblem].filter((p) => p !== null).join("; ");
    return problem ? { name: "cluster", ok: false, detail: problem, advisory: true } : { name: "cluster", ok: true, advisory: true };
  }

  /**
   * A grant made here (the kernel has it): publish it. A signed grant goes out as one object per
   * port, each ending when its kernel entry does, so that an object's deletion at its expiry never
   * takes away a port that a longer datagram still holds.
   */
  opened(grant: Omit<ClusterGrant, "origin">): void {
    const g: ClusterGrant = { ...grant, origin: this.deps.nodeName };
    const each = g.how === "signed" && g.ports !== null ? g.ports.map((p) => ({ ...g, ports: [p] })) : [g];
    for (const one of each) this.enqueue(grantName(one), { kind: "put", grant: one });
  }

  /**
   * A close sequence here (the kernel no longer has the grant): revoke it everywhere. It closes the
   * source's sequence grant only: a signed grant ends by its time, never by knocks anyone can forge.
   */
  closed(door: Door, family: Family, src: string): void {
    this.enqueue(objectName(door.name, family, src), { kind: "delete" });
  }

  get pendingWrites(): number {
    return this.pending.size;
  }

  private enqueue(name: string, write: Write): void {
    // A dry-run node must not open real doors on the other nodes.
    if (this.deps.dryRun) {
      this.deps.log.info({ event: "dry_run_cluster_write", object: name, write: write.kind }, `dry run: would ${write.kind} KnockGrant ${name}`);
      return;
    }
    if (this.pending.has(name)) this.pending.delete(name);
    else if (this.pending.size >= MAX_PENDING) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
      this.deps.metrics.publishDropped.inc();
    }
    this.pending.set(name, write);
    if (!this.sending) void this.send();
  }

  /** Writes pending objects oldest first; a failure waits a growing backoff and tries again. */
  private async send(): Promise<void> {
    this.sending = true;
    while (!this.stopped) {
      const next = this.pending.entries().next().value;
      if (next === undefined) break;
      const [name, write] = next;
      // Held up past its expiry (the API was away): other nodes would refuse it anyway. Whether
      // writes work again, the next one will tell.
      if (write.kind === "put" && write.grant.expiresAt !== null && write.grant.expiresAt <= this.deps.clock.wallNow()) {
        this.pending.delete(name);
        this.publishProblem = null;
        continue;
      }
      try {
        await this.withTimeout(this.write(name, write), WRITE_TIMEOUT_MS);
        // A newer write for the same object may have arrived meanwhile: that one still goes.
        if (this.pending.get(name) === write) this.pending.delete(name);
        if (this.sendAttempt > 0) this.deps.log.info({ event: "cluster_publish_resumed", attempts: this.sendAttempt + 1 }, "writing KnockGrants works again");
        this.sendAttempt = 0;
        this.publishProblem = null;
      } catch (err) {
        const status = statusOf(err);
        const { err: message } = errorFields(err);
        this.deps.metrics.publishErrors.inc();
        // /readyz is public: it says what fails, the log says which object (its name encodes the address).
        this.publishProblem = `writing KnockGrants failed: ${message}`;
        // The API refused the object itself (400, 404, 422): trying again cannot help, and would hold up the rest.
        if (refusesObject(status)) {
          this.deps.log.error({ event: "cluster_publish_refused", object: name, status, err: message }, `the API refused KnockGrant ${name} (${status}): ${message}`);
          if (this.pending.get(name) === write) this.pending.delete(name);
          continue;
        }
        this.sendAttempt++;
        const delay = backoffMs(this.sendAttempt, RETRY_BASE_MS, RETRY_MAX_MS, this.deps.random());
        const level = this.sendAttempt === 1 || this.sendAttempt % 10 === 0 ? "warn" : "debug";
        this.deps.log[level]({ event: "cluster_publish_failed", object: name, attempt: this.sendAttempt, retry_ms: delay, err: message }, `could not write KnockGrant ${name}; retrying`);
        await new Promise<void>((resolve) => (this.cancelSendWait = this.deps.clock.after(delay, resolve)));
      }
    }
    this.sending = false;
  }

  private withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
    let cancel: Cancel = () => undefined;
    const timeout = new Promise<never>((_, reject) => {
      cancel = this.deps.clock.after(ms, () => reject(new Error(`no answer from the API server within ${ms} ms`)));
    });
    return Promise.race([work, timeout]).finally(cancel);
  }

  private async write(name: string, write: Write): Promise<void> {
    const { kube, metrics, namespace } = this.deps;
    if (write.kind === "delete") {
      try {
        await kube.remove(name);
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
      // Revoked here already (or expired): the DELETED event has nothing left to do, and the
      // collector must not delete it again meanwhile.
      this.known.delete(name);
      return;
    }
    const body = grantObject(write.grant, namespace);
    try {
      await kube.create(body);
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      // A refresh: the object exists. null removes what a merge patch would otherwise keep.
      const spec = body["spec"] as Record<string, unknown>;
      await kube.patchSpec(name, { expiresAt: null, ports: null, ...spec });
    }
    metrics.published.inc();
  }

  /** A full list: objects gone since the last look are revoked, the rest applied, then the watch goes on. */
  private relist(): void {
    if (this.stopped) return;
    this.withTimeout(this.deps.kube.list(), LIST_TIMEOUT_MS).then(
      ({ items, resourceVersion }) => {
        if (this.stopped) return;
        const seen = new Set<string>();
        for (const obj of items) {
          const name = nameOf(obj);
          if (name !== null) seen.add(name);
          this.upsert(obj, false);
        }
        for (const name of [...this.known.keys()]) if (!seen.has(name)) this.removed(name);
        this.resourceVersion = resourceVersion;
        this.watch();
      },
      (err: unknown) => this.watchFailed("list", err, () => this.relist()),
    );
  }

  private watch(): void {
    if (this.stopped || this.resourceVersion === null) return;
    let gone = false;
    let ended = false;
    let cancelDeadline: Cancel = () => undefined;
    const end = (err: unknown) => {
      if (ended) return;
      ended = true;
      cancelDeadline();
      this.stopWatch = null;
      if (this.stopped) return;
      this.deps.metrics.watchRestarts.inc();
      if (gone || statusOf(err) === 410) {
        this.deps.log.info({ event: "cluster_relist" }, "the watch's resourceVersion is too old (410 Gone): listing again");
        this.resourceVersion = null;
        this.relist();
      } else if (err) this.watchFailed("watch", err, () => this.watch());
      else this.watch();
    };
    const started = this.deps.kube.watch(
      this.resourceVersion,
      WATCH_TIMEOUT_S,
      (e) => {
        // A watch given up on (it connected too late) may still deliver: only the current one counts.
        if (ended) return;
        if (e.type === "ERROR") gone ||= (e.object as { code?: unknown } | null)?.code === 410;
        else this.event(e);
      },
      end,
    );
    // ...and is closed as soon as it connects.
    started.then(
      (stop) => {
        if (ended) stop();
      },
      () => undefined,
    );
    this.withTimeout(started, WRITE_TIMEOUT_MS).then(
      (stop) => {
        if (ended) return;
        this.watchAttempt = 0;
        this.watchProblem = null;
        this.deps.metrics.connected.set(1);
        this.stopWatch = stop;
        // A connection that went silent (a half-open TCP) never ends by itself.
        cancelDeadline = this.deps.clock.after(WATCH_TIMEOUT_S * 1000 + WATCH_SLACK_MS, stop);
      },
      end,
    );
  }

  private watchFailed(what: "list" | "watch", err: unknown, retry: () => void): void {
    if (this.stopped) return;
    this.watchAttempt++;
    const { err: message } = errorFields(err);
    const delay = backoffMs(this.watchAttempt, RETRY_BASE_MS * 5, RETRY_MAX_MS, this.deps.random());
    this.watchProblem = `${what} of KnockGrants failed: ${message}`;
    this.deps.metrics.connected.set(0);
    const level = this.watchAttempt === 1 || this.watchAttempt % 10 === 0 ? "warn" : "debug";
    this.deps.log[level]({ event: `cluster_${what}_failed`, attempt: this.watchAttempt, retry_ms: delay, err: message }, `${what} of KnockGrants failed; retrying`);
    this.cancelWatchRetry = this.deps.clock.after(delay, retry);
  }

  private event(e: WatchEvent): void {
    const rv = resourceVersionOf(e.object);
    if (rv !== null) this.resourceVersion = rv;
    if (e.type === "ADDED" || e.type === "MODIFIED") this.upsert(e.object, true);
    else if (e.type === "DELETED") {
      const name = nameOf(e.object);
      if (name !== null) this.removed(name);
    }
  }

  /** An object as listed or watched: remembered for collection; another node's grant applied if valid here. */
  private upsert(obj: unknown, live: boolean): void {
    const { log, metrics, nodeName, clock } = this.deps;
    const name = nameOf(obj);
    if (name === null) return;
    const lifetime = lifetimeOf(obj);
    const result = validateGrant(obj, this.doors, (door) => this.deps.ports.portsOf(door), clock.wallNow());
    const grant = result.ok ? result.grant : null;
    this.known.set(name, { lifetime, grant });
    if ((grant?.origin ?? lifetime?.origin) === nodeName) return;
    if (!result.ok) {
      metrics.rejected(result.reason);
      log.warn({ event: "cluster_grant_rejected", object: name, reason: result.reason, detail: result.detail }, `ignored KnockGrant ${name}: ${result.detail}`);
      return;
    }
    const { grant: g, door } = result;
    const remainingMs = g.expiresAt === null ? Infinity : g.expiresAt - clock.wallNow();
    if (remainingMs <= 0) return;
    const ports = g.how === "signed" ? { ports: grantPorts(this.deps.ports.portsOf(door.name), g.ports) } : {};
    const request = { door, family: g.family, src: g.address, via: g.how, ...ports, openForMs: Number.isFinite(remainingMs) ? remainingMs : 0, origin: g.origin };
    // Failures are logged and counted by the grant lifecycle, with the address.
    // Objects arrive only after start, which gave the target.
    void this.target?.open(request).then((result) => {
      if (result !== "opened") return;
      metrics.applied.inc();
      // Objects found by a list may be old: only live events measure the lag.
      if (live) metrics.lag.observe(Math.max(0, clock.wallNow() - g.grantedAt) / 1000);
    });
  }

  private removed(name: string): void {
    const known = this.known.get(name);
    this.known.delete(name);
    // Deleted elsewhere (a close sequence): a write of ours still waiting must not bring it back.
    if (this.pending.get(name)?.kind === "put") this.pending.delete(name);
    const g = known?.grant;
    const door = g ? this.doors.get(g.door) : undefined;
    if (!g || !door) return;
    // A signed object deleted at its expiry (by its origin's clock) ends its port, which the kernel
    // times out by itself. A deletion before then (by hand) takes out exactly the ports it named.
    if (g.how === "signed" && g.expiresAt !== null && g.expiresAt <= this.deps.clock.wallNow() + CLOCK_SKEW_MS) return;
    const ports = g.how === "signed" ? { ports: grantPorts(this.deps.ports.portsOf(door.name), g.ports) } : {};
    void this.target?.close({ door, family: g.family, src: g.address, via: g.how, ...ports, remote: true }).then((held) => {
      if (held) this.deps.metrics.revoked.inc();
    });
  }

  /** Deletes this node's expired objects, and anyone's expired long ago. */
  private collect(): void {
    const now = this.deps.clock.wallNow();
    for (const [name, k] of this.known) {
      if (k.lifetime && shouldCollect(k.lifetime.expiresAt, k.lifetime.origin, this.deps.nodeName, now) && !this.pending.has(name)) this.enqueue(name, { kind: "delete" });
    }
  }
}

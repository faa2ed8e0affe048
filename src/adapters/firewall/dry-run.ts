/**
 * KNOCK_DRY_RUN: logs what the chosen backend would write, in its tools' words (PlanText), and
 * touches nothing. It keeps the grants it would have made in memory, with their expiry, so
 * /metrics, /readyz and the audit log behave as they would for real; the daemon's unit tests run
 * on it too.
 */
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { Config, Family, PortSpec } from "../../core/types.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import { portName } from "../../core/types.js";
import { FAMILIES } from "../../core/firewall/common.js";
import { firewallPlan } from "../../core/firewall/plan.js";
import { REPLAY_SET_SIZE, signedDoors } from "../../core/firewall/spa-plan.js";
import { checkedPorts } from "./checked.js";
import { byAddress } from "./listed.js";
import type { Firewall, GrantKey, ListedGrant, PlanText, ReplaySets } from "./firewall.js";

export interface DryRunOptions {
  config: Config;
  targets: readonly OwnedTarget[];
  log: Logger;
  clock: Clock;
  /** The chosen backend's words for what it would do. */
  text: PlanText;
  /** Entries a replay set takes, as the kernel's (REPLAY_SET_SIZE). */
  replaySetSize?: number;
}

export class DryRunFirewall implements Firewall {
  readonly backend = "dry-run";
  readonly replay: ReplaySets;
  private installed = false;
  private planLogged = false;
  private readonly config: Config;
  private targets: readonly OwnedTarget[];
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly text: PlanText;
  /** Door-wide grants, key `door|family|src` -> monotonic expiry (Infinity: until revoked). */
  private readonly doorWide = new Map<string, { door: string; family: Family; src: string; expiresAt: number }>();
  /** Grants of some ports as the kernel keeps them, one entry per port, key `door|family|src|port`. */
  private readonly perPort = new Map<string, { door: string; family: Family; src: string; port: PortSpec; expiresAt: number }>();
  /** The replay sets per door: element -> monotonic expiry, at most `replaySetSize` live ones as in the kernel. */
  private readonly replaySets = new Map<string, Map<string, number>>();

  constructor({ config, targets, log, clock, text, replaySetSize = REPLAY_SET_SIZE }: DryRunOptions) {
    this.config = config;
    this.targets = targets;
    this.log = log;
    this.clock = clock;
    this.text = text;
    this.replay = {
      // Async: a check that throws rejects, as the backends' writes do.
      grant: async (entry, grants) => {
        const { door, element, ttlS, evict } = entry;
        const set = this.replaySet(door);
        for (const e of evict) set.delete(e);
        if ((set.get(element) ?? -Infinity) > this.clock.now()) return "seen";
        // As the kernel does: expired entries make room only when the set is full.
        if (set.size >= replaySetSize) for (const [key, expiresAt] of set) if (expiresAt <= this.clock.now()) set.delete(key);
        if (set.size >= replaySetSize) return "full";
        const written = grants();
        // The record and its grants as the backend writes them (on nftables, one transaction).
        const command = this.text.record(entry, written).join("\n");
        set.set(element, this.clock.now() + ttlS * 1000);
        for (const g of written) this.hold(g.grant, g.forMs);
        this.log.info({ event: "dry_run_grant", door, src: written[0]?.grant.src, command });
        return "recorded";
      },
      list: (door) => {
        const now = this.clock.now();
        return Promise.resolve([...this.replaySet(door)].flatMap(([src, expiresAt]) => (expiresAt > now ? [{ src, remainingMs: expiresAt - now }] : [])));
      },
      // No helper to wake.
      wake: () => undefined,
    };
  }

  reconcile(mode: "check" | "repair"): Promise<string[]> {
    if (mode === "check") return Promise.resolve(this.installed ? [] : ["not installed yet (dry run)"]);
    if (!this.planLogged) {
      this.planLogged = true;
      const plan = this.text.install(firewallPlan(this.config, this.targets));
      this.log.info({ event: "dry_run_plan", backend: this.text.backend, plan }, `dry run: ${this.text.backend} would install`);
    }
    this.installed = true;
    return Promise.resolve([]);
  }

  protect(targets: readonly OwnedTarget[]): Promise<void> {
    this.targets = targets;
    const plan = this.text.protect(firewallPlan(this.config, targets));
    this.log.info({ event: "dry_run_protect", backend: this.text.backend, plan }, `dry run: ${this.text.backend} would rewrite the protection`);
    return Promise.resolve();
  }

  grant(grant: GrantKey, forMs: number): Promise<void> {
    this.hold(grant, forMs);
    this.log.info({ event: "dry_run_grant", door: grant.door.name, src: grant.src, command: this.text.grant(grant, forMs) });
    return Promise.resolve();
  }

  /** Keeps a grant as the kernel would, after the checks the backends make. */
  private hold(grant: GrantKey, forMs: number): void {
    const { door, family, src, ports } = grant;
    if (ports !== null) checkedPorts(door, this.targets, ports);
    const now = this.clock.now();
    if (ports === null) this.doorWide.set(`${door.name}|${family}|${src}`, { door: door.name, family, src, expiresAt: forMs > 0 ? now + forMs : Infinity });
    // As the kernel's per-port sets: every entry has a timeout.
    else for (const port of ports) this.perPort.set(`${door.name}|${family}|${src}|${portName(port)}`, { door: door.name, family, src, port, expiresAt: now + forMs });
  }

  revoke(grant: GrantKey): Promise<void> {
    const { door, family, src, ports } = grant;
    this.log.info({ event: "dry_run_revoke", door: door.name, src, command: this.text.revoke(grant) });
    if (ports === null) this.doorWide.delete(`${door.name}|${family}|${src}`);
    else for (const port of ports) this.perPort.delete(`${door.name}|${family}|${src}|${portName(port)}`);
    return Promise.resolve();
  }

  /** No rules run in a dry run: nothing grants unseen. */
  unreported(): Promise<ListedGrant[]> {
    return Promise.resolve([]);
  }

  /** What is left, as the kernel would list it: expired grants are gone. */
  grants(): Promise<ListedGrant[]> {
    const now = this.clock.now();
    for (const [key, g] of this.doorWide) if (g.expiresAt <= now) this.doorWide.delete(key);
    for (const [key, g] of this.perPort) if (g.expiresAt <= now) this.perPort.delete(key);
    const remaining = (expiresAt: number) => (Number.isFinite(expiresAt) ? expiresAt - now : null);
    const doorWide = [...this.doorWide.values()].map((g): ListedGrant => ({ door: g.door, family: g.family, src: g.src, ports: null, remainingMs: remaining(g.expiresAt) }));
    const perPort = signedDoors(this.config).flatMap((door) =>
      FAMILIES.flatMap((family) =>
        byAddress(
          door.name,
          family,
          [...this.perPort.values()].filter((g) => g.door === door.name && g.family === family).map((g) => ({ src: g.src, port: g.port, remainingMs: remaining(g.expiresAt) })),
        ),
      ),
    );
    return Promise.resolve([...doorWide, ...perPort]);
  }

  private replaySet(door: string): Map<string, number> {
    const set = this.replaySets.get(door) ?? new Map<string, number>();
    this.replaySets.set(door, set);
    return set;
  }

  shutdown(remove: boolean): Promise<void> {
    if (remove) {
      this.installed = false;
      this.doorWide.clear();
      this.perPort.clear();
      this.replaySets.clear();
    }
    return Promise.resolve();
  }
}

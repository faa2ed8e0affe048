/**
 * The protected targets at a moment: one value with one owner. The Docker watcher proposes what
 * the labelled containers claim; this decides (the configuration's ports first, then containers
 * oldest first, one door per target), publishes the result to every reader (the firewall plan,
 * signed doors, cluster objects, /readyz, check, metrics) and writes it to the firewall. Door
 * configuration is never changed: a door's ports at a moment are read here.
 */
import type { Cancel, Clock } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import { conflictText, decideDoors, effectiveDoors, type EffectiveDoor } from "../core/docker/desired.js";
import type { LabelledContainer } from "../core/docker/labels.js";
import { doorPorts, protectionKey, targetText, type Conflict, type OwnedTarget, type Protection } from "../core/protection/targets.js";
import type { Config, PortSpec } from "../core/types.js";
import type { Firewall } from "../adapters/firewall/firewall.js";
import type { Check } from "../adapters/http.js";
import type { Logger } from "../adapters/log.js";

/** A failed rewrite of the protected targets is tried again after this long. */
const APPLY_RETRY_MS = 1000;

/** What readers need: a door's host ports now (what a grant of it opens, what a datagram may ask for). */
export interface DoorPorts {
  portsOf(door: string): readonly PortSpec[];
}

export interface ProtectionDeps {
  config: Config;
  log: Logger;
  clock: Clock;
}

export class ProtectionService implements DoorPorts {
  private decided: Protection;
  private containers: LabelledContainer[] = [];
  private ports = new Map<string, PortSpec[]>();
  private firewall: Firewall | null = null;
  private appliedKey: string;
  private applying: Promise<void> = Promise.resolve();
  private applyError: string | null = null;
  private cancelRetry: Cancel | null = null;
  private stopped = false;
  /** Conflicts logged, by their text: each is logged once while it lasts. */
  private logged = new Set<string>();

  constructor(private readonly deps: ProtectionDeps) {
    this.decided = this.decide([]);
    this.appliedKey = protectionKey(this.decided.targets);
  }

  targets(): readonly OwnedTarget[] {
    return this.decided.targets;
  }

  conflicts(): readonly Conflict[] {
    return this.decided.conflicts;
  }

  portsOf(door: string): readonly PortSpec[] {
    return this.ports.get(door) ?? [];
  }

  /** Each door's host ports and where each came from. */
  effective(): EffectiveDoor[] {
    return effectiveDoors(this.deps.config.doors, this.decided, this.containers);
  }

  /**
   * The watcher's view of the labelled containers: decided at once (readers see it now), written to
   * the firewall once it is following. Resolves when the firewall has it (or the write failed and
   * a retry is scheduled).
   */
  propose(containers: Iterable<LabelledContainer>): Promise<void> {
    this.containers = [...containers];
    this.decided = this.decide(this.containers);
    return this.apply();
  }

  /** From now on changes go to `firewall`, which was installed with `installed` (targets() as they were then). */
  follow(firewall: Firewall, installed: readonly OwnedTarget[]): Promise<void> {
    this.firewall = firewall;
    this.appliedKey = protectionKey(installed);
    this.logProtection(null);
    return this.apply();
  }

  stop(): void {
    this.stopped = true;
    this.cancelRetry?.();
  }

  /** A failed write fails readiness; refused label claims are advisories (the owner's protection holds). */
  checks(): Check[] {
    const checks: Check[] = [];
    if (this.applyError !== null) checks.push({ name: "protection", ok: false, detail: `could not apply the protected targets: ${this.applyError}` });
    if (this.decided.conflicts.length > 0) {
      checks.push({ name: "label_conflicts", ok: true, detail: this.decided.conflicts.map(conflictText).join("; ") });
    }
    return checks;
  }

  private decide(containers: readonly LabelledContainer[]): Protection {
    const decided = decideDoors(this.deps.config.doors, containers);
    this.ports = new Map(this.deps.config.doors.map((d) => [d.name, doorPorts(decided.targets, d.name)]));
    this.logConflicts(decided.conflicts);
    return decided;
  }

  private logConflicts(conflicts: readonly Conflict[]): void {
    const now = new Set<string>();
    for (const c of conflicts) {
      const text = conflictText(c);
      now.add(text);
      if (this.logged.has(text)) continue;
      this.deps.log.warn(
        { event: "label_conflict", container: c.claim.origin, door: c.claim.door, port: targetText(c.claim), owner: c.owner.door, owner_origin: c.owner.origin },
        text,
      );
    }
    this.logged = now;
  }

  /** Writes are serialized, each writing the latest decision, so none can undo a newer one. */
  private apply(): Promise<void> {
    this.applying = this.applying.then(() => this.write());
    return this.applying;
  }

  private async write(): Promise<void> {
    const { firewall } = this;
    const targets = this.decided.targets;
    const key = protectionKey(targets);
    if (firewall === null || this.stopped || key === this.appliedKey) return;
    const { log, clock } = this.deps;
    const started = clock.now();
    try {
      await firewall.protect(targets);
    } catch (err) {
      const fields = errorFields(err, "KNOCK_E_FIREWALL");
      if (this.applyError !== fields.err) log.error({ event: "protect_failed", ...fields }, `could not apply the protected targets: ${fields.err}`);
      this.applyError = fields.err;
      this.cancelRetry ??= clock.after(APPLY_RETRY_MS, () => {
        this.cancelRetry = null;
        void this.apply();
      });
      return;
    }
    this.applyError = null;
    this.appliedKey = key;
    this.logProtection(clock.now() - started);
  }

  /** `applyMs`: how long the firewall took; null for the targets of the first install. */
  private logProtection(applyMs: number | null): void {
    this.deps.log.info(
      {
        event: "protected_ports",
        doors: Object.fromEntries(this.effective().map((d) => [d.door, d.ports])),
        targets: this.decided.targets.filter((t) => t.dest.kind === "container").map((t) => `${t.door} ${targetText(t)}`),
        ...(applyMs === null ? { initial: true } : { apply_ms: Math.round(applyMs * 1000) / 1000 }),
      },
      applyMs === null ? "protected ports at start" : "protected ports changed",
    );
  }
}

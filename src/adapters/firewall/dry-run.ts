/**
 * KNOCK_DRY_RUN: plans and logs what would change and touches nothing. It keeps the grants it would
 * have made in memory, with their expiry, so /metrics, /readyz and the audit log behave as they
 * would for real; the daemon's unit tests run on it too.
 */
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { Config, Door, Family, PortSpec } from "../../core/types.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import { checkedPorts, listSpaPerDoor, type Backend, type BackendListedGrant, type ListedSpaGrant, type ReplayRecord } from "./firewall.js";
import { portName } from "../../core/types.js";
import { ipsetSpaGrantLines, ipsetSpaRevokeLines, REPLAY_SET_SIZE } from "../../core/firewall/spa-plan.js";
import { FAMILIES, type KernelGrant } from "../../core/firewall/common.js";
import { iptablesChainPlan, ipsetCreateScript, ipsetGrantLine, ipsetRevokeLine, nftPlan } from "../../core/firewall/plan.js";

export class DryRunFirewall implements Backend {
  readonly backend = "dry-run";
  private installed = false;
  private planLogged = false;
  /** Key `door|family|src` -> monotonic expiry (Infinity: until revoked). */
  private readonly grants = new Map<string, { door: string; family: Family; src: string; expiresAt: number }>();
  /** Signed grants, key `door|family|src`: ports and monotonic expiry. */
  /** Signed grants as the kernel keeps them, one entry per port, key `door|family|src|port`. */
  private readonly spaGrants = new Map<string, { door: string; family: Family; src: string; port: PortSpec; expiresAt: number }>();
  /** The replay sets per door: element -> monotonic expiry, at most `replaySetSize` live ones as in the kernel. */
  private readonly replay = new Map<string, Map<string, number>>();

  constructor(
    private readonly config: Config,
    private targets: readonly OwnedTarget[],
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly replaySetSize = REPLAY_SET_SIZE,
  ) {}

  check(): Promise<string[]> {
    return Promise.resolve(this.installed ? [] : ["not installed yet (dry run)"]);
  }

  reconcile(): Promise<string[]> {
    if (!this.planLogged) {
      this.planLogged = true;
      const iptables = [ipsetCreateScript(this.config, this.targets), ...FAMILIES.map((f) => iptablesChainPlan(this.config, this.targets, f).restore)];
      this.log.info({ event: "dry_run_plan", iptables: iptables.join(""), nftables: nftPlan(this.config, this.targets).script }, "dry run: would install");
    }
    this.installed = true;
    return Promise.resolve([]);
  }

  protect(targets: readonly OwnedTarget[]): Promise<void> {
    this.targets = targets;
    const iptables = FAMILIES.map((f) => iptablesChainPlan(this.config, targets, f).restore);
    this.log.info({ event: "dry_run_protect", iptables: iptables.join(""), nftables: nftPlan(this.config, targets).script }, "dry run: would rewrite the protection");
    return Promise.resolve();
  }

  grant(door: Door, family: Family, src: string, forMs = door.openForMs): Promise<void> {
    this.log.info({ event: "dry_run_grant", door: door.name, src, command: ipsetGrantLine(door.name, family, src, forMs) });
    const expiresAt = forMs > 0 ? this.clock.now() + forMs : Infinity;
    this.grants.set(`${door.name}|${family}|${src}`, { door: door.name, family, src, expiresAt });
    return Promise.resolve();
  }

  revoke(door: Door, family: Family, src: string): Promise<void> {
    this.log.info({ event: "dry_run_revoke", door: door.name, src, command: ipsetRevokeLine(door.name, family, src) });
    this.grants.delete(`${door.name}|${family}|${src}`);
    return Promise.resolve();
  }

  grantPorts(door: Door, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): Promise<void> {
    this.log.info({ event: "dry_run_grant", door: door.name, src, command: ipsetSpaGrantLines(door.name, family, src, checkedPorts(door, this.targets, ports), openForMs).join("; ") });
    for (const port of ports) this.spaGrants.set(`${door.name}|${family}|${src}|${portName(port)}`, { door: door.name, family, src, port, expiresAt: this.clock.now() + openForMs });
    return Promise.resolve();
  }

  revokePorts(door: Door, family: Family, src: string, ports: readonly PortSpec[]): Promise<void> {
    this.log.info({ event: "dry_run_revoke", door: door.name, src, command: ipsetSpaRevokeLines(door.name, family, src, ports).join("; ") });
    for (const port of ports) this.spaGrants.delete(`${door.name}|${family}|${src}|${portName(port)}`);
    return Promise.resolve();
  }

  recordDatagram(door: string, element: string, ttlS: number, evict: readonly string[]): Promise<ReplayRecord> {
    const set = this.replaySet(door);
    for (const e of evict) set.delete(e);
    if ((set.get(element) ?? -Infinity) > this.clock.now()) return Promise.resolve("seen");
    // As the kernel does: expired entries make room only when the set is full.
    if (set.size >= this.replaySetSize) for (const [key, expiresAt] of set) if (expiresAt <= this.clock.now()) set.delete(key);
    if (set.size >= this.replaySetSize) return Promise.resolve("full");
    set.set(element, this.clock.now() + ttlS * 1000);
    return Promise.resolve("recorded");
  }

  listReplay(door: string): Promise<KernelGrant[]> {
    const now = this.clock.now();
    return Promise.resolve([...this.replaySet(door)].flatMap(([src, expiresAt]) => (expiresAt > now ? [{ src, remainingMs: expiresAt - now }] : [])));
  }

  private replaySet(door: string): Map<string, number> {
    const set = this.replay.get(door) ?? new Map<string, number>();
    this.replay.set(door, set);
    return set;
  }

  listSpaGrants(): Promise<ListedSpaGrant[]> {
    const now = this.clock.now();
    for (const [key, g] of this.spaGrants) if (g.expiresAt <= now) this.spaGrants.delete(key);
    return listSpaPerDoor(this.config.doors, (door, family) =>
      Promise.resolve([...this.spaGrants.values()].filter((g) => g.door === door && g.family === family).map((g) => ({ src: g.src, port: g.port, remainingMs: g.expiresAt - now }))),
    );
  }

  /** What is left, as the kernel would list it: expired grants are gone. */
  listGrants(): Promise<BackendListedGrant[]> {
    const now = this.clock.now();
    for (const [key, g] of this.grants) if (g.expiresAt <= now) this.grants.delete(key);
    return Promise.resolve(
      [...this.grants.values()].map((g) => ({ door: g.door, family: g.family, src: g.src, remainingMs: Number.isFinite(g.expiresAt) ? g.expiresAt - now : null })),
    );
  }

  remove(): Promise<void> {
    this.installed = false;
    this.grants.clear();
    this.spaGrants.clear();
    this.replay.clear();
    return Promise.resolve();
  }

  close(): void {}
}

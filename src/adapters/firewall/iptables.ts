/** iptables + ipset backend: chain KNOCKGATE in mangle (IPv4 and IPv6), grants in ipsets with timeouts. */
import type { Config, Door, Family, PortSpec } from "../../core/types.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import type { Logger } from "../log.js";
import { LineSession, mustRun, type Runner } from "./exec.js";
import { ChangeQueue, checkedAddress, checkedPorts, listPerDoor, listSpaPerDoor, type Backend, type BackendListedGrant, type ListedSpaGrant, ReplayWriter, type ReplayRecord } from "./firewall.js";
import type { KernelGrant } from "../../core/firewall/common.js";
import {
  ipsetReplayAddLine,
  ipsetReplayDelLine,
  ipsetReplayName,
  ipsetSpaGrantLines,
  ipsetSpaMembers,
  ipsetSpaName,
  ipsetSpaRevokeLines,
  signedDoors,
} from "../../core/firewall/spa-plan.js";
import type { IptablesVariant } from "./detect.js";
import { KEPT_CHAIN } from "../../core/firewall/kept.js";
import { FAMILIES } from "../../core/firewall/common.js";
import {
  CHAIN,
  expectedAllowMembers,
  iptablesChainPlan,
  ipsetAllowName,
  ipsetAllowScript,
  ipsetCreateScript,
  ipsetGrantLine,
  ipsetMembers,
  ipsetName,
  ipsetRevokeLine,
  ipsetSizes,
  ipsetMaxelems,
  ipsetRebuildScript,
  ipsetGrantSets,
  isOurIpset,
  JUMP_RULE,
  mangleView,
  planMarker,
} from "../../core/firewall/plan.js";

interface Finding {
  problem: string;
  repair: () => Promise<unknown>;
  rewroteChain?: boolean;
}

/** stdbuf: ipset's prompt, our completion marker, would otherwise sit in a stdio buffer on the pipe. */
const ipsetSession = () => new LineSession({ argv: ["stdbuf", "-o0", "ipset", "-"], marker: /ipset> /, initial: 1 });

export class IptablesFirewall implements Backend {
  readonly backend: string;
  private readonly ipset = ipsetSession();
  /** Replay records have a session of their own: see ReplayWriter. */
  private readonly replaySession = ipsetSession();
  private readonly replay: ReplayWriter;
  private readonly changes: ChangeQueue;

  constructor(
    private readonly config: Config,
    private targets: readonly OwnedTarget[],
    private readonly variant: IptablesVariant,
    private readonly run: Runner,
    log: Logger,
  ) {
    this.backend = `iptables-${variant}`;
    this.changes = new ChangeQueue(run, log);
    this.replay = new ReplayWriter(this.replaySession, run, (line) => ["ipset", ...line.split(" ")]);
  }

  private tool(family: Family, suffix = ""): string {
    return `${family === 4 ? "iptables" : "ip6tables"}-${this.variant}${suffix}`;
  }

  async check(): Promise<string[]> {
    return (await this.inspect(this.run)).map((f) => f.problem);
  }

  reconcile(): Promise<string[]> {
    return this.changes.reconcile(async (run) => {
      const findings = await this.inspect(run);
      for (const f of findings) await f.repair();
      if (findings.some((f) => f.rewroteChain)) await this.destroyStaleSets(run);
      const lost = this.ipset.takeLoss();
      this.ipset.open();
      if (signedDoors(this.config).length > 0) this.replaySession.open();
      return [...findings.map((f) => f.problem), ...(lost ? [lost] : [])];
    });
  }

  /** In the change queue, so no reconcile in flight sees the new ports and calls them a repair. */
  protect(targets: readonly OwnedTarget[]): Promise<void> {
    return this.changes.reconcile(async (run) => {
      this.targets = targets;
      await Promise.all(FAMILIES.map((f) => mustRun(run, [this.tool(f, "-restore"), "-w", "--noflush"], iptablesChainPlan(this.config, targets, f).restore)));
    });
  }

  /** What differs from the plan, in the order repairs must run: sets, then chains, then jumps. */
  private async inspect(run: Runner): Promise<Finding[]> {
    const findings: Finding[] = [];
    const terse = await mustRun(run, ["ipset", "list", "-t"]);
    const sizes = ipsetSizes(terse);
    const missing = this.wantedSets().filter((n) => !sizes.has(n));
    if (missing.length > 0) {
      findings.push({
        problem: `sets missing: ${missing.join(", ")}`,
        repair: () => mustRun(run, ["ipset", "restore", "-exist"], ipsetCreateScript(this.config, this.targets, missing)),
      });
    }
    const maxelems = ipsetMaxelems(terse);
    for (const set of ipsetGrantSets(this.config, this.targets)) {
      const has = maxelems.get(set.name);
      if (has === undefined || has === set.maxelem) continue;
      findings.push({
        problem: `set ${set.name} holds at most ${has} entries, KNOCK_MAX_GRANTS needs ${set.maxelem}`,
        repair: async () => {
          const grants = ipsetMembers(await mustRun(run, ["ipset", "list", set.name]));
          await mustRun(run, ["ipset", "restore"], ipsetRebuildScript(set, grants));
        },
      });
    }
    for (const family of FAMILIES) {
      const name = ipsetAllowName(family);
      const expected = expectedAllowMembers(this.config, family);
      const size = sizes.get(name) ?? 0;
      // Members are read only when the count cannot tell: with no KNOCK_ALLOW, never.
      const differs = size !== expected.length || (size > 0 && (await this.setMembers(run, name)).join(",") !== expected.join(","));
      if (differs) {
        findings.push({
          problem: `set ${name} differs from KNOCK_ALLOW`,
          repair: () => mustRun(run, ["ipset", "restore", "-exist"], ipsetAllowScript(this.config, family)),
        });
      }
    }
    for (const family of FAMILIES) {
      const iptables = this.tool(family);
      const plan = iptablesChainPlan(this.config, this.targets, family);
      // One read of the mangle table shows both our chain and the jumps to it.
      const { chain, rules, jumps, firstPrerouting } = mangleView(await mustRun(run, [this.tool(family, "-save"), "-t", "mangle"]));
      if (!chain || rules.length !== plan.ruleCount || !rules.some((r) => r.includes(planMarker(this.config, this.targets)))) {
        findings.push({
          problem: !chain ? `chain ${CHAIN} missing (IPv${family})` : `chain ${CHAIN} differs from the plan (IPv${family})`,
          repair: () => mustRun(run, [this.tool(family, "-restore"), "-w", "--noflush"], plan.restore),
          rewroteChain: true,
        });
      }
      const jumpFirst = [iptables, "-w", "-t", "mangle", "-I", "PREROUTING", "1", "-j", CHAIN];
      if (jumps === 0) {
        findings.push({
          problem: `jump PREROUTING -> ${CHAIN} missing (IPv${family})`,
          // First, so nobody's earlier ACCEPT in mangle can bypass the protection.
          repair: () => mustRun(run, jumpFirst),
        });
      } else if (jumps > 1 || firstPrerouting !== JUMP_RULE) {
        findings.push({
          problem:
            jumps > 1
              ? `${jumps - 1} duplicate jump(s) PREROUTING -> ${CHAIN} (IPv${family})`
              : `jump PREROUTING -> ${CHAIN} is not first (IPv${family}); above it: ${firstPrerouting ?? "?"}`,
          // Every jump out, then one back on top: the order of PREROUTING is ours to keep first.
          repair: async () => {
            for (let n = jumps; n > 0; n--) await mustRun(run, [iptables, "-w", "-t", "mangle", "-D", "PREROUTING", "-j", CHAIN]);
            await mustRun(run, jumpFirst);
          },
        });
      }
    }
    return findings;
  }

  private wantedSets(): string[] {
    const replay = signedDoors(this.config).map((d) => ipsetReplayName(d.name));
    return [...FAMILIES.map(ipsetAllowName), ...ipsetGrantSets(this.config, this.targets).map((s) => s.name), ...replay];
  }

  /** Sets of doors that are no longer configured; the rewritten chains no longer use them. */
  private async destroyStaleSets(run: Runner): Promise<void> {
    const wanted = new Set(this.wantedSets());
    for (const name of (await this.setSizes(run)).keys()) {
      if (isOurIpset(name) && !wanted.has(name)) await run(["ipset", "destroy", name]);
    }
  }

  /** Every set and its entry count in one exec: the reconcile loop runs it every few seconds. */
  private async setSizes(run: Runner): Promise<Map<string, number>> {
    return ipsetSizes(await mustRun(run, ["ipset", "list", "-t"]));
  }

  private async setMembers(run: Runner, name: string): Promise<string[]> {
    return ipsetMembers(await mustRun(run, ["ipset", "list", name]))
      .map((m) => m.src)
      .sort();
  }

  grant(door: Door, family: Family, src: string, forMs = door.openForMs): Promise<void> {
    return this.apply(ipsetGrantLine(door.name, family, checkedAddress(src, family), forMs));
  }

  revoke(door: Door, family: Family, src: string): Promise<void> {
    return this.apply(ipsetRevokeLine(door.name, family, checkedAddress(src, family)));
  }

  async grantPorts(door: Door, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): Promise<void> {
    for (const line of ipsetSpaGrantLines(door.name, family, checkedAddress(src, family), checkedPorts(door, this.targets, ports), openForMs)) await this.apply(line);
  }

  async revokePorts(door: Door, family: Family, src: string, ports: readonly PortSpec[]): Promise<void> {
    for (const line of ipsetSpaRevokeLines(door.name, family, checkedAddress(src, family), ports)) await this.apply(line);
  }

  recordDatagram(door: string, element: string, ttlS: number, evict: readonly string[]): Promise<ReplayRecord> {
    const deletes = evict.map((e) => ipsetReplayDelLine(door, checkedAddress(e, 6)));
    return this.replay.record(deletes, ipsetReplayAddLine(door, checkedAddress(element, 6), ttlS));
  }

  async listReplay(door: string): Promise<KernelGrant[]> {
    return ipsetMembers(await mustRun(this.run, ["ipset", "list", ipsetReplayName(door)]));
  }

  listSpaGrants(): Promise<ListedSpaGrant[]> {
    return listSpaPerDoor(this.config.doors, async (door, family) => ipsetSpaMembers(ipsetMembers(await mustRun(this.run, ["ipset", "list", ipsetSpaName(door, family)]))));
  }

  /**
   * Through the long-lived session; if that fails, once more as a command of its own. Only changes
   * go through the session: in `ipset -`, list options such as -n and -t stick to later commands
   * (ipset 7.17), so reads are commands of their own.
   */
  private async apply(line: string): Promise<void> {
    try {
      await this.ipset.send(line);
    } catch {
      await mustRun(this.run, ["ipset", ...line.split(" ")]);
    }
  }

  listGrants(): Promise<BackendListedGrant[]> {
    return listPerDoor(this.config.doors, async (door, family) => ipsetMembers(await mustRun(this.run, ["ipset", "list", ipsetName(door, family)])));
  }

  async remove(): Promise<void> {
    this.ipset.close();
    this.replaySession.close();
    await this.changes.remove((run) => removeIptables(run, this.variant));
  }

  close(): void {
    this.ipset.close();
    this.replaySession.close();
  }
}

/** Removes our jumps, chains and sets; what is already gone is fine. */
export async function removeIptables(run: Runner, variant: IptablesVariant): Promise<void> {
  for (const family of FAMILIES) {
    const iptables = `${family === 4 ? "iptables" : "ip6tables"}-${variant}`;
    // Bounded: a jump we cannot delete must not spin forever.
    for (let i = 0; i < 100; i++) {
      const r = await run([iptables, "-w", "-t", "mangle", "-D", "PREROUTING", "-j", CHAIN]);
      if (r.code !== 0) break;
    }
    // The flush tells whether the chain is there (it fails when not) without listing it: printing a
    // rule with an ipset match opens a raw socket to ipset, i.e. needs CAP_NET_RAW, which removal
    // (`knockgate cleanup` with NET_ADMIN alone) must not.
    for (const chain of [CHAIN, KEPT_CHAIN]) {
      const flushed = await run([iptables, "-w", "-t", "mangle", "-F", chain]);
      if (flushed.code === 0) await mustRun(run, [iptables, "-w", "-t", "mangle", "-X", chain]);
    }
  }
  const sets = await mustRun(run, ["ipset", "list", "-n"]);
  for (const name of sets.split("\n")) {
    if (isOurIpset(name)) await mustRun(run, ["ipset", "destroy", name]);
  }
}

/** The kept records (core/firewall/kept.ts) in the IPv4 mangle table; none when the chain is not there. */
export async function readKeptIptables(run: Runner, variant: IptablesVariant): Promise<string[]> {
  return keptComments(await mustRun(run, [`iptables-${variant}-save`, "-t", "mangle"]));
}

/** The comments of KNOCKGATE-KEPT's rules in `iptables-save` output. */
export function keptComments(save: string): string[] {
  return save.split("\n").flatMap((l) => {
    const m = l.startsWith(`-A ${KEPT_CHAIN} `) ? /--comment (?:"([^"]*)"|(\S+))/.exec(l) : null;
    return m ? [m[1] ?? m[2] ?? ""] : [];
  });
}

/** iptables + ipset backend: chain KNOCKGATE in mangle (IPv4 and IPv6), grants in ipsets with timeouts. */
import type { Family } from "../../../core/types.js";
import type { OwnedTarget } from "../../../core/protection/targets.js";
import { FAMILIES } from "../../../core/firewall/common.js";
import { planMarker, type FirewallPlan } from "../../../core/firewall/plan.js";
import { signedDoors } from "../../../core/firewall/spa-plan.js";
import { LineSession, mustRun, type Runner } from "../exec.js";
import { saveArgv, type IptablesVariant } from "../detect.js";
import { ChangeQueue, ReplayWriter } from "../changes.js";
import { checkedAddress, checkedPorts } from "../checked.js";
import { listGrants } from "../listed.js";
import { Planned } from "../planned.js";
import type { BackendOptions, Firewall, GrantKey, ListedGrant, PlanId, PlanText, ReplayEntry, ReplaySets } from "../firewall.js";
import { CHAIN, iptablesChainPlan, JUMP_RULE, KEPT_CHAIN } from "./rules.js";
import {
  expectedAllowMembers,
  ipsetAllowName,
  ipsetAllowScript,
  ipsetCreateScript,
  ipsetGrantLine,
  ipsetGrantSets,
  ipsetName,
  ipsetNames,
  ipsetRebuildScript,
  ipsetReplayAddLine,
  ipsetReplayDelLine,
  ipsetReplayFailure,
  ipsetReplayName,
  ipsetRevokeLine,
  ipsetSpaGrantLines,
  ipsetSpaName,
  ipsetSpaRevokeLines,
  isOurIpset,
} from "./sets.js";
import { ipsetMaxelems, ipsetMembers, ipsetSizes, ipsetSpaMembers, keptComments, mangleView } from "./listing.js";

interface Finding {
  problem: string;
  repair: () => Promise<unknown>;
  rewroteChain?: boolean;
}

/**
 * stdbuf: ipset's prompt, our completion marker, would otherwise sit in a stdio buffer on the pipe.
 * No no-op (LineProtocol.noop): `ipset -` answers an empty line with two prompts, and `version`,
 * answered with one, reads no kernel: it would wake the line reader only, which took little off
 * with nft (docs/bench.md, 8f).
 */
const ipsetSession = (name?: string) => new LineSession({ ...(name ? { name } : {}), argv: ["stdbuf", "-o0", "ipset", "-"], marker: /ipset> /, initial: 1 });

const tool = (variant: IptablesVariant, family: Family, suffix = ""): string => `${family === 4 ? "iptables" : "ip6tables"}-${variant}${suffix}`;

/** The `ipset -` lines of a grant: its door's address set, or each of its ports in the per-port set. */
function grantLines({ door, family, src, ports }: GrantKey, forMs: number): string[] {
  return ports === null ? [ipsetGrantLine(door.name, family, src, forMs)] : ipsetSpaGrantLines(door.name, family, src, ports, forMs);
}
function revokeLines({ door, family, src, ports }: GrantKey): string[] {
  return ports === null ? [ipsetRevokeLine(door.name, family, src)] : ipsetSpaRevokeLines(door.name, family, src, ports);
}

/** A datagram's record, after the evictions that make room for it; ipset has no transactions, so its grants follow once it is in. */
function replayLines({ door, element, ttlS, evict }: ReplayEntry): { deletes: string[]; add: string } {
  return { deletes: evict.map((e) => ipsetReplayDelLine(door, checkedAddress(e, 6))), add: ipsetReplayAddLine(door, checkedAddress(element, 6), ttlS) };
}

/** What the dry run logs for this backend. */
export function iptablesText(planId: PlanId): PlanText {
  const chains = (plan: FirewallPlan) => FAMILIES.map((f) => iptablesChainPlan(plan, f, planMarker(planId(plan))).restore).join("");
  return {
    backend: "iptables",
    install: (plan) => ipsetCreateScript(plan) + chains(plan),
    protect: chains,
    grant: (grant, forMs) => grantLines(grant, forMs).join("; "),
    revoke: (grant) => revokeLines(grant).join("; "),
    record: (entry, grants) => {
      const { deletes, add } = replayLines(entry);
      return [...deletes, add, ...grants.flatMap((g) => grantLines(g.grant, g.forMs))];
    },
  };
}

export class IptablesFirewall implements Firewall {
  readonly backend: string;
  readonly replay: ReplaySets;
  private readonly ipset = ipsetSession();
  /** Replay records have a session of their own: see ReplayWriter. */
  private readonly replaySession = ipsetSession("replay records' helper `stdbuf -o0 ipset -`");
  private readonly changes: ChangeQueue;
  private readonly planned: Planned;
  private readonly run: Runner;

  constructor(
    { config, targets, planId, run, log }: BackendOptions,
    private readonly variant: IptablesVariant,
  ) {
    this.planned = new Planned({ config, targets }, planId);
    this.run = run;
    this.backend = `iptables-${variant}`;
    this.changes = new ChangeQueue(run, log);
    const writer = new ReplayWriter(this.replaySession, run, (line) => ["ipset", ...line.split(" ")], ipsetReplayFailure);
    this.replay = {
      grant: async (entry, grants) => {
        const { deletes, add } = replayLines(entry);
        const recorded = await writer.record(deletes, () => add);
        if (recorded === "recorded") for (const g of grants()) await this.grant(g.grant, g.forMs);
        return recorded;
      },
      list: async (door) => ipsetMembers(await mustRun(this.run, ["ipset", "list", ipsetReplayName(door)])),
      wake: () => this.replaySession.wake(),
    };
  }

  private chainPlan(family: Family) {
    return iptablesChainPlan(this.planned.plan, family, this.planned.marker);
  }

  reconcile(mode: "check" | "repair"): Promise<string[]> {
    if (mode === "check") return this.inspect(this.run).then((findings) => findings.map((f) => f.problem));
    return this.changes.reconcile(async (run) => {
      const findings = await this.inspect(run);
      for (const f of findings) await f.repair();
      if (findings.some((f) => f.rewroteChain)) await this.destroyStaleSets(run);
      // Started first: a start that throws leaves the losses for the next pass to report.
      this.ipset.open();
      if (signedDoors(this.planned.config).length > 0) this.replaySession.open();
      const lost = [this.ipset.takeLoss(), this.replaySession.takeLoss()].filter((l) => l !== null);
      return [...findings.map((f) => f.problem), ...lost];
    });
  }

  /** In the change queue, so no reconcile in flight sees the new ports and calls them a repair. */
  protect(targets: readonly OwnedTarget[]): Promise<void> {
    return this.changes.reconcile(async (run) => {
      this.planned.retarget(targets);
      await Promise.all(FAMILIES.map((f) => mustRun(run, [tool(this.variant, f, "-restore"), "-w", "--noflush"], this.chainPlan(f).restore)));
    });
  }

  /** What differs from the plan, in the order repairs must run: sets, then chains, then jumps. */
  private async inspect(run: Runner): Promise<Finding[]> {
    const findings: Finding[] = [];
    const plan = this.planned.plan;
    const terse = await mustRun(run, ["ipset", "list", "-t"]);
    const sizes = ipsetSizes(terse);
    const missing = ipsetNames(plan).filter((n) => !sizes.has(n));
    if (missing.length > 0) {
      findings.push({
        problem: `sets missing: ${missing.join(", ")}`,
        repair: () => mustRun(run, ["ipset", "restore", "-exist"], ipsetCreateScript(plan, missing)),
      });
    }
    const maxelems = ipsetMaxelems(terse);
    for (const set of ipsetGrantSets(plan)) {
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
      const expected = expectedAllowMembers(plan, family);
      const size = sizes.get(name) ?? 0;
      // Members are read only when the count cannot tell: with no KNOCK_ALLOW, never.
      const differs = size !== expected.length || (size > 0 && (await this.setMembers(run, name)).join(",") !== expected.join(","));
      if (differs) {
        findings.push({
          problem: `set ${name} differs from KNOCK_ALLOW`,
          repair: () => mustRun(run, ["ipset", "restore", "-exist"], ipsetAllowScript(plan, family)),
        });
      }
    }
    const marker = this.planned.marker;
    for (const family of FAMILIES) {
      const iptables = tool(this.variant, family);
      const chainPlan = this.chainPlan(family);
      // One read of the mangle table shows both our chain and the jumps to it.
      const { chain, rules, jumps, firstPrerouting } = mangleView(await mustRun(run, saveArgv(this.variant, "mangle", family)));
      if (!chain || rules.length !== chainPlan.ruleCount || !rules.some((r) => r.includes(marker))) {
        findings.push({
          problem: !chain ? `chain ${CHAIN} missing (IPv${family})` : `chain ${CHAIN} differs from the plan (IPv${family})`,
          repair: () => mustRun(run, [tool(this.variant, family, "-restore"), "-w", "--noflush"], chainPlan.restore),
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

  /** Sets of doors that are no longer configured; the rewritten chains no longer use them. */
  private async destroyStaleSets(run: Runner): Promise<void> {
    const wanted = new Set(ipsetNames(this.planned.plan));
    for (const name of ipsetSizes(await mustRun(run, ["ipset", "list", "-t"])).keys()) {
      if (isOurIpset(name) && !wanted.has(name)) await run(["ipset", "destroy", name]);
    }
  }

  private async setMembers(run: Runner, name: string): Promise<string[]> {
    return ipsetMembers(await mustRun(run, ["ipset", "list", name]))
      .map((m) => m.src)
      .sort();
  }

  async grant(grant: GrantKey, forMs: number): Promise<void> {
    const src = checkedAddress(grant.src, grant.family);
    const ports = grant.ports === null ? null : checkedPorts(grant.door, this.planned.targets, grant.ports);
    for (const line of grantLines({ ...grant, src, ports }, forMs)) await this.apply(line);
  }

  async revoke(grant: GrantKey): Promise<void> {
    for (const line of revokeLines({ ...grant, src: checkedAddress(grant.src, grant.family) })) await this.apply(line);
  }

  /** The kernel engine runs on nftables only. */
  unreported(): Promise<ListedGrant[]> {
    return Promise.resolve([]);
  }

  grants(): Promise<ListedGrant[]> {
    const members = async (set: string) => ipsetMembers(await mustRun(this.run, ["ipset", "list", set]));
    return listGrants(
      this.planned.config.doors,
      (door, family) => members(ipsetName(door, family)),
      async (door, family) => ipsetSpaMembers(await members(ipsetSpaName(door, family))),
    );
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

  async shutdown(remove: boolean): Promise<void> {
    this.ipset.close();
    this.replaySession.close();
    if (remove) await this.changes.remove((run) => removeIptables(run, this.variant));
  }
}

/** Removes our jumps, chains and sets; what is already gone is fine. */
export async function removeIptables(run: Runner, variant: IptablesVariant): Promise<void> {
  for (const family of FAMILIES) {
    const iptables = tool(variant, family);
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
  return keptComments(await mustRun(run, saveArgv(variant, "mangle")));
}

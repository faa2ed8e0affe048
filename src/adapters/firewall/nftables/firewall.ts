/** nftables backend: one table of our own, `inet knockgate`, with timeout sets for grants. */
import type { Door, Family } from "../../../core/types.js";
import type { OwnedTarget } from "../../../core/protection/targets.js";
import { FirewallError } from "../../../core/errors.js";
import { FAMILIES } from "../../../core/firewall/common.js";
import { grantSets, planMarker, type FirewallPlan } from "../../../core/firewall/plan.js";
import { signedDoors } from "../../../core/firewall/spa-plan.js";
import { LineSession, mustRun, type Runner } from "../exec.js";
import { ChangeQueue, ReplayWriter } from "../changes.js";
import { checkedAddress, checkedPorts } from "../checked.js";
import { listGrants } from "../listed.js";
import { Planned } from "../planned.js";
import type { BackendOptions, Firewall, GrantKey, ListedGrant, PlanId, PlanText, ReplayEntry, ReplayRecord, ReplaySets, TimedGrant } from "../firewall.js";
import { NFT_CHAIN, NFT_KEPT_CHAIN, nftPlan } from "./rules.js";
import { hideKnockSecrets, hidingKnockSecrets, kernelGrantDoors, knockProblems, knockSetNames, unreadSetName } from "./knock.js";
import {
  inTable,
  NFT_ACK_SET,
  NFT_TABLE,
  nftGrantLine,
  nftPortElement,
  nftReplayAddLine,
  nftReplayDelLine,
  nftReplayFailure,
  nftReplaySetName,
  nftRevokeLine,
  nftSetName,
  nftSpaGrantLine,
  nftSpaRevokeLine,
  nftSpaSetName,
  type PutForm,
  setFlags,
  setName,
  takeOutLine,
} from "./sets.js";
import { chainBody, countNftRules, nftElements, nftSpaElements, ruleComments } from "./listing.js";

/** A door set whose flags say the other engine made it (dynamic: the kernel engine's rules wrote it). */
const otherEngine = (name: string): string =>
  `set inet ${NFT_TABLE} ${name} was made for the other KNOCK_ENGINE (its flags differ, and the kernel will not change them in place); ` +
  "to switch engines, remove our objects first: stop knockgate with KNOCK_ON_EXIT=remove, or run knockgate cleanup (the door stays closed to everyone until the next start)";

/** Most addresses in one transaction (a 256-address line is about 15 kB; nft -i takes 25 kB lines). */
const MAX_BATCH = 256;

/** Consecutive door-wide grants (or revokes) of one door and family, waiting to go as one transaction. */
interface Batch {
  revoke: boolean;
  door: Door;
  family: Family;
  /** Grant lifetime (0: none); a batch holds grants of one lifetime. */
  forMs: number;
  srcs: Set<string>;
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

/**
 * nft -i prints nothing on success, so each command is followed by listing the tiny empty ack set,
 * whose closing brace marks completion. Not --echo: it re-reads the whole grant set on every
 * transaction (19 ms per grant at 10k grants). stdbuf gets the listing out of nft's stdio buffer.
 */
const nftSession = (name?: string) =>
  new LineSession({
    ...(name ? { name } : {}),
    argv: ["stdbuf", "-o0", "nft", "-i"],
    marker: /\n}\n/,
    initial: 0,
    suffix: `list set inet ${NFT_TABLE} ${NFT_ACK_SET}`,
    // An empty line does nothing; its suffix wakes the helper's parser and netlink path too.
    noop: "",
    // nft -i keeps its line editor's history in $HOME/.nft.history: read whole at start, written
    // back at exit, never trimmed. Every grant's address and replay digest would pile up in root's
    // home and slow each start. No file can exist under /dev/null, ~/.editrc or ~/.inputrc neither.
    env: { HOME: "/dev/null" },
    // The same history in memory grows by every line, never trimmed, and each line walks it: after
    // 24,000 commands one took 1 ms instead of 0.44. A child is replaced after 500 commands.
    renewAfter: { commands: 500, bytes: 1 << 20 },
  });

/** The `nft -i` line of a grant: its door's address set, or its ports in the per-port set. */
function grantLine({ door, family, src, ports }: GrantKey, forMs: number, form: PutForm = "put"): string {
  return ports === null ? nftGrantLine(door.name, family, [src], forMs, form) : nftSpaGrantLine(door.name, family, src, ports, forMs, form);
}
function revokeLine({ door, family, src, ports }: GrantKey): string {
  return ports === null ? nftRevokeLine(door.name, family, [src]) : nftSpaRevokeLine(door.name, family, src, ports);
}

/** Evictions from a door's replay set: a line of their own, ahead of the record (a refused record must not put back what the index let go). */
const replayEvictions = ({ door, evict }: ReplayEntry): string[] => (evict.length > 0 ? [nftReplayDelLine(door, evict.map((e) => checkedAddress(e, 6)))] : []);

/**
 * A datagram's record and its grants as one transaction: the grants go in only if the record does
 * (the kernel's `create` is the check). New grants are created, in a line of about half the bytes a
 * put needs (docs/bench.md, 8f); a refresh the book knows of makes it a put.
 */
function replayTransaction({ door, element, ttlS }: ReplayEntry, grants: readonly TimedGrant[], lineOf: (g: TimedGrant, form: PutForm) => string, form: PutForm = grants.some((g) => g.refresh) ? "put" : "create"): string {
  return [nftReplayAddLine(door, checkedAddress(element, 6), ttlS), ...grants.map((g) => lineOf(g, form))].join("; ");
}

/** What the dry run logs for this backend. */
export function nftablesText(planId: PlanId): PlanText {
  const script = (plan: FirewallPlan) => nftPlan(plan, planMarker(planId(plan))).script;
  const record = (entry: ReplayEntry, grants: readonly TimedGrant[]) => [...replayEvictions(entry), replayTransaction(entry, grants, (g, form) => grantLine(g.grant, g.forMs, form))];
  // The kernel engine's rules hold the sequences' ports, which no info line may show (nor the plan id, which digests them).
  const shown = (plan: FirewallPlan) => (plan.knock.length > 0 ? hideKnockSecrets(script(plan)) : script(plan));
  return { backend: "nftables", install: shown, protect: shown, grant: grantLine, revoke: revokeLine, record };
}

export class NftablesFirewall implements Firewall {
  readonly backend = "nftables";
  readonly replay: ReplaySets;
  private readonly nft = nftSession();
  /** Replay records have a session of their own: see ReplayWriter. */
  private readonly replaySession = nftSession("replay records' helper `stdbuf -o0 nft -i`");
  private queue: Batch[] = [];
  private draining = false;
  private readonly changes: ChangeQueue;
  private readonly planned: Planned;
  private readonly run: Runner;

  constructor({ config, targets, planId, run: tool, log }: BackendOptions) {
    this.planned = new Planned({ config, targets }, planId);
    const run = hidingKnockSecrets(tool);
    this.run = run;
    this.changes = new ChangeQueue(run, log);
    const writer = new ReplayWriter(this.replaySession, run, (line) => ["nft", line], nftReplayFailure);
    this.replay = {
      // Should a created entry be there after all, the transaction fails as a whole ("exists") and
      // goes again as a put. A refresh goes as a put at once: a failed line costs the helper a
      // restart (about 10 ms).
      grant: (entry, grants) => {
        let written: readonly TimedGrant[] = [];
        const line = (form?: PutForm) => replayTransaction(entry, written, (g, f) => this.lineOf(g, f), form);
        const add = () => {
          written = grants();
          return line();
        };
        return writer.record(replayEvictions(entry), add, () => this.settleUnknown(entry.door, entry.element, written), () => line("put"));
      },
      list: (door) => this.elements(nftReplaySetName(door)).then(nftElements),
      wake: () => this.replaySession.wake(),
    };
  }

  private script(): { script: string; ruleCount: number } {
    return nftPlan(this.planned.plan, this.planned.marker);
  }

  private async problems(run: Runner): Promise<string[]> {
    // --terse leaves out set elements: the listing stays small however many grants there are.
    const table = await run(["nft", "-t", "list", "table", "inet", NFT_TABLE]);
    if (table.code !== 0) return [`table inet ${NFT_TABLE} missing`];
    const problems: string[] = [];
    const plan = this.planned.plan;
    // Per family: the door-wide sets, then the per-port ones.
    const sized = FAMILIES.flatMap((f) => {
      const own = grantSets(plan, f);
      return [...own.filter((s) => s.kind === "door"), ...own.filter((s) => s.kind === "ports")];
    });
    const allow = plan.sets.filter((s) => s.kind === "allow");
    const replay = plan.sets.filter((s) => s.kind === "replay");
    const sets = [NFT_ACK_SET, ...[...allow, ...sized, ...replay].map(setName), ...knockSetNames(plan)];
    const missing = sets.filter((name) => !table.stdout.includes(`\tset ${name} {`));
    if (missing.length > 0) problems.push(`sets missing: ${missing.join(", ")}`);
    for (const set of sized) {
      const name = setName(set);
      const wanted = set.size;
      const at = table.stdout.indexOf(`\tset ${name} {`);
      const block = at < 0 ? "" : table.stdout.slice(at, table.stdout.indexOf("\t}", at));
      // The plan's transaction sets the size of an existing set in place, grants kept.
      if (at >= 0 && !block.includes(`\tsize ${wanted}\n`)) problems.push(`set ${name} is not sized for KNOCK_MAX_GRANTS (${wanted})`);
      // The kernel refuses to declare a set again with other flags: no repair could apply the plan.
      if (at >= 0 && set.kind === "door" && !block.includes(`\tflags ${setFlags(set)}\n`)) throw new FirewallError(otherEngine(name), [], "");
    }
    const chain = chainBody(table.stdout, NFT_CHAIN);
    if (chain === null) problems.push(`chain inet ${NFT_TABLE} ${NFT_CHAIN} missing`);
    else if (countNftRules(chain) !== this.script().ruleCount || !chain.includes(this.planned.marker)) {
      problems.push(`chain inet ${NFT_TABLE} ${NFT_CHAIN} differs from the plan`);
    }
    problems.push(...knockProblems(plan, table.stdout));
    return problems;
  }

  /** "repair": one transaction puts everything back; grants in existing sets are kept. */
  reconcile(mode: "check" | "repair"): Promise<string[]> {
    if (mode === "check") return this.problems(this.run);
    return this.changes.reconcile(async (run) => {
      const problems = await this.problems(run);
      if (problems.length > 0) await mustRun(run, ["nft", "-f", "-"], this.script().script);
      // Started first: a start that throws leaves the losses for the next pass to report.
      this.nft.open();
      if (signedDoors(this.planned.config).length > 0) this.replaySession.open();
      const lost = [this.nft.takeLoss(), this.replaySession.takeLoss()].filter((l) => l !== null);
      return [...problems, ...lost];
    });
  }

  /** In the change queue, so no reconcile in flight sees the new ports and calls them a repair. */
  protect(targets: readonly OwnedTarget[]): Promise<void> {
    return this.changes.reconcile(async (run) => {
      this.planned.retarget(targets);
      await mustRun(run, ["nft", "-f", "-"], this.script().script);
    });
  }

  /** Door-wide grants go in batches; a grant of some ports straight to the session (each has its own ports and timeout). */
  grant(grant: GrantKey, forMs: number): Promise<void> {
    if (grant.ports === null) return this.enqueue(false, grant.door, grant.family, checkedAddress(grant.src, grant.family), forMs);
    return this.apply(this.lineOf({ grant, forMs }));
  }

  /**
   * The helper ended while a record and its grants were in flight: the transaction may have
   * committed. It did if the record and every entry are in the kernel (another daemon taking the
   * same datagram grants the same entries; a replay of a `-s` datagram from elsewhere names another
   * address, whose entries are not there): "recorded". The record without the entries is a
   * replay: "seen". No record: nothing was written (null), and the line runs again.
   */
  private async settleUnknown(door: string, element: string, grants: readonly TimedGrant[]): Promise<ReplayRecord | null> {
    const present = async (set: string, elements: readonly string[]) => {
      const argv = ["nft", `get element ${inTable(set)} { ${elements.join(", ")} }`];
      const r = await this.run(argv);
      // Absent says ENOENT; anything else is a failed read, which must not pass for either answer.
      if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) throw new FirewallError(`exit code ${r.code}`, argv, r.stderr);
      return r.code === 0;
    };
    if (!(await present(nftReplaySetName(door), [element]))) return null;
    for (const { grant } of grants) {
      const set = grant.ports === null ? nftSetName(grant.door.name, grant.family) : nftSpaSetName(grant.door.name, grant.family);
      if (!(await present(set, grant.ports === null ? [grant.src] : grant.ports.map((p) => nftPortElement(grant.src, p))))) return "seen";
    }
    return "recorded";
  }

  /** One grant's line, its address and ports checked. */
  private lineOf({ grant, forMs }: TimedGrant, form: PutForm = "put"): string {
    const src = checkedAddress(grant.src, grant.family);
    if (grant.ports === null) return this.grantLine(grant.door, grant.family, [src], forMs, form);
    return grantLine({ ...grant, src, ports: checkedPorts(grant.door, this.planned.targets, grant.ports) }, forMs, form);
  }

  revoke(grant: GrantKey): Promise<void> {
    const src = checkedAddress(grant.src, grant.family);
    if (grant.ports === null) return this.enqueue(true, grant.door, grant.family, src, 0);
    return this.apply(revokeLine({ ...grant, src }));
  }

  grants(): Promise<ListedGrant[]> {
    return listGrants(
      this.planned.config.doors,
      async (door, family) => nftElements(await this.elements(nftSetName(door, family))),
      async (door, family) => nftSpaElements(await this.elements(nftSpaSetName(door, family))),
    );
  }

  /** Marks whose grant is still in the door's set (a close sequence takes the grant and leaves the mark), with the grant's time left. */
  async unreported(): Promise<ListedGrant[]> {
    const found: ListedGrant[] = [];
    for (const door of kernelGrantDoors(this.planned.plan)) {
      for (const family of FAMILIES) {
        const marks = nftElements(await this.elements(unreadSetName(door, family)));
        if (marks.length === 0) continue;
        const granted = new Map(nftElements(await this.elements(nftSetName(door, family))).map((g) => [g.src, g.remainingMs]));
        for (const { src } of marks) {
          const remainingMs = granted.get(src);
          if (remainingMs !== undefined) found.push({ door, family, src, ports: null, remainingMs });
        }
      }
    }
    return found;
  }

  private elements(set: string): Promise<string> {
    return mustRun(this.run, ["nft", "-j", "list", "set", "inet", NFT_TABLE, set]);
  }

  /** Joins the newest batch if it is the same change for the same set; order is kept otherwise. */
  private enqueue(revoke: boolean, door: Door, family: Family, src: string, forMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const last = this.queue.at(-1);
      const same = last && last.revoke === revoke && last.door === door && last.family === family && last.forMs === forMs && last.srcs.size < MAX_BATCH;
      const batch = same ? last : { revoke, door, family, forMs, srcs: new Set<string>(), waiters: [] };
      if (!same) this.queue.push(batch);
      batch.srcs.add(src);
      batch.waiters.push({ resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    for (let batch = this.queue.shift(); batch; batch = this.queue.shift()) {
      const { door, family } = batch;
      const srcs = [...batch.srcs];
      const line = batch.revoke ? nftRevokeLine(door.name, family, srcs) : this.grantLine(door, family, srcs, batch.forMs);
      try {
        await this.apply(line);
        for (const w of batch.waiters) w.resolve();
      } catch (err) {
        for (const w of batch.waiters) w.reject(err as Error);
      }
    }
    this.draining = false;
  }

  /** Door-wide grants; where the kernel makes the door's grants, their marks go in the same transaction: the report is taken. */
  private grantLine(door: Door, family: Family, srcs: readonly string[], forMs: number, form: PutForm = "put"): string {
    const line = nftGrantLine(door.name, family, srcs, forMs, form);
    return kernelGrantDoors(this.planned.plan).has(door.name) ? `${line}; ${takeOutLine(inTable(unreadSetName(door.name, family)), srcs)}` : line;
  }

  private async apply(line: string): Promise<void> {
    try {
      await this.nft.send(line);
    } catch {
      await mustRun(this.run, ["nft", "-f", "-"], line + "\n");
    }
  }

  async shutdown(remove: boolean): Promise<void> {
    this.nft.close();
    this.replaySession.close();
    if (remove) await this.changes.remove(removeNftables);
  }
}

/** The kept records (core/firewall/kept.ts): the comments of our hookless chain; none without it. */
export async function readKeptNftables(run: Runner): Promise<string[]> {
  const r = await run(["nft", "-j", "list", "chain", "inet", NFT_TABLE, NFT_KEPT_CHAIN]);
  return r.code === 0 ? ruleComments(r.stdout) : [];
}

/** Deletes our table; a table that is not there is fine. */
export async function removeNftables(run: Runner): Promise<void> {
  const r = await run(["nft", "delete", "table", "inet", NFT_TABLE]);
  if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) {
    throw new FirewallError(`exit code ${r.code}`, ["nft", "delete", "table", "inet", NFT_TABLE], r.stderr);
  }
}

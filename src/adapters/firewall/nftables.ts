/** nftables backend: one table of our own, `inet knockgate`, with timeout sets for grants. */
import type { Config, Door, Family, PortSpec } from "../../core/types.js";
import { doorPorts, type OwnedTarget } from "../../core/protection/targets.js";
import { FirewallError } from "../../core/errors.js";
import type { Logger } from "../log.js";
import { NFT_KEPT_CHAIN } from "../../core/firewall/kept.js";
import { LineSession, mustRun, type Runner } from "./exec.js";
import { ChangeQueue, checkedAddress, checkedPorts, listPerDoor, listSpaPerDoor, type Backend, type BackendListedGrant, type ListedSpaGrant, ReplayWriter, type ReplayRecord } from "./firewall.js";
import { FAMILIES, NFT_TABLE, type KernelGrant } from "../../core/firewall/common.js";
import { nftReplayAddLine, nftReplayDelLine, nftReplaySetName, nftSpaElements, nftSpaGrantLine, nftSpaRevokeLine, nftSpaSetName, signedDoors, spaSetSize } from "../../core/firewall/spa-plan.js";
import {
  grantSetSize,
  NFT_ACK_SET,
  NFT_CHAIN,
  nftAllowName,
  nftElements,
  nftGrantLine,
  nftPlan,
  nftRevokeLine,
  nftSetName,
  planMarker,
} from "../../core/firewall/plan.js";

/** Lines of `nft list chain` that are rules, not the chain's own header or braces. */
export function countNftRules(listing: string): number {
  return listing
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^(table|chain|type) /.test(l) && l !== "}").length;
}

/** Most addresses in one transaction (a 256-address line is about 15 kB; nft -i takes 25 kB lines). */
const MAX_BATCH = 256;

/** Consecutive grants (or revokes) of one door and family, waiting to go as one transaction. */
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
const nftSession = () =>
  new LineSession({
    argv: ["stdbuf", "-o0", "nft", "-i"],
    marker: /\n}\n/,
    initial: 0,
    suffix: `list set inet ${NFT_TABLE} ${NFT_ACK_SET}`,
  });

export class NftablesFirewall implements Backend {
  readonly backend = "nftables";
  private readonly nft = nftSession();
  /** Replay records have a session of their own: see ReplayWriter. */
  private readonly replaySession = nftSession();
  private readonly replay: ReplayWriter;

  private queue: Batch[] = [];
  private draining = false;
  private readonly changes: ChangeQueue;

  constructor(
    private readonly config: Config,
    private targets: readonly OwnedTarget[],
    private readonly run: Runner,
    log: Logger,
  ) {
    this.changes = new ChangeQueue(run, log);
    this.replay = new ReplayWriter(this.replaySession, run, (line) => ["nft", line]);
  }

  check(): Promise<string[]> {
    return this.problems(this.run);
  }

  private async problems(run: Runner): Promise<string[]> {
    // --terse leaves out set elements: the listing stays small however many grants there are.
    const table = await run(["nft", "-t", "list", "table", "inet", NFT_TABLE]);
    if (table.code !== 0) return [`table inet ${NFT_TABLE} missing`];
    const problems: string[] = [];
    const size = grantSetSize(this.config);
    const grantSets = FAMILIES.flatMap((f) => [
      ...this.config.doors.map((d) => ({ name: nftSetName(d.name, f), size })),
      ...signedDoors(this.config).map((d) => ({ name: nftSpaSetName(d.name, f), size: spaSetSize(size, doorPorts(this.targets, d.name).length) })),
    ]);
    const replay = signedDoors(this.config).map((d) => nftReplaySetName(d.name));
    const sets = [NFT_ACK_SET, ...FAMILIES.map(nftAllowName), ...grantSets.map((g) => g.name), ...replay];
    const missing = sets.filter((name) => !table.stdout.includes(`\tset ${name} {`));
    if (missing.length > 0) problems.push(`sets missing: ${missing.join(", ")}`);
    for (const { name, size: wanted } of grantSets) {
      const at = table.stdout.indexOf(`\tset ${name} {`);
      const block = at < 0 ? "" : table.stdout.slice(at, table.stdout.indexOf("\t}", at));
      // The plan's transaction sets the size of an existing set in place, grants kept.
      if (at >= 0 && !block.includes(`\tsize ${wanted}\n`)) problems.push(`set ${name} is not sized for KNOCK_MAX_GRANTS (${wanted})`);
    }
    const chain = /\tchain (\S+) \{\n([\s\S]*?)\n\t\}/.exec(table.stdout.slice(table.stdout.indexOf(`\tchain ${NFT_CHAIN} {`)));
    if (!chain || chain[1] !== NFT_CHAIN) problems.push(`chain inet ${NFT_TABLE} ${NFT_CHAIN} missing`);
    else if (countNftRules(chain[2] ?? "") !== nftPlan(this.config, this.targets).ruleCount || !chain[2]?.includes(planMarker(this.config, this.targets))) {
      problems.push(`chain inet ${NFT_TABLE} ${NFT_CHAIN} differs from the plan`);
    }
    return problems;
  }

  /** One transaction puts everything back; grants in existing sets are kept. */
  reconcile(): Promise<string[]> {
    return this.changes.reconcile(async (run) => {
      const problems = await this.problems(run);
      if (problems.length > 0) await mustRun(run, ["nft", "-f", "-"], nftPlan(this.config, this.targets).script);
      const lost = this.nft.takeLoss();
      this.nft.open();
      if (signedDoors(this.config).length > 0) this.replaySession.open();
      return lost ? [...problems, lost] : problems;
    });
  }

  /** In the change queue, so no reconcile in flight sees the new ports and calls them a repair. */
  protect(targets: readonly OwnedTarget[]): Promise<void> {
    return this.changes.reconcile(async (run) => {
      this.targets = targets;
      await mustRun(run, ["nft", "-f", "-"], nftPlan(this.config, targets).script);
    });
  }

  grant(door: Door, family: Family, src: string, forMs = door.openForMs): Promise<void> {
    return this.enqueue(false, door, family, checkedAddress(src, family), forMs);
  }

  revoke(door: Door, family: Family, src: string): Promise<void> {
    return this.enqueue(true, door, family, checkedAddress(src, family), 0);
  }

  /** Straight to the session, not batched: each signed grant has its own ports and timeout. */
  grantPorts(door: Door, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): Promise<void> {
    return this.apply(nftSpaGrantLine(door.name, family, checkedAddress(src, family), checkedPorts(door, this.targets, ports), openForMs));
  }

  revokePorts(door: Door, family: Family, src: string, ports: readonly PortSpec[]): Promise<void> {
    return this.apply(nftSpaRevokeLine(door.name, family, checkedAddress(src, family), ports));
  }

  recordDatagram(door: string, element: string, ttlS: number, evict: readonly string[]): Promise<ReplayRecord> {
    const deletes = evict.map((e) => nftReplayDelLine(door, checkedAddress(e, 6)));
    return this.replay.record(deletes, nftReplayAddLine(door, checkedAddress(element, 6), ttlS));
  }

  async listReplay(door: string): Promise<KernelGrant[]> {
    return nftElements(await mustRun(this.run, ["nft", "-j", "list", "set", "inet", NFT_TABLE, nftReplaySetName(door)]));
  }

  listSpaGrants(): Promise<ListedSpaGrant[]> {
    return listSpaPerDoor(this.config.doors, (door, family) => this.spaElements(door, family));
  }

  private async spaElements(door: string, family: Family) {
    return nftSpaElements(await mustRun(this.run, ["nft", "-j", "list", "set", "inet", NFT_TABLE, nftSpaSetName(door, family)]));
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
      const line = batch.revoke ? nftRevokeLine(door.name, family, srcs) : nftGrantLine(door.name, family, srcs, batch.forMs);
      try {
        await this.apply(line);
        for (const w of batch.waiters) w.resolve();
      } catch (err) {
        for (const w of batch.waiters) w.reject(err as Error);
      }
    }
    this.draining = false;
  }

  private async apply(line: string): Promise<void> {
    try {
      await this.nft.send(line);
    } catch {
      await mustRun(this.run, ["nft", "-f", "-"], line + "\n");
    }
  }

  listGrants(): Promise<BackendListedGrant[]> {
    return listPerDoor(this.config.doors, (door, family) => this.setElements(door, family));
  }

  private async setElements(door: string, family: Family) {
    return nftElements(await mustRun(this.run, ["nft", "-j", "list", "set", "inet", NFT_TABLE, nftSetName(door, family)]));
  }

  async remove(): Promise<void> {
    this.nft.close();
    this.replaySession.close();
    await this.changes.remove(removeNftables);
  }

  close(): void {
    this.nft.close();
    this.replaySession.close();
  }
}

/** The kept records (core/firewall/kept.ts): the comments of our hookless chain; none without it. */
export async function readKeptNftables(run: Runner): Promise<string[]> {
  const r = await run(["nft", "-j", "list", "chain", "inet", NFT_TABLE, NFT_KEPT_CHAIN]);
  if (r.code !== 0) return [];
  const parsed = JSON.parse(r.stdout) as { nftables?: { rule?: { comment?: unknown } }[] };
  return (parsed.nftables ?? []).flatMap((item) => (typeof item.rule?.comment === "string" ? [item.rule.comment] : []));
}

/** Deletes our table; a table that is not there is fine. */
export async function removeNftables(run: Runner): Promise<void> {
  const r = await run(["nft", "delete", "table", "inet", NFT_TABLE]);
  if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) {
    throw new FirewallError(`exit code ${r.code}`, ["nft", "delete", "table", "inet", NFT_TABLE], r.stderr);
  }
}

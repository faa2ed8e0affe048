/**
 * The kernel engine's compilation of a door's knock sequence into rules over dynamic sets: data,
 * which a backend renders (adapters/firewall/nftables/knock.ts). Pure.
 *
 * Per sequence (a door's open or close sequence) and family, the sets hold sources:
 *   first    since the attempt's first knock, with SEQ_TIMEOUT; added, never refreshed: a source
 *            still in it proves its first knock was recent enough (the timeout runs from there);
 *   stage k  (1 <= k < n) matched the first k knocks, with SEQ_TIMEOUT (only to bound them: an
 *            attempt is live while its source is in `first` too);
 *   recent   its last knock was less than REPEAT_WINDOW_MS ago (refreshed by each knock taken);
 *   unread   (open sequences) granted by the kernel, whose report no daemon has taken yet: what a
 *            daemon that was down finds at start, to log and publish (its grant write clears it).
 * The rules, first match wins (each ends the sequence's evaluation), for a knock on a port of the
 * sequence whose TCP flags match (other packets never reach them):
 *   progress  in first and stage k, on port k: on to stage k+1, or at the last port, completed;
 *   repeat    in first, stage k and recent, on port k-1: a retransmission, ignored (recent refreshed);
 *   restart   on port 0: the source leaves every set, then is in first and stage 1;
 *   wrong     any other port: the source leaves every set (the attempt ends).
 * Which is KnockMachine's behaviour (core/knock/machine.ts), per source, without its memory bounds:
 * a full set makes the packet path's add fail instead of evicting (see docs/kernel-engine.md).
 */
import { REPEAT_WINDOW_MS, type SequenceKind } from "./machine.js";
import type { Door, PortSpec, TcpFlagMatch } from "../types.js";

/** A set of one sequence's program. */
export type KnockSet = { role: "first" } | { role: "stage"; stage: number } | { role: "recent" } | { role: "unread" };

/** What a rule does, in order. */
export type KnockAction =
  /** Puts the source in the set (a source there already keeps its timeout). */
  | { op: "add"; set: KnockSet; timeoutMs: number }
  /** Puts the source in the set, or refreshes its timeout (0: none). */
  | { op: "update"; set: KnockSet; timeoutMs: number }
  | { op: "delete"; set: KnockSet }
  /** The door-wide grant: the door's grant set, for OPEN_FOR (0: until closed). */
  | { op: "grant"; openForMs: number }
  | { op: "revoke" }
  /** Tells the daemon (the NFLOG group). */
  | { op: "report" };

export interface KnockRule {
  /** The source is in each of these. */
  in: KnockSet[];
  /** The knock's port; null: any port of the sequence. */
  port: PortSpec | null;
  then: KnockAction[];
}

export interface KnockProgram {
  door: string;
  kind: SequenceKind;
  /** Every port+protocol of the sequence, the program's entry condition with the flags. */
  ports: PortSpec[];
  tcpFlags: TcpFlagMatch;
  /** Entries each set holds at most (KNOCK_MAX_TRACKED). */
  setSize: number;
  /** Stage sets: 1 .. stages. */
  stages: number;
  /** Every set the rules use, in order. */
  sets: KnockSet[];
  rules: KnockRule[];
}

/** Sets per program grow with the sequence: beyond this many knocks it is refused. */
export const MAX_KERNEL_SEQUENCE = 16;

/** Why a door cannot be compiled exactly; null: it can. */
export function kernelRefusal(door: Pick<Door, "sequence" | "closeSequence">): string | null {
  for (const sequence of [door.sequence, door.closeSequence ?? []]) {
    if (sequence.length > MAX_KERNEL_SEQUENCE) return `the kernel engine takes sequences of at most ${MAX_KERNEL_SEQUENCE} knocks (each stage is a kernel set)`;
  }
  return null;
}

/** Each sequence of each door: its program (a door with no sequence, a signed one, has none). */
export function compileDoors(doors: readonly Door[], maxTracked: number): KnockProgram[] {
  return doors.flatMap((door) => {
    const sequences: [SequenceKind, readonly PortSpec[] | null][] = [["open", door.sequence], ["close", door.closeSequence]];
    return sequences.flatMap(([kind, sequence]) => (sequence && sequence.length > 0 ? [compileSequence(door, kind, sequence, maxTracked)] : []));
  });
}

const first: KnockSet = { role: "first" };
const recent: KnockSet = { role: "recent" };
const unread: KnockSet = { role: "unread" };
const stage = (k: number): KnockSet => ({ role: "stage", stage: k });

export function compileSequence(door: Door, kind: SequenceKind, sequence: readonly PortSpec[], maxTracked: number): KnockProgram {
  const n = sequence.length;
  const T = door.seqTimeoutMs;
  // The mark comes last: a full unread set stops the rule there, after the grant.
  const done: KnockAction[] =
    kind === "open"
      ? [{ op: "report" }, { op: "grant", openForMs: door.openForMs }, { op: "update", set: unread, timeoutMs: door.openForMs }]
      : [{ op: "report" }, { op: "revoke" }];
  const stages = Array.from({ length: n - 1 }, (_, i) => i + 1);
  const leaveAll: KnockAction[] = [first, ...stages.map(stage)].map((set) => ({ op: "delete", set }));
  const touch: KnockAction = { op: "update", set: recent, timeoutMs: REPEAT_WINDOW_MS };
  const rules: KnockRule[] = [];
  for (const k of stages) {
    const port = sequence[k] as PortSpec;
    const then: KnockAction[] = k + 1 === n ? [...leaveAll, ...done] : [{ op: "delete", set: stage(k) }, { op: "add", set: stage(k + 1), timeoutMs: T }, touch];
    rules.push({ in: [first, stage(k)], port, then });
  }
  for (const k of stages) rules.push({ in: [first, stage(k), recent], port: sequence[k - 1] as PortSpec, then: [touch] });
  const start: KnockAction[] = n === 1 ? done : [...leaveAll, { op: "add", set: first, timeoutMs: T }, { op: "add", set: stage(1), timeoutMs: T }, touch];
  rules.push({ in: [], port: sequence[0] as PortSpec, then: start });
  if (n > 1) rules.push({ in: [], port: null, then: leaveAll });
  const ports = [...new Map(sequence.map((p) => [`${p.port}/${p.proto}`, p])).values()];
  const sets = [first, ...stages.map(stage), recent, ...(kind === "open" ? [unread] : [])];
  return { door: door.name, kind, ports, tcpFlags: door.tcpFlags, setSize: maxTracked, stages: n - 1, sets, rules };
}
